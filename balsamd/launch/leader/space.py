"""Runs do not start while the disk holding their files is full, and what a launcher says
about a full disk.

A run whose working directory or output file could not be made for lack of space is handed
back unstarted: starting more would only fail them the same way, and a failed start would
fail a job that had done nothing wrong.  So after such a start none is tried until
``retry_at``, then one, the wait doubling while they keep failing; the first start that goes
through lets every run start again.  What the launcher says about it is a ``FullWatch``'s
decision: once, then once a minute, then when it is over.
"""

from __future__ import annotations

import logging

from balsamd.diskspace import FullWatch, Notice, Say

FIRST_RETRY_SEC = 1.0  # after the first start that found no space ...
MAX_RETRY_SEC = 30.0  # ... doubling to this while starts keep finding none


class StartHold:
    def __init__(self) -> None:
        self.watch = FullWatch()
        self.retry_at = 0.0
        self._wait = 0.0

    @property
    def full(self) -> bool:
        """A start found no space, and none has gone through since."""
        return self.watch.full

    def holding(self, now: float) -> bool:
        """Whether no run may start now."""
        return self.watch.full and now < self.retry_at

    def no_space(self, now: float) -> Say | None:
        """A run could not start for lack of space: hold the others; the line to log, if any."""
        self._wait = min(MAX_RETRY_SEC, max(FIRST_RETRY_SEC, 2 * self._wait))
        self.retry_at = now + self._wait
        return self.watch.failed(now)

    def started(self, now: float) -> Say | None:
        """A run started after starts were held: every run may start again; the line to log."""
        self._wait = 0.0
        return self.watch.succeeded(now)


def store_line(say: Say, now: float, error: BaseException | None, waiting: int) -> tuple[int, str]:
    """The log level and line for what a ``FullWatch`` of the store decided: ``error`` is the
    store's DiskFull (where, how much is free), ``waiting`` the reports kept meanwhile."""
    if say.notice is Notice.SPACE_AGAIN:
        return logging.INFO, f"the store can be written again (it was full for {now - say.since:.0f} s)"
    if say.notice is Notice.FULL:
        return logging.WARNING, (
            f"the store cannot be written: {error}; finished runs are kept here until it can ({waiting} report(s) wait)"
        )
    return logging.WARNING, (
        f"the store is still full after {now - say.since:.0f} s: {error}; {waiting} report(s) wait "
        f"({say.held} more failed call(s))"
    )


def starts_line(say: Say, now: float, reason: str, waiting: int) -> tuple[int, str]:
    """The log level and line for what a ``StartHold`` decided: ``reason`` says where there is
    no space, ``waiting`` how many jobs wait to start."""
    if say.notice is Notice.SPACE_AGAIN:
        return logging.INFO, f"runs start again (there was no space for them for {now - say.since:.0f} s)"
    if say.notice is Notice.FULL:
        return logging.WARNING, (
            f"runs cannot start: {reason}; {waiting} job(s) wait, and starts are tried now and then "
            "until space is freed"
        )
    return logging.WARNING, f"runs still cannot start after {now - say.since:.0f} s: {reason}; {waiting} job(s) wait"
