"""Runs never outlive their launcher, even one killed with -9.

Each run has its own process group (so it can be signalled as a whole).  A tiny watchdog
process holds a pipe from the launcher: the launcher writes ``+PGID`` when a run starts and
``-PGID`` when it ends.  When the pipe closes, because the launcher exited or died, the
watchdog kills every group still listed.  Without it, a run of a dead launcher would keep
going after its session expired and its job was handed to another launcher.

Usage (started by Watchdog below): python -m balsamd.launch.running.watchdog
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import BinaryIO


def watch(stream: BinaryIO) -> None:
    live: set[int] = set()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only the pipe's end ends the watch
    for line in stream:
        line = line.strip()
        if line[:1] == b"+":
            live.add(int(line[1:]))
        elif line[:1] == b"-":
            live.discard(int(line[1:]))
    for pgid in live:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


class Watchdog:
    """The launcher's end of the pipe."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "balsamd.launch.running.watchdog"],
            stdin=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert self.process.stdin is not None  # a pipe
        self.stdin = self.process.stdin
        self._pending: list[str] = []

    def started(self, pgid: int) -> None:
        self._pending.append(f"+{pgid}\n")

    def ended(self, pgid: int) -> None:
        self._pending.append(f"-{pgid}\n")

    def flush(self) -> None:
        """Send what changed since the last flush: one write per launcher step, not per run.

        A run started since the last flush is covered anyway: the launcher flushes right after
        starting runs, before it can block."""
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            self.stdin.write(text.encode())
            self.stdin.flush()

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(OSError):
            self.stdin.close()
        self.process.wait()


if __name__ == "__main__":
    watch(sys.stdin.buffer)
