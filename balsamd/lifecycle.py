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

# Steps that run no user code.  They advance at once, except the two a job's transfer items
# hold: the transfer service moves the job on when its items in that direction are done.
_STEPS_WITHOUT_HOOK: Mapping[JobState, JobState] = {
    S.READY: S.STAGED_IN,
    S.POSTPROCESSED: S.STAGED_OUT,
    S.STAGED_OUT: S.JOB_FINISHED,
}


class Stage(msgspec.Struct, frozen=True):
    """A transfer step: a job with items going ``direction`` waits in ``waits_in`` for them.
    An app with slots that way carries ``name`` among the hooks its moves settle by, so the
    store stops its jobs there and lets through, in the same transaction, those without items."""

    name: str
    direction: str
    waits_in: JobState
    next: JobState


STAGES: tuple[Stage, ...] = (
    Stage("stage_in", "in", waits_in=S.READY, next=S.STAGED_IN),
    Stage("stage_out", "out", waits_in=S.POSTPROCESSED, next=S.STAGED_OUT),
)
STAGE_IN: Mapping[JobState, Stage] = {s.waits_in: s for s in STAGES}
STAGE_OF: Mapping[str, Stage] = {s.direction: s for s in STAGES}

assert len(HOOK_NAMED) == len(HOOK_IN) == len(HOOKS), "one hook per name and per state"
assert not HOOK_IN.keys() & _STEPS_WITHOUT_HOOK.keys(), "a state either runs a hook or always advances"
assert all(_STEPS_WITHOUT_HOOK[s.waits_in] == s.next for s in STAGES)
assert not {s.name for s in STAGES} & HOOK_NAMED.keys()
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
        stage = STAGE_IN.get(state)
        return None if stage is not None and stage.name in app_hooks else _STEPS_WITHOUT_HOOK[state]
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


def settle_hooks(hooks: Iterable[str], directions: Iterable[str]) -> list[str]:
    """What an app's moves settle by: the hooks it overrides, and the stages of the directions
    its transfer slots go."""
    return [*hooks, *(STAGE_OF[d].name for d in sorted(set(directions)))]


def retry_target(parent_states: Iterable[JobState], failed_transfer: str | None = None) -> JobState:
    """Where a retried job goes: back to waiting if a parent is not finished; back to the step
    whose transfer failed (``failed_transfer``: its direction), so the transfer is tried again."""
    states = list(parent_states)
    if not all(s == S.JOB_FINISHED for s in states):
        return S.AWAITING_PARENTS
    return STAGE_OF[failed_transfer].waits_in if failed_transfer else S.RESTART_READY


def is_final(state: JobState) -> bool:
    return state in FINAL
