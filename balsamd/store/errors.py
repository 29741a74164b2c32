"""Errors of the site store, in their own module so every store module can raise them."""

from __future__ import annotations

import os

from balsamd.diskspace import full_message, space_of
from balsamd.states import IllegalTransition
from balsamd.validate import JobSpecError, Refused


class StoreError(Exception):
    """A request the store refuses; the message says what is wrong and what to do."""


class JobNotFound(StoreError):
    pass


class SessionGone(StoreError):
    """The session is closed or expired: its launcher must stop and open a new one."""


class DiskFull(StoreError):
    """A write found no space left on its disk (or the quota used up); nothing of it was
    written, and the same call goes through once space is freed.

    ``path`` is what could not be written, ``mount``, ``free`` and ``total`` describe its
    filesystem when the write failed (empty and -1 where it could not be looked at).  ``noted``:
    the store noted the time, so no launcher session expires within its expiry of it (a
    heartbeat that failed so counts as heard)."""

    path: str
    mount: str
    free: int
    total: int
    noted: bool

    def __init__(self, path: str | os.PathLike[str], noted: bool = False) -> None:
        space = space_of(path)
        super().__init__(full_message(path, space))
        self.path = str(path)
        self.noted = noted
        self.mount = "" if space is None else space.mount
        self.free = -1 if space is None else space.free
        self.total = -1 if space is None else space.total


# What a caller can cause: each crosses every transport of the contract as itself, with its
# message; anything else is a fault of the store, logged with its traceback.  A full disk is
# nobody's fault but travels the same way: each side says it as it sees fit.
REFUSALS: tuple[type[Exception], ...] = (
    StoreError, JobNotFound, SessionGone, DiskFull, IllegalTransition, JobSpecError, Refused, ValueError,
)  # fmt: skip
