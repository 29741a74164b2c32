"""A balsamd.pyz built once for the session, and the bare environment to run it in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BARE_PATH = "/usr/bin:/bin"


@pytest.fixture(scope="session")
def bare_env() -> dict[str, str]:
    """Only a system PATH: no virtual environment, no PYTHONPATH, no site settings."""
    python = shutil.which("python3", path=BARE_PATH)
    ok = python and subprocess.run(
        [python, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"], capture_output=True
    ).returncode == 0  # fmt: skip
    if not ok:
        message = f"the pyz tests need a system python3 >= 3.11 on {BARE_PATH}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {"PATH": BARE_PATH, "LANG": "C.UTF-8"}


@pytest.fixture(scope="session")
def built_pyz(tmp_path_factory: pytest.TempPathFactory, bare_env: dict[str, str]) -> Iterator[Path]:
    output = tmp_path_factory.mktemp("dist") / "balsamd.pyz"
    done = subprocess.run(
        [sys.executable, "scripts/build_zipapp.py", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"the pyz build failed:\n{done.stdout}\n{done.stderr}"
    yield output
