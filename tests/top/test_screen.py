"""``balsamd top`` on a real terminal: a tmux session of its own (a private socket) runs it on a
site with jobs; the test reads the screen, changes jobs through the API, sees the next frames
show it, filters with ``/`` and quits with ``q``.  Without tmux the test fails when CI is
"true" (scripts/services.sh installs it) and is skipped elsewhere."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import balsamd
from balsamd.apps import command_app_source
from balsamd.site import init_site

PACKAGE_ROOT = Path(balsamd.__file__).resolve().parents[1]
WAIT_SEC = 30.0


class Tmux:
    """One tmux server on a private socket, so the test never touches a user's sessions."""

    def __init__(self) -> None:
        self.socket = f"balsamd-top-{uuid.uuid4().hex[:12]}"

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, "-f", os.devnull, *args],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, f"tmux {' '.join(args)}: {done.stderr}"
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def wait_for(self, seen: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_SEC
        while time.monotonic() < deadline:
            text = self.screen()
            if seen(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"the screen never showed {what}; it shows:\n{self.screen()}")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        message = "the live view's screen test needs tmux (install the tmux package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    t = Tmux()
    try:
        yield t
    finally:
        subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, timeout=30)


def counts(screen: str) -> dict[str, str]:
    """STATE -> JOBS of the screen's job table."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["STATE", "JOBS"]) + 1
    found = {}
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        state, jobs, *_ = line.split()
        found[state] = jobs
    return found


def test_the_live_view_shows_changes_as_they_happen_filters_and_quits_with_q(tmp_path: Path, tmux: Tmux) -> None:
    layout = init_site(tmp_path / "site", name="live")
    (layout.apps / "noop.py").write_text(command_app_source("Noop", "true"))
    with balsamd.connect(layout.root) as site:
        site.apps.sync()
        jobs = site.jobs.bulk_create([{"app": "Noop", "workdir": f"r/{n}"} for n in range(5)])

    code_file = tmp_path / "exit-code"
    env = {"PYTHONPATH": str(PACKAGE_ROOT), "LANG": "C.UTF-8", "BALSAMD_SITE": str(layout.root)}
    command = " ".join(
        [
            "env", *(shlex.quote(f"{k}={v}") for k, v in env.items()),
            shlex.quote(sys.executable), "-m", "balsamd", "top", "--interval", "0.5",
        ]
    )  # fmt: skip
    shell = f"{command}; echo $? > {shlex.quote(str(code_file))}"
    tmux("new-session", "-d", "-s", "top", "-x", "120", "-y", "45", "sh", "-c", shell)

    first = tmux.wait_for(lambda s: "STATE" in s, "a first frame")
    assert "balsamd top   site live" in first and "all jobs" in first
    assert counts(first) == {"PREPROCESSED": "5"}
    assert "q quit" in first

    with balsamd.connect(layout.root) as site:
        site.jobs.kill([j.id for j in jobs[:2]])
    changed = tmux.wait_for(lambda s: "KILLED" in s, "the killed jobs")
    assert counts(changed) == {"PREPROCESSED": "3", "KILLED": "2"}

    tmux("send-keys", "-t", "top", "/")
    tmux.wait_for(lambda s: "filter (now: all jobs):" in s, "the filter prompt")
    tmux("send-keys", "-t", "top", "app=Other", "Enter")
    narrowed = tmux.wait_for(lambda s: "app=Other" in s.splitlines()[0], "the filtered view")
    assert "JOBS  0" in narrowed

    tmux("send-keys", "-t", "top", "q")
    deadline = time.monotonic() + WAIT_SEC
    while not (code_file.exists() and code_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert code_file.read_text().strip() == "0"
