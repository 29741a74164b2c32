"""Helpers shared by the store tests."""

from __future__ import annotations

import itertools

from balsamd.models import ClaimLimits, Job, Session, StateUpdate, UpdateOutcome
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.store.queries import claimed_jobs

_clock = itertools.count(1)


def claim(store: Store, session_id: str, limits: ClaimLimits) -> list[Job]:
    """The jobs a claim bound, decoded as a launcher decodes them."""
    return claimed_jobs(store.claim(session_id, limits), limits)


def history(store: Store, job_id: str) -> list[JobState]:
    """The states a job went through, from its events: [CREATED, ..., current]."""
    events = store.events(job_id)
    assert events, f"job {job_id} has no events"
    return [events[0].from_state, *(e.to_state for e in events)]


def report(store: Store, session: Session, job_id: str, *states: JobState, **fields) -> UpdateOutcome:
    """Send one batch of reports for one job, each with its own timestamp."""
    return store.update_states(
        session.id, [StateUpdate(job_id=job_id, state=s, ts=next(_clock), **fields) for s in states]
    )


def run_all(store: Store, jobs: list[Job], end: JobState = JobState.RUN_DONE, **fields) -> None:
    """Claim exactly these jobs in a fresh session and report them RUNNING then ``end``."""
    session = store.open_session("runner")
    claimed = claim(store, session.id, ClaimLimits(max_jobs=100_000))
    wanted = {j.id for j in jobs}
    store.release(session.id, [j.id for j in claimed if j.id not in wanted])
    assert wanted <= {j.id for j in claimed}, "some jobs were not runnable"
    updates = [
        StateUpdate(job_id=j.id, state=s, ts=next(_clock), **fields) for j in jobs for s in (JobState.RUNNING, end)
    ]
    outcome = store.update_states(session.id, updates)
    assert not outcome.rejected, outcome.rejected
    store.close_session(session.id)
