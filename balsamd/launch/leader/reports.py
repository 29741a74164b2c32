"""The launcher's state reports: which wait to go out, when they go, and what the source took.

One call on the job source per run would cost a store transaction per run, so reports wait
up to REPORT_DELAY_SEC for others and go out together, at most MAX_REPORT at once; while one
batch is out the next grows, so batches fit the load.  A run's RUNNING waits with them: a run
that ends before its RUNNING went out is reported once, its end carrying its start.

Reports that did not get through are kept and go out again first, after a pause that doubles
while they keep failing (the daemon restarts, the store's disk is full): never a retry per step.
"""

from __future__ import annotations

from balsamd.models import StateUpdate
from balsamd.states import JobState

REPORT_DELAY_SEC = 0.02  # most a state report waits for others to go out with it
MAX_REPORT = 1024  # state reports in one call on the job source
RETRY_SEC = 0.05  # between a failed report and its retry ...
MAX_RETRY_SEC = 5.0  # ... doubling to this while reports keep failing


class Reports:
    def __init__(self) -> None:
        self._updates: list[StateUpdate] = []  # ends (and retried reports) not sent yet
        self._starts: dict[str, float] = {}  # RUNNING not sent yet: job id -> when it started
        self._started: set[str] = set()  # runs whose start was seen and whose end was not
        self._confirmed: set[str] = set()  # of those, the ones whose RUNNING the source took
        self.send_at = 0.0  # the unsent reports go out then (or when there are MAX_REPORT)
        self.out = 0  # batches on their way to the source
        self.retry_at = 0.0  # after a failure, nothing goes out before then
        self._retry_sec = 0.0  # the pause after the last failure; 0 once a batch got through

    @property
    def unsent(self) -> int:
        """Reports waiting to go out."""
        return len(self._updates) + len(self._starts)

    def started(self, job_id: str, ts: float, now: float) -> bool:
        """A run started at ``ts``: its RUNNING waits to go out.  False if its start was known."""
        if job_id in self._started:
            return False
        self._started.add(job_id)
        self._gather(now)
        self._starts[job_id] = ts
        return True

    def ended(self, job_id: str) -> tuple[bool, float | None]:
        """A run ended: whether its start had been seen, and when it started if its RUNNING
        has not gone out yet (it never will: the end's report carries the start)."""
        if job_id not in self._started:
            return False, None
        self._started.discard(job_id)
        self._confirmed.discard(job_id)
        return True, self._starts.pop(job_id, None)

    def add(self, update: StateUpdate, now: float) -> None:
        self._gather(now)
        self._updates.append(update)

    def _gather(self, now: float) -> None:
        """The first report of a batch waits up to REPORT_DELAY_SEC for others."""
        if not self._updates and not self._starts:
            self.send_at = max(self.send_at, now + REPORT_DELAY_SEC)

    def due(self, now: float, running: bool, claim_out: bool) -> float | None:
        """When the unsent reports go out, or None while they wait for a call to come back.

        While a batch is out the next one grows.  A claim on its way (``claim_out``) goes
        first: its reply may want a claim after it, which must not wait 30 ms behind a report
        while workers run dry.  With nothing ``running``, no other report is coming to wait
        for.  After a failure, not before ``retry_at``."""
        if self.out or not (self._updates or self._starts):
            return None
        if self.unsent >= MAX_REPORT:
            at = now
        elif claim_out:
            return None
        else:
            at = self.send_at if running else now
        return max(at, self.retry_at)

    def batch(self) -> list[StateUpdate]:
        """The next reports to send, the waiting RUNNING first; at most MAX_REPORT, so that a
        claim never waits long behind a report."""
        if self._starts:
            self._updates[:0] = [StateUpdate(job_id=i, state=JobState.RUNNING, ts=ts) for i, ts in self._starts.items()]
            self._starts.clear()
        batch, self._updates = self._updates[:MAX_REPORT], self._updates[MAX_REPORT:]
        self.out += 1
        return batch

    def delivered(self, batch: list[StateUpdate]) -> None:
        """The source took ``batch``: the RUNNING in it are known to it now."""
        self.out -= 1
        self._retry_sec = 0.0
        for u in batch:
            if u.state == JobState.RUNNING and u.job_id in self._started:
                self._confirmed.add(u.job_id)

    def failed(self, batch: list[StateUpdate], now: float) -> None:
        """``batch`` did not get through: it goes out again first, after a pause that doubles
        with each failure in a row."""
        self.out -= 1
        self._updates = batch + self._updates
        self._retry_sec = min(MAX_RETRY_SEC, max(RETRY_SEC, 2 * self._retry_sec))
        self.retry_at = now + self._retry_sec

    def confirmed(self) -> list[str]:
        """Runs whose RUNNING the source took: the only ones a heartbeat may name as running
        (the source stops any run it does not know as running)."""
        return list(self._confirmed)
