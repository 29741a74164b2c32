"""Errors of the site store, in their own module so every store module can raise them."""


class StoreError(Exception):
    """A request the store refuses; the message says what is wrong and what to do."""


class JobNotFound(StoreError):
    pass


class SessionGone(StoreError):
    """The session is closed or expired: its launcher must stop and open a new one."""
