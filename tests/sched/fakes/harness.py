"""A fake cluster for tests: one scheduler's fake commands, their state folder, and a ``run``.

``FakeCluster.run`` is the ``run`` callable a backend takes: it runs argv with the fakes' folder
first on PATH (then this Python's folder, where the fakes' ``#!/usr/bin/env -S python3 -S``
finds this Python) in an environment of its own; nothing in os.environ changes.  Set ``mode`` to "fail", "empty" or
"malformed" to make the next commands misbehave, ``missing`` to hide the fakes altogether.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from balsamd.sched.base import Completed, SchedulerError
from tests.sched.fakes import fakelib

FAKES = Path(__file__).resolve().parent
KINDS = ("pbs", "cobalt", "lsf")


class FakeCluster:
    def __init__(self, kind: str, state: Path) -> None:
        self.kind = kind
        self.bin = FAKES / kind
        self.state = state
        self.state.mkdir(parents=True, exist_ok=True)
        self.mode = ""
        self.missing = False
        self.calls: list[list[str]] = []
        for tool in self.bin.iterdir():  # a checkout may have lost the executable bits
            if not os.access(tool, os.X_OK):
                tool.chmod(0o755)

    def env(self) -> dict[str, str]:
        folders = [] if self.missing else [str(self.bin)]
        folders += [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        return {
            **os.environ, "PATH": os.pathsep.join(folders),
            fakelib.STATE_ENV: str(self.state), fakelib.MODE_ENV: self.mode,
        }  # fmt: skip

    def run(self, argv: Sequence[str]) -> Completed:
        """Like balsamd.sched.base.run_command, against the fakes."""
        self.calls.append(list(argv))
        try:
            done = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=30, env=self.env(), stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise SchedulerError(f"{argv[0]}: command not found; is this the right scheduler for this site?") from None
        return Completed(done.returncode, done.stdout, done.stderr)

    def job(self, scheduler_id: str) -> dict:
        job = fakelib.find(fakelib.load(self.state), scheduler_id)
        if job is None:
            raise KeyError(scheduler_id)
        return job

    def advance(self, scheduler_id: str) -> dict:
        return fakelib.advance(self.state, scheduler_id)

    def set_phase(self, scheduler_id: str, phase: str) -> dict:
        return fakelib.set_phase(self.state, scheduler_id, phase)
