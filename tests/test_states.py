"""The state machine: one table of allowed transitions, and nothing outside it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balsamd.states import (
    FINAL,
    RETRYABLE,
    RUNNABLE,
    TRANSITIONS,
    IllegalTransition,
    JobState,
    check_transition,
    is_allowed,
    path,
)

S = JobState
ALL_PAIRS = list(itertools.product(JobState, JobState))
ALLOWED = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
DISALLOWED = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


def reachable_from(src: JobState) -> set[JobState]:
    seen, todo = {src}, [src]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_table_has_a_row_for_every_state():
    assert set(TRANSITIONS) == set(JobState)


@given(st.data())
def test_a_random_walk_of_allowed_transitions_never_raises(data):
    state = S.CREATED
    for _ in range(data.draw(st.integers(0, 40))):
        if not TRANSITIONS[state]:
            break
        nxt = data.draw(st.sampled_from(sorted(TRANSITIONS[state])))
        check_transition("walk", state, nxt)
        assert is_allowed(state, nxt)
        state = nxt


@pytest.mark.parametrize(("src", "dst"), DISALLOWED, ids=[f"{a}->{b}" for a, b in DISALLOWED])
def test_every_disallowed_pair_raises_illegal_transition_naming_both_states(src, dst):
    with pytest.raises(IllegalTransition) as info:
        check_transition("J1", src, dst)
    message = str(info.value)
    assert f"from {src} to {dst}" in message
    assert "J1" in message
    assert (info.value.job_id, info.value.src, info.value.dst) == ("J1", src, dst)
    assert not is_allowed(src, dst)


def test_illegal_transition_is_a_value_error_that_lists_what_is_allowed():
    with pytest.raises(ValueError, match=r"allowed from RUNNING: KILLED, RUN_DONE, RUN_ERROR, RUN_TIMEOUT"):
        check_transition("J1", S.RUNNING, S.JOB_FINISHED)


@pytest.mark.parametrize("final", [S.JOB_FINISHED, S.KILLED])
def test_job_finished_and_killed_have_no_exits(final):
    assert TRANSITIONS[final] == frozenset()
    with pytest.raises(IllegalTransition, match="it is final"):
        check_transition("J1", final, S.RESTART_READY)


def test_failed_is_final_but_can_be_retried_or_killed():
    assert S.FAILED in FINAL
    # a retry after a failed stage-in or stage-out goes back to the step that transfers again
    assert TRANSITIONS[S.FAILED] == {S.RESTART_READY, S.AWAITING_PARENTS, S.READY, S.POSTPROCESSED, S.KILLED}


def test_every_state_is_reachable_from_created():
    assert reachable_from(S.CREATED) == set(JobState)


def test_every_living_state_can_be_killed():
    for state in set(JobState) - {S.JOB_FINISHED, S.KILLED}:
        assert S.KILLED in TRANSITIONS[state], state


def test_only_runnable_states_start_a_run():
    assert {a for a, b in ALLOWED if b == S.RUNNING} == RUNNABLE


def test_retryable_states_can_all_go_back_to_restart_ready():
    for state in RETRYABLE:
        assert S.RESTART_READY in TRANSITIONS[state]


@given(st.sampled_from(list(JobState)), st.sampled_from(list(JobState)))
def test_path_returns_only_allowed_steps_ending_at_the_target(src, dst):
    if dst not in reachable_from(src):
        with pytest.raises(IllegalTransition):
            path(src, dst)
        return
    steps = path(src, dst)
    assert (steps[-1] if steps else src) == dst
    for a, b in itertools.pairwise((src, *steps)):
        assert is_allowed(a, b), f"{a}->{b}"


def test_path_is_the_shortest_chain_through_the_default_steps():
    assert path(S.CREATED, S.PREPROCESSED) == (S.READY, S.STAGED_IN, S.PREPROCESSED)
    assert path(S.RUN_DONE, S.JOB_FINISHED) == (S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED)
    assert path(S.RUNNING, S.RUNNING) == ()
