"""Running a transfer program that stops when the daemon does."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable

# how often the program is checked for the daemon stopping, and how long it then has to end
POLL_S = 0.2
# how often ``run``'s ``each`` is called while the program runs
EACH_S = 0.02
TERMINATE_GRACE_S = 5.0


def run(
    argv: list[str],
    output: str,
    cancel: threading.Event,
    meanwhile: Callable[[], None] | None = None,
    each: Callable[[], None] | None = None,
) -> int | None:
    """Run ``argv`` (never through a shell), its stdout and stderr into the file ``output``; its
    exit code, or None when ``cancel`` was set first.  ``meanwhile`` is called once the program
    has started, then ``each`` every ``EACH_S`` until it ends: work of the caller's that
    overlaps the program's (e.g. taking what it wrote so far).

    The program runs in a process group of its own, so that stopping it (SIGTERM, then SIGKILL
    after ``TERMINATE_GRACE_S``) stops what it started too (rsync's ssh)."""
    with open(output, "wb") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        if meanwhile is not None:
            meanwhile()
        with _Exit(process) as exited:
            while not exited.within(POLL_S if each is None else EACH_S):
                if cancel.is_set():
                    _stop(process)
                    return None
                if each is not None:
                    each()
        return process.wait()
    except BaseException:
        _stop(process)
        raise


class _Exit:
    """Waiting for a process to end, woken the moment it does (a pidfd, on Linux); elsewhere
    Popen's own wait, which polls at up to 50 ms: a task's end would wait for it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._fd: int | None = None

    def __enter__(self) -> _Exit:
        with contextlib.suppress(AttributeError, OSError):
            self._fd = os.pidfd_open(self._process.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)

    def within(self, seconds: float) -> bool:
        """True when the process ended within ``seconds``."""
        if self._fd is None:
            try:
                self._process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                return False
            return True
        return bool(select.select([self._fd], [], [], seconds)[0])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the process group of ``process`` (its leader is not reaped yet, so the group's id is
    still its own)."""
    for sig, grace in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
