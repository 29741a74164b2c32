"""Errors of the site store, in their own module so every store module can raise them."""

from __future__ import annotations

from balsamd.states import IllegalTransition
from balsamd.validate import JobSpecError, Refused


class StoreError(Exception):
    """A request the store refuses; the message says what is wrong and what to do."""


class JobNotFound(StoreError):
    pass


class SessionGone(StoreError):
    """The session is closed or expired: its launcher must stop and open a new one."""


# What a caller can cause: each crosses every transport of the contract as itself, with its
# message; anything else is a fault of the store, logged with its traceback.
REFUSALS: tuple[type[Exception], ...] = (
    StoreError, JobNotFound, SessionGone, IllegalTransition, JobSpecError, Refused, ValueError,
)  # fmt: skip
