"""The job state machine: one enum, one table of allowed transitions.

Every state change in balsamd goes through :func:`check_transition`; nothing writes a state
without it.  The table follows Balsam's lifecycle, with KILLED as a final state and a few
documented shortcuts (a step whose hook is the default may be skipped inside one transaction,
and the skipped states are still recorded as events).
"""

from __future__ import annotations

import enum
import functools


class JobState(enum.StrEnum):
    CREATED = "CREATED"
    AWAITING_PARENTS = "AWAITING_PARENTS"
    READY = "READY"
    STAGED_IN = "STAGED_IN"
    PREPROCESSED = "PREPROCESSED"
    RUNNING = "RUNNING"
    RUN_DONE = "RUN_DONE"
    RUN_ERROR = "RUN_ERROR"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    RESTART_READY = "RESTART_READY"
    POSTPROCESSED = "POSTPROCESSED"
    STAGED_OUT = "STAGED_OUT"
    JOB_FINISHED = "JOB_FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


S = JobState

RUNNABLE: frozenset[JobState] = frozenset({S.PREPROCESSED, S.RESTART_READY})
FINAL: frozenset[JobState] = frozenset({S.JOB_FINISHED, S.FAILED, S.KILLED})
RETRYABLE: frozenset[JobState] = frozenset({S.FAILED, S.RUN_ERROR, S.RUN_TIMEOUT})
# a job in these (and bound to no launcher) has not started: users may still edit it
NOT_STARTED: frozenset[JobState] = frozenset(
    {S.CREATED, S.AWAITING_PARENTS, S.READY, S.STAGED_IN, S.PREPROCESSED, S.RESTART_READY}
)

_ALIVE = frozenset(JobState) - {S.JOB_FINISHED, S.KILLED}

# a user giving a job that has not started more parents (``add_parents``, Balsam's ``dep``)
# sends it back to wait for them: from READY, STAGED_IN, PREPROCESSED and RESTART_READY
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.CREATED: frozenset({S.AWAITING_PARENTS, S.READY, S.FAILED, S.KILLED}),
    S.AWAITING_PARENTS: frozenset({S.READY, S.FAILED, S.KILLED}),
    S.READY: frozenset({S.STAGED_IN, S.AWAITING_PARENTS, S.FAILED, S.KILLED}),
    S.STAGED_IN: frozenset({S.PREPROCESSED, S.AWAITING_PARENTS, S.FAILED, S.KILLED}),
    S.PREPROCESSED: frozenset({S.RUNNING, S.AWAITING_PARENTS, S.FAILED, S.KILLED}),
    S.RESTART_READY: frozenset({S.RUNNING, S.AWAITING_PARENTS, S.FAILED, S.KILLED}),
    S.RUNNING: frozenset({S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT, S.KILLED}),
    # postprocess may accept the run, ask for a rerun, or fail it
    S.RUN_DONE: frozenset({S.POSTPROCESSED, S.RESTART_READY, S.FAILED, S.KILLED}),
    # handle_error / handle_timeout choose: retry, accept anyway, or fail
    S.RUN_ERROR: frozenset({S.RESTART_READY, S.POSTPROCESSED, S.FAILED, S.KILLED}),
    S.RUN_TIMEOUT: frozenset({S.RESTART_READY, S.POSTPROCESSED, S.FAILED, S.KILLED}),
    S.POSTPROCESSED: frozenset({S.STAGED_OUT, S.FAILED, S.KILLED}),
    S.STAGED_OUT: frozenset({S.JOB_FINISHED, S.FAILED, S.KILLED}),
    S.JOB_FINISHED: frozenset(),
    # a user retry brings a failed job back (to wait again if a parent is being retried too;
    # to the step whose transfer failed, to try it again); kill makes it final for good
    S.FAILED: frozenset({S.RESTART_READY, S.AWAITING_PARENTS, S.READY, S.POSTPROCESSED, S.KILLED}),
    S.KILLED: frozenset(),
}

assert set(TRANSITIONS) == set(JobState)
assert all(S.AWAITING_PARENTS in TRANSITIONS[s] for s in NOT_STARTED - {S.AWAITING_PARENTS})
assert all(targets <= _ALIVE | {S.JOB_FINISHED, S.KILLED} for targets in TRANSITIONS.values())


class IllegalTransition(ValueError):
    """A state change that the transition table does not allow."""

    def __init__(self, job_id: str, src: JobState, dst: JobState) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[src])) or "none: it is final"
        super().__init__(f"job {job_id}: cannot go from {src} to {dst} (allowed from {src}: {allowed})")
        self.job_id, self.src, self.dst = job_id, src, dst


def is_allowed(src: JobState, dst: JobState) -> bool:
    return dst in TRANSITIONS[src]


def check_transition(job_id: str, src: JobState, dst: JobState) -> None:
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(job_id, src, dst)


@functools.cache
def path(src: JobState, dst: JobState) -> tuple[JobState, ...]:
    """The shortest chain of allowed states from src to dst (excluding src).

    Used where a default hook lets the store walk several steps in one transaction
    (e.g. CREATED -> READY -> STAGED_IN -> PREPROCESSED) while recording each step.
    """
    if src == dst:
        return ()
    frontier: list[list[JobState]] = [[src]]
    seen = {src}
    while frontier:
        nxt: list[list[JobState]] = []
        for chain in frontier:
            for s in sorted(TRANSITIONS[chain[-1]]):
                if s in seen:
                    continue
                if s == dst:
                    return (*chain[1:], s)
                seen.add(s)
                nxt.append([*chain, s])
        frontier = nxt
    raise IllegalTransition("?", src, dst)
