"""When the launcher asks its job source for work, and with which request.

A claim that got all it asked for may have left more: the next is asked as soon as the
backlog runs low.  One that got fewer waits FLUSH_SEC (runs ending meanwhile may free their
children), an empty one IDLE_CLAIM_SEC.  A claim that failed is asked again with the same
request id, so that the source recognises it if the first one did get through.
"""

from __future__ import annotations

from balsamd.config import LauncherSettings
from balsamd.ids import new_id
from balsamd.launch.leader.policy import claim_limits
from balsamd.launch.leader.resources import FreeCapacity
from balsamd.models import ClaimLimits, JobMode

FLUSH_SEC = 0.05  # between claims that found fewer jobs than asked
IDLE_CLAIM_SEC = 1.0  # how often an idle launcher asks for work


class Claims:
    def __init__(
        self,
        mode: JobMode,
        settings: LauncherSettings,
        filter_tags: dict[str, str],
        now: float,
        apps: list[str] | None = None,
    ) -> None:
        """``apps``: claim only jobs of these apps (all when empty)."""
        self.mode = mode
        self.settings = settings
        self.filter_tags = filter_tags
        self.apps = apps or []
        self.next_at = now
        self.last_at = now  # when a claim was last considered
        self.last_empty = now - 1.0  # when a claim last came back empty (or could ask for nothing)
        self.more = False  # the last claim got all it asked for
        self.out = False  # a claim is on its way
        self._request = new_id()

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def ask(
        self, now: float, free: FreeCapacity, backlog: int, remaining_min: float | None, run_rate: float, idle: bool
    ) -> ClaimLimits | None:
        """What to claim now (see ``policy.claim_limits``), or None when asking would not help;
        ``idle``: nothing runs or waits, so asking for nothing counts as an empty claim.  The
        claim asked for is out until it is ``answered`` or has ``failed``."""
        limits = claim_limits(
            self.mode, free, backlog, remaining_min, self.settings, self.filter_tags, run_rate
        )  # fmt: skip
        self.last_at = now
        if limits is None:
            self.next_at = now + FLUSH_SEC
            if idle:
                self.last_empty = now
            return None
        limits.request_id = self._request
        limits.apps = self.apps
        self.out = True
        return limits

    def answered(self, limits: ClaimLimits, new_jobs: int, now: float) -> None:
        """The claim brought ``new_jobs`` jobs this launcher did not hold already."""
        self.out = False
        self._request = new_id()
        self.more = new_jobs >= limits.max_jobs
        if not new_jobs:
            self.next_at = now + IDLE_CLAIM_SEC
            self.last_empty = now
        elif self.more:
            self.next_at = now  # there may be more: ask again as soon as the backlog runs low
        else:
            self.next_at = now + FLUSH_SEC

    def failed(self, now: float, store_full: bool = False) -> None:
        """The claim did not get through (the source may be briefly away): ask again later,
        with the same request.  One the store refused for lack of space counts as empty: no
        work can come from a full store, and a launcher must still reach its idle time."""
        self.out = False
        self.next_at = now + IDLE_CLAIM_SEC
        if store_full:
            self.last_empty = now

    def runs_ended(self, now: float) -> None:
        """Runs ended: capacity (and maybe finished parents) freed, so ask for work again soon."""
        self.next_at = min(self.next_at, now if self.more else self.last_at + FLUSH_SEC)

    def empty_since(self, when: float) -> bool:
        """Whether a claim made since ``when`` came back empty: only then is a launcher idle."""
        return self.last_empty >= when
