"""The apps of a chaos site, written into its ``apps/`` with the round's marker directory."""

from __future__ import annotations

import shlex
from pathlib import Path

from benchmarks.chaos.campaign import COMMAND_APP, PYTHON_APP
from benchmarks.chaos.markers import SCRIPT, python_writers


def command_app(script: Path, markers: Path) -> str:
    # the script's path and the markers' are this round's; the job's values are placeholders
    fixed = f"/bin/bash {shlex.quote(str(script))} {shlex.quote(str(markers))}"
    template = fixed + " {{ key }} {{ nap }} {{ code }}"
    return (
        "from balsamd import ApplicationDefinition\n\n\n"
        f"class {COMMAND_APP}(ApplicationDefinition):\n"
        f"    command_template = {template!r}\n"
    )


def python_app(markers: Path) -> str:
    return (
        f"{python_writers(markers)}\n"
        "from balsamd import ApplicationDefinition\n\n\n"
        f"class {PYTHON_APP}(ApplicationDefinition):\n"
        "    def run(self, key: str, x: int, nap: float = 0.0) -> dict:\n"
        "        with marked(key):\n"
        "            if nap:\n"
        "                time.sleep(nap)\n"
        '            return {"key": key, "square": x * x}\n'
    )


def write_apps(apps: Path, bin_dir: Path, markers: Path) -> None:
    """The marker script in ``bin_dir`` and both apps in ``apps`` (files only their owner may write)."""
    script = bin_dir / "marked.sh"
    script.write_text(SCRIPT)
    script.chmod(0o700)
    for name, text in ((COMMAND_APP, command_app(script, markers)), (PYTHON_APP, python_app(markers))):
        path = apps / f"{name.lower()}.py"
        path.write_text(text)
        path.chmod(0o600)
