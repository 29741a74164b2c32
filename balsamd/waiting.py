"""Waiting for a set of jobs to end: ``balsamd job wait`` and ``conn.jobs.wait_for(...)``.

A poll is one count by state of the jobs the criteria mean (``counts_by_state``, answered
from the store's indexes or one GROUP BY in the central database), never the jobs themselves,
so waiting on a million jobs costs what waiting on ten does.  Polls space out while nothing
changes, and never take more than a tenth of the time (a slow count waits longer between).
Only once everything is over are the failed jobs themselves read, a screenful of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from balsamd.states import FINAL, JobState

S = JobState
FAILURES_SHOWN = 20  # failed jobs an outcome names: a screenful


class Failure(msgspec.Struct, kw_only=True):
    """A job that ended FAILED or KILLED, and why."""

    id: str
    state: JobState
    reason: str


class WaitOutcome(msgspec.Struct, kw_only=True):
    """How the jobs waited for ended (or stood, at a timeout)."""

    total: int
    finished: int = 0
    failed: int = 0
    killed: int = 0
    timed_out: bool = False
    seconds: float = 0.0
    failures: list[Failure] = []  # up to FAILURES_SHOWN of the failed and killed jobs, oldest first

    @property
    def pending(self) -> int:
        """Jobs not in a final state."""
        return self.total - self.finished - self.failed - self.killed

    @property
    def ended(self) -> int:
        return self.finished + self.failed + self.killed

    @property
    def succeeded(self) -> bool:
        """Every job finished (none failed, none was killed, none is left)."""
        return not self.timed_out and self.finished == self.total


def tally(counts: dict[str, int], seconds: float = 0.0) -> WaitOutcome:
    """Jobs by state (``counts_by_state``) as where the wait stands."""
    return WaitOutcome(
        total=sum(counts.values()), finished=counts.get(S.JOB_FINISHED, 0), failed=counts.get(S.FAILED, 0),
        killed=counts.get(S.KILLED, 0), seconds=seconds,
    )  # fmt: skip


def next_interval(current: float, query_seconds: float, changed: bool, first: float, most: float) -> float:
    """The pause before the next poll: back to ``first`` when the last one saw a change, else
    half as long again, up to ``most``; never under ten times what the last count took."""
    base = first if changed else min(current * 1.5, most)
    return max(base, 10 * query_seconds)


def wait_criteria(ids: list[str] | None, tags: dict[str, str] | None, app: str | None) -> dict[str, Any]:
    """The jobs a wait is about, as ``counts_by_state`` and ``filter`` take them (ids each once)."""
    criteria: dict[str, Any] = {}
    if ids is not None:
        criteria["ids"] = list(dict.fromkeys(ids))
    if tags:
        criteria["tags"] = dict(tags)
    if app:
        criteria["app"] = app
    return criteria


def wait_for(
    jobs: Any, *, criteria: dict[str, Any], timeout: float | None = None,
    progress: Callable[[WaitOutcome], None] | None = None, first_poll: float = 0.25, max_poll: float = 5.0,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> WaitOutcome:  # fmt: skip
    """Poll ``jobs`` (a connection's ``jobs``) until every job ``criteria`` means (``ids``,
    ``tags``, ``app``, ``site``: as ``jobs.counts_by_state`` takes them) is final, or ``timeout``
    seconds passed; ``progress`` sees each poll's tally."""
    started = clock()
    interval = first_poll
    last: WaitOutcome | None = None
    while True:
        asked = clock()
        now = tally(jobs.counts_by_state(**criteria), asked - started)
        took = clock() - asked
        if progress is not None:
            progress(now)
        if now.pending == 0:
            break
        if timeout is not None and clock() - started >= timeout:
            now.timed_out = True
            break
        changed = last is None or (now.total, now.ended) != (last.total, last.ended)
        interval = next_interval(interval, took, changed, first_poll, max_poll)
        last = now
        if timeout is not None:
            interval = min(interval, max(started + timeout - clock(), 0.0))
        sleep(interval)
    now.seconds = clock() - started
    if now.failed or now.killed:
        ended_badly = jobs.filter(**criteria, state=[S.FAILED, S.KILLED], limit=FAILURES_SHOWN)
        now.failures = [Failure(id=j.id, state=j.state, reason=j.state_reason) for j in ended_badly]
    return now


assert {S.JOB_FINISHED, S.FAILED, S.KILLED} == FINAL  # what a tally counts as ended
