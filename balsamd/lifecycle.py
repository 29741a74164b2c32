"""Pure decisions about where a job goes next.

The store applies these inside the transaction that made the change, so a job whose app keeps
the default hooks walks READY -> STAGED_IN -> PREPROCESSED (or RUN_DONE -> ... -> JOB_FINISHED)
at once, with one event per step, and only apps that override a hook wait for the daemon's
processing service.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from balsamd.states import FINAL, JobState

S = JobState

HOOKS = ("preprocess", "postprocess", "handle_error", "handle_timeout")

# the reason prefix that marks a job failed because of its parent, so a retry of the
# parent can bring such children back
PARENT_FAILED = "parent "


def initial_state(parent_states: Iterable[JobState]) -> JobState:
    """State of a new job given its parents' states."""
    states = list(parent_states)
    if any(s in (S.FAILED, S.KILLED) for s in states):
        return S.FAILED
    if all(s == S.JOB_FINISHED for s in states):
        return S.READY
    return S.AWAITING_PARENTS


def parent_failure_reason(parent_id: str, parent_state: JobState) -> str:
    return f"{PARENT_FAILED}{parent_id} is {parent_state}; this job cannot run"


def auto_advance(state: JobState, app_hooks: Iterable[str]) -> JobState | None:
    """The next state when the step out of ``state`` needs no user code, else None.

    Stage-in and stage-out transfers are not part of balsamd (workdirs live on the site's
    shared filesystem), so READY and POSTPROCESSED always advance.
    """
    hooks = set(app_hooks)
    if state == S.READY:
        return S.STAGED_IN
    if state == S.STAGED_IN and "preprocess" not in hooks:
        return S.PREPROCESSED
    if state == S.RUN_DONE and "postprocess" not in hooks:
        return S.POSTPROCESSED
    if state == S.POSTPROCESSED:
        return S.STAGED_OUT
    if state == S.STAGED_OUT:
        return S.JOB_FINISHED
    if state == S.RUN_ERROR and "handle_error" not in hooks:
        return S.FAILED
    if state == S.RUN_TIMEOUT and "handle_timeout" not in hooks:
        return S.RESTART_READY
    return None


def settle(state: JobState, app_hooks: Iterable[str]) -> tuple[JobState, ...]:
    """Every state a job passes through from ``state`` until it needs someone to act."""
    return _settle(state, frozenset(app_hooks))


@functools.cache
def _settle(state: JobState, hooks: frozenset[str]) -> tuple[JobState, ...]:
    # a handful of (state, hooks) pairs exist per site, and every reported run asks
    chain = []
    nxt = auto_advance(state, hooks)
    while nxt is not None:
        chain.append(nxt)
        nxt = auto_advance(nxt, hooks)
    return tuple(chain)


def retry_target(parent_states: Iterable[JobState]) -> JobState:
    """Where a retried job goes: back to waiting if a parent is not finished."""
    states = list(parent_states)
    return S.RESTART_READY if all(s == S.JOB_FINISHED for s in states) else S.AWAITING_PARENTS


def is_final(state: JobState) -> bool:
    return state in FINAL
