"""When runs and the launcher stop: the drain, users' kills and idleness.

Each is a small state the loop consults every step: the drain (stop claiming, SIGTERM every
run, SIGKILL after the grace period), the runs their users killed (SIGTERM now, SIGKILL
after KILL_GRACE_SEC), and how long the launcher has had nothing to do.
"""

from __future__ import annotations

from collections.abc import Container

from balsamd.launch.leader.summary import Exit, ExitReason

KILL_GRACE_SEC = 10.0  # between SIGTERM and SIGKILL for a job killed by its user


class Drain:
    """Once begun, no more claims; every run gets SIGTERM, and SIGKILL after ``grace_sec``."""

    def __init__(self, grace_sec: float) -> None:
        self.grace_sec = grace_sec
        self.since: float | None = None
        self.why: Exit | None = None

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self, why: Exit, now: float) -> bool:
        """Start draining for ``why``; False when a drain had begun already (it keeps its why)."""
        if self.since is not None:
            return False
        self.since, self.why = now, why
        return True

    def kill_due(self, now: float) -> bool:
        """Whether runs still going get SIGKILL now: the grace period is over."""
        return self.since is not None and now >= self.since + self.grace_sec

    def stopped(self, reason: str) -> str:
        """The reason of a run stopped by the drain: why the launcher drained, then its own."""
        return f"stopped: {self.why}\n{reason}".rstrip()


class Kills:
    """Runs stopped because their users killed them, each with when it gets SIGKILL."""

    def __init__(self, grace_sec: float = KILL_GRACE_SEC) -> None:
        self.grace_sec = grace_sec
        self._kill_at: dict[str, float] = {}

    def stop(self, job_ids: list[str], now: float) -> None:
        """These runs were sent SIGTERM now (a run killed twice keeps its first deadline)."""
        for job_id in job_ids:
            self._kill_at.setdefault(job_id, now + self.grace_sec)

    def late(self, now: float, running: Container[str]) -> list[str]:
        """Runs still in ``running`` whose grace period is over: they get SIGKILL."""
        return [j for j, at in self._kill_at.items() if at <= now and j in running]

    def ended(self, job_id: str) -> bool:
        """A run ended: True if its user had killed it (it is then counted as killed)."""
        return self._kill_at.pop(job_id, None) is not None


class Idle:
    """How long the launcher has had nothing to do; it stops after ``ttl_sec`` of it."""

    def __init__(self, ttl_sec: float, now: float) -> None:
        self.ttl_sec = ttl_sec
        self.last_busy = now

    def busy(self, now: float) -> None:
        """Something happened: a run started or ended, a claim brought jobs."""
        self.last_busy = now

    def over(self, now: float) -> Exit | None:
        """Why to stop when nothing has happened for the idle time, else None."""
        if now - self.last_busy >= self.ttl_sec:
            return Exit(ExitReason.IDLE, f"idle for {self.ttl_sec:g} s")
        return None
