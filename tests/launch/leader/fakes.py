"""A job source and a runner for driving the launcher's loop without a store or processes.

The runner keeps the Runner protocol: its ``wait`` returns what happened and otherwise blocks
on the descriptors it watches (the courier's), so a test steps the loop without spinning.
"""

from __future__ import annotations

import selectors
import threading
from collections.abc import Callable

from balsamd.launch.running.protocol import Finished, NoSpace, Placement, RunEvent, RunStarted
from balsamd.models import ClaimLimits, Job, StateUpdate, UpdateOutcome


class Source:
    """Hands out ``batches`` of jobs, one per claim (then none); records every report.

    ``hold_claims_from``: claims from this one on (counting from 1) wait until ``answer`` is
    set.  ``heartbeat_error``: what every heartbeat raises.  ``full``: while set, reports and
    heartbeats raise it (a store whose disk is full); ``attempts`` counts reports tried."""

    session_id = "S"

    def __init__(
        self, *batches: list[Job], hold_claims_from: int | None = None, heartbeat_error: Exception | None = None
    ) -> None:
        self.batches = list(batches)
        self.hold_claims_from = hold_claims_from
        self.heartbeat_error = heartbeat_error
        self.claims: list[ClaimLimits] = []
        self.reports: list[list[StateUpdate]] = []
        self.reported = threading.Event()
        self.answer = threading.Event()
        self.closed = False
        self.full: Exception | None = None
        self.attempts = 0

    def claim(self, limits: ClaimLimits) -> list[Job]:
        self.claims.append(limits)
        if self.hold_claims_from is not None and len(self.claims) >= self.hold_claims_from:
            self.answer.wait(20)
        return self.batches.pop(0) if self.batches else []

    def report(self, updates: list[StateUpdate]) -> UpdateOutcome:
        self.attempts += 1
        if self.full is not None:
            raise self.full
        self.reports.append(updates)
        self.reported.set()
        return UpdateOutcome(applied=[u.job_id for u in updates])

    def heartbeat(self, running: list[str], waiting: list[str]) -> list[str]:
        if self.heartbeat_error is not None:
            raise self.heartbeat_error
        if self.full is not None:
            raise self.full
        return []

    def release(self, job_ids: list[str]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Runner:
    """Runs end as soon as they start, but those ``endless`` ones, which end when signalled.
    While ``no_space`` is set, starts find no space (and ``refused`` counts them)."""

    def __init__(self, endless: set[str] | None = None, first_events: list[RunEvent] | None = None) -> None:
        self.no_space: str | None = None
        self.refused = 0
        self.endless = endless or set()
        self.events: list[RunEvent] = list(first_events or [])
        self.started: list[str] = []
        self.signals: list[tuple[list[str], int]] = []
        self._running: set[str] = set()
        self._selector = selectors.DefaultSelector()
        self.closed = False

    def start(self, job: Job, placement: Placement) -> Finished | NoSpace | None:
        if self.no_space is not None:
            self.refused += 1
            return NoSpace([job.id], self.no_space)
        self.started.append(job.id)
        self.events.append(RunStarted(job.id, 1.0))
        if job.id in self.endless:
            self._running.add(job.id)
        else:
            self.events.append(Finished(job.id, 0, "", elapsed=0.001))
        return None

    def wait(self, timeout: float) -> list[RunEvent]:
        if not self.events and self._selector.get_map():
            self._selector.select(timeout)
        events, self.events = self.events, []
        return events

    def signal(self, job_ids: list[str], sig: int) -> None:
        self.signals.append((list(job_ids), sig))
        for job_id in job_ids:
            if job_id in self._running:
                self._running.discard(job_id)
                self.events.append(Finished(job_id, -sig, "", stopped=True))

    def running(self) -> list[str]:
        return list(self._running)

    def can_follow(self, job: Job) -> bool:
        return False

    def follow(self, after: str, jobs: list[Job], placement: Placement) -> bool:
        return False

    def short_apps_changed(self, app: str, short: bool) -> None:
        pass

    def watch(self, fd: int) -> None:
        self._selector.register(fd, selectors.EVENT_READ)

    def unwatch(self, fd: int) -> None:
        self._selector.unregister(fd)

    def close(self) -> None:
        self.closed = True
        self._selector.close()


def job(job_id: str, **fields: object) -> Job:
    return Job(id=job_id, app="a", workdir=f"w/{job_id}", **fields)  # type: ignore[arg-type]


def until(condition: Callable[[], bool], step: Callable[[], None], what: str, steps: int = 1000) -> None:
    """Step until ``condition`` holds (each step waits for the loop's events, not a timer)."""
    for _ in range(steps):
        if condition():
            return
        step()
    raise AssertionError(f"{what} did not happen in {steps} steps")
