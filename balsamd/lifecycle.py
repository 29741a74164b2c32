"""Pure decisions about where a job goes next.

The store applies these inside the transaction that made the change, so a job whose app keeps
the default hooks walks READY -> STAGED_IN -> PREPROCESSED (or RUN_DONE -> ... -> JOB_FINISHED)
at once, with one event per step, and only apps that override a hook wait for the daemon's
processing service.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

import msgspec

from balsamd.states import FINAL, JobState, is_allowed

S = JobState


class Hook(msgspec.Struct, frozen=True):
    """A lifecycle hook an app may override: the state a job waits in for it, and where the
    job goes when the app keeps the default (or its hook leaves the state alone)."""

    name: str
    runs_in: JobState
    default_next: JobState


# The one table of hooks: apps' default methods, the store's inline steps and the daemon's
# processing service all read it.
HOOKS: tuple[Hook, ...] = (
    Hook("preprocess", runs_in=S.STAGED_IN, default_next=S.PREPROCESSED),
    Hook("postprocess", runs_in=S.RUN_DONE, default_next=S.POSTPROCESSED),
    Hook("handle_error", runs_in=S.RUN_ERROR, default_next=S.FAILED),
    Hook("handle_timeout", runs_in=S.RUN_TIMEOUT, default_next=S.RESTART_READY),
)
HOOK_NAMED: Mapping[str, Hook] = {h.name: h for h in HOOKS}
HOOK_IN: Mapping[JobState, Hook] = {h.runs_in: h for h in HOOKS}

# Steps that run no user code.  Stage-in and stage-out transfers are not part of balsamd
# (workdirs live on the site's shared filesystem), so these always advance.
_STEPS_WITHOUT_HOOK: Mapping[JobState, JobState] = {
    S.READY: S.STAGED_IN,
    S.POSTPROCESSED: S.STAGED_OUT,
    S.STAGED_OUT: S.JOB_FINISHED,
}

assert len(HOOK_NAMED) == len(HOOK_IN) == len(HOOKS), "one hook per name and per state"
assert not HOOK_IN.keys() & _STEPS_WITHOUT_HOOK.keys(), "a state either runs a hook or always advances"
assert all(is_allowed(h.runs_in, h.default_next) for h in HOOKS)

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
    """The next state when the step out of ``state`` needs no user code, else None:
    a step without a hook, or a hook the app (whose overridden hooks are ``app_hooks``) keeps
    as the default."""
    if state in _STEPS_WITHOUT_HOOK:
        return _STEPS_WITHOUT_HOOK[state]
    hook = HOOK_IN.get(state)
    if hook is None or hook.name in app_hooks:
        return None
    return hook.default_next


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
