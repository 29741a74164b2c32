"""When the launcher renews its session, and when it must give up on it.

Past the session's expiry the store hands the launcher's jobs to other launchers.  A launcher
whose heartbeats fail stops its runs before that can happen: no job runs twice at once.  A
heartbeat the store could not record for lack of space, and noted so, counts as heard: the
store expires no session within its expiry of that (``store.db.Database.full_mark``).
"""

from __future__ import annotations

from balsamd.store.errors import DiskFull, SessionGone

RETRY_SEC = 5.0  # most a failed heartbeat waits for its retry


class Heartbeat:
    """A heartbeat every ``every_sec``; a session silent for ``expiry_sec`` is as good as gone."""

    def __init__(self, every_sec: float, expiry_sec: float, now: float) -> None:
        self.every_sec = every_sec
        self.expiry_sec = expiry_sec
        self.next_at = now + every_sec
        self.last_ok = now  # when the last heartbeat that got through was sent
        self.out = False  # one is on its way

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def begin(self, now: float) -> bool:
        """Schedule the next heartbeat; True if one goes out now (False while one is out)."""
        self.next_at = now + self.every_sec
        if self.out:
            return False
        self.out = True
        return True

    def answered(self, sent_at: float) -> None:
        """The heartbeat sent at ``sent_at`` got through."""
        self.out = False
        self.last_ok = sent_at

    def failed(self, now: float, error: BaseException, sent_at: float) -> None:
        """The heartbeat sent at ``sent_at`` did not get through: retry soon, or raise
        SessionGone when the session may expire before the next one could (its runs must stop
        first)."""
        self.out = False
        if isinstance(error, DiskFull) and error.noted:
            self.last_ok = max(self.last_ok, sent_at)
        silent = now - self.last_ok
        if silent > self.expiry_sec - self.every_sec:
            raise SessionGone(f"no heartbeat delivered for {silent:.0f} s") from error
        self.next_at = min(self.next_at, now + min(self.every_sec, RETRY_SEC))
