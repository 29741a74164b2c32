"""Pure next-state decisions: what a job does next when no user code needs to run."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balsamd import lifecycle
from balsamd.lifecycle import HOOKS, auto_advance, initial_state, retry_target, settle
from balsamd.states import FINAL, RUNNABLE, JobState, is_allowed

S = JobState
hook_sets = st.sets(st.sampled_from([h.name for h in HOOKS] + [s.name for s in lifecycle.STAGES]))


@given(st.sampled_from(list(JobState)), hook_sets)
def test_settle_walks_only_allowed_steps_and_stops(state, hooks):
    chain = settle(state, hooks)
    for a, b in itertools.pairwise((state, *chain)):
        assert is_allowed(a, b), f"{a}->{b}"
    assert auto_advance(chain[-1] if chain else state, hooks) is None


@given(st.sampled_from(list(FINAL | RUNNABLE | {S.RUNNING, S.AWAITING_PARENTS})), hook_sets)
def test_settle_never_moves_final_runnable_running_or_waiting_jobs(state, hooks):
    assert settle(state, hooks) == ()


def test_default_hooks_take_a_ready_job_to_preprocessed():
    assert settle(S.READY, []) == (S.STAGED_IN, S.PREPROCESSED)


def test_a_preprocess_hook_stops_a_ready_job_at_staged_in():
    assert settle(S.READY, ["preprocess"]) == (S.STAGED_IN,)


def test_default_hooks_take_a_finished_run_to_job_finished():
    assert settle(S.RUN_DONE, []) == (S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED)


def test_a_postprocess_hook_stops_a_finished_run_at_run_done():
    assert settle(S.RUN_DONE, ["postprocess"]) == ()


def test_a_run_error_fails_and_a_run_timeout_restarts_by_default():
    assert settle(S.RUN_ERROR, []) == (S.FAILED,)
    assert settle(S.RUN_TIMEOUT, []) == (S.RESTART_READY,)


def test_error_and_timeout_handlers_hold_the_job_for_the_hook():
    hooks = ["handle_error", "handle_timeout"]
    assert settle(S.RUN_ERROR, hooks) == ()
    assert settle(S.RUN_TIMEOUT, hooks) == ()


def test_an_app_with_inbound_slots_holds_its_jobs_ready_for_the_transfer_service():
    hooks = lifecycle.settle_hooks([], ["in"])
    assert settle(S.READY, hooks) == ()
    assert settle(S.RUN_DONE, hooks) == (S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED)


def test_an_app_with_outbound_slots_holds_finished_runs_at_postprocessed():
    hooks = lifecycle.settle_hooks(["preprocess"], ["out", "out"])
    assert hooks == ["preprocess", "stage_out"]
    assert settle(S.RUN_DONE, hooks) == (S.POSTPROCESSED,)
    assert settle(S.READY, hooks) == (S.STAGED_IN,)


def test_a_retry_after_a_failed_transfer_goes_back_to_the_step_that_transfers():
    assert retry_target([], "in") == S.READY
    assert retry_target([S.JOB_FINISHED], "out") == S.POSTPROCESSED
    assert retry_target([S.RUNNING], "in") == S.AWAITING_PARENTS


def test_a_job_without_parents_starts_ready():
    assert initial_state([]) == S.READY


@pytest.mark.parametrize(
    ("parents", "expected"),
    [
        ([S.JOB_FINISHED, S.JOB_FINISHED], S.READY),
        ([S.JOB_FINISHED, S.RUNNING], S.AWAITING_PARENTS),
        ([S.AWAITING_PARENTS], S.AWAITING_PARENTS),
        ([S.JOB_FINISHED, S.FAILED], S.FAILED),
        ([S.RUNNING, S.KILLED], S.FAILED),
    ],
)
def test_initial_state_waits_for_unfinished_parents_and_fails_under_failed_ones(parents, expected):
    assert initial_state(parents) == expected


def test_parent_failure_reason_names_the_parent_and_is_recognisable():
    reason = lifecycle.parent_failure_reason("P1", S.KILLED)
    assert "P1" in reason
    assert "KILLED" in reason
    assert reason.startswith(lifecycle.PARENT_FAILED)


def test_a_retried_job_restarts_only_when_every_parent_finished():
    assert retry_target([]) == S.RESTART_READY
    assert retry_target([S.JOB_FINISHED]) == S.RESTART_READY
    assert retry_target([S.JOB_FINISHED, S.RESTART_READY]) == S.AWAITING_PARENTS


def test_is_final_matches_the_final_states():
    assert {s for s in JobState if lifecycle.is_final(s)} == {S.JOB_FINISHED, S.FAILED, S.KILLED}
