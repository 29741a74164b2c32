"""Warnings of the job source's failures, at most one per kind every WARN_EVERY_SEC.

While the daemon restarts, reports are retried every step and claims every second: each
failure logged would flood the launcher's log with the same line.
"""

from __future__ import annotations

import logging

WARN_EVERY_SEC = 10.0  # most frequent warning per kind of job-source failure


class Failures:
    def __init__(self, log: logging.Logger, every_sec: float = WARN_EVERY_SEC) -> None:
        self.log = log
        self.every_sec = every_sec
        self._warned: dict[str, float] = {}  # kind -> when it was last logged

    def warn(self, kind: str, now: float, message: str, *args: object) -> bool:
        """Log ``message`` unless a failure of this kind was logged less than ``every_sec`` ago;
        True if it was logged."""
        if now - self._warned.get(kind, -self.every_sec) < self.every_sec:
            return False
        self._warned[kind] = now
        self.log.warning(message, *args)
        return True
