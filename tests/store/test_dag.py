"""Job dependencies: children run after every parent finished, and fail (not wait forever)
when a parent fails; retrying the parent brings them back."""

from __future__ import annotations

import pytest

from balsamd.lifecycle import PARENT_FAILED
from balsamd.models import ClaimLimits
from balsamd.states import IllegalTransition, JobState
from balsamd.store.errors import StoreError
from tests.conftest import make_jobs
from tests.store import claim, history, report, run_all

S = JobState


def state(store, job) -> JobState:
    return store.get(job.id).state


def chain(store, n: int):
    jobs = make_jobs(store, 1)
    for _ in range(n - 1):
        jobs += make_jobs(store, 1, parent_ids=[jobs[-1].id])
    return jobs


def fail(store, job, reason: str = "boom") -> None:
    run_all(store, [job], S.RUN_ERROR, return_code=1, reason=reason)


def test_a_chain_runs_in_order(store):
    a, b, c = chain(store, 3)
    assert [state(store, j) for j in (a, b, c)] == [S.PREPROCESSED, S.AWAITING_PARENTS, S.AWAITING_PARENTS]
    run_all(store, [a])
    assert [state(store, j) for j in (b, c)] == [S.PREPROCESSED, S.AWAITING_PARENTS]
    assert history(store, b.id) == [
        S.CREATED, S.AWAITING_PARENTS, S.READY, S.STAGED_IN, S.PREPROCESSED,
    ]  # fmt: skip
    run_all(store, [b])
    assert state(store, c) == S.PREPROCESSED
    run_all(store, [c])
    assert {state(store, j) for j in (a, b, c)} == {S.JOB_FINISHED}


def test_only_finished_parents_release_a_child(store):
    [parent] = make_jobs(store, 1, app="post")
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    run_all(store, [parent])
    assert state(store, parent) == S.RUN_DONE
    assert state(store, child) == S.AWAITING_PARENTS


def test_fan_in_waits_for_every_parent(store):
    p1, p2, p3 = make_jobs(store, 3)
    [child] = make_jobs(store, 1, parent_ids=[p1.id, p2.id, p3.id])
    run_all(store, [p1])
    run_all(store, [p3])
    assert state(store, child) == S.AWAITING_PARENTS
    run_all(store, [p2])
    assert state(store, child) == S.PREPROCESSED


def test_parents_finishing_in_one_batch_release_the_child_once(store):
    p1, p2 = make_jobs(store, 2)
    [child] = make_jobs(store, 1, parent_ids=[p1.id, p2.id])
    run_all(store, [p1, p2])
    assert history(store, child.id).count(S.READY) == 1
    assert state(store, child) == S.PREPROCESSED


def test_a_child_of_finished_parents_is_created_ready_to_run(store):
    [parent] = make_jobs(store, 1)
    run_all(store, [parent])
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    assert child.state == S.PREPROCESSED


@pytest.mark.parametrize("how", ["failed", "killed"])
def test_a_failed_or_killed_parent_fails_its_whole_subtree_naming_the_parent(store, how):
    a, b, c = chain(store, 3)
    [other_parent] = make_jobs(store, 1)
    [fan_in] = make_jobs(store, 1, parent_ids=[other_parent.id, b.id])
    if how == "failed":
        fail(store, a)
    else:
        store.kill([a.id])
    expected = S.FAILED if how == "failed" else S.KILLED
    assert state(store, a) == expected
    for job, parent in ((b, a), (c, b), (fan_in, b)):
        failed = store.get(job.id)
        assert failed.state == S.FAILED
        assert failed.state_reason.startswith(PARENT_FAILED)
        assert parent.id in failed.state_reason
    assert state(store, other_parent) == S.PREPROCESSED


def test_a_child_of_a_failed_parent_is_created_failed(store):
    [parent] = make_jobs(store, 1)
    fail(store, parent)
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    assert child.state == S.FAILED
    assert parent.id in child.state_reason
    stored = store.get(child.id)
    assert (stored.state, stored.state_reason) == (S.FAILED, child.state_reason)
    assert history(store, child.id) == [S.CREATED, S.FAILED]


def test_retrying_a_failed_parent_brings_its_descendants_back_and_the_campaign_completes(store):
    a, b, c = chain(store, 3)
    fail(store, a)
    assert store.retry([a.id]) == {a.id: S.RESTART_READY, b.id: S.AWAITING_PARENTS, c.id: S.AWAITING_PARENTS}
    assert [state(store, j) for j in (a, b, c)] == [S.RESTART_READY, S.AWAITING_PARENTS, S.AWAITING_PARENTS]
    for job in (a, b, c):
        run_all(store, [job])
    assert {state(store, j) for j in (a, b, c)} == {S.JOB_FINISHED}
    assert store.get(a.id).attempts == 2


def test_retry_leaves_children_that_failed_on_their_own(store):
    [parent] = make_jobs(store, 1, app="post")
    run_all(store, [parent])
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    assert store.finish_hook(parent.id, S.RUN_DONE, S.FAILED, "postprocess found bad output")
    assert state(store, child) == S.FAILED
    store.kill([parent.id])
    assert state(store, child) == S.FAILED


def test_retrying_a_parent_and_its_child_together_completes(store):
    a, b = chain(store, 2)
    fail(store, a)
    store.retry([b.id, a.id])
    assert [state(store, j) for j in (a, b)] == [S.RESTART_READY, S.AWAITING_PARENTS]
    run_all(store, [a])
    run_all(store, [b])
    assert state(store, b) == S.JOB_FINISHED


def test_retrying_one_of_two_failed_parents_leaves_the_child_failed(store):
    p1, p2 = make_jobs(store, 2)
    [child] = make_jobs(store, 1, parent_ids=[p1.id, p2.id])
    fail(store, p1)
    fail(store, p2)
    store.retry([p1.id])
    failed = store.get(child.id)
    assert failed.state == S.FAILED
    assert p2.id in failed.state_reason
    store.retry([p2.id])
    assert state(store, child) == S.AWAITING_PARENTS
    run_all(store, [p1, p2])
    assert state(store, child) == S.PREPROCESSED


def test_retrying_a_child_whose_parent_is_still_failed_is_refused(store):
    a, b = chain(store, 2)
    fail(store, a)
    with pytest.raises(StoreError, match=f"job {b.id}: parent {a.id} is FAILED; retry the parent instead"):
        store.retry([b.id])
    assert state(store, b) == S.FAILED


@pytest.mark.parametrize("end", [S.RUN_ERROR, S.RUN_TIMEOUT])
def test_retry_restarts_a_job_held_for_its_error_or_timeout_hook(store, end):
    [job] = make_jobs(store, 1, app="handler")
    run_all(store, [job], end)
    assert state(store, job) == end
    assert store.retry([job.id]) == {job.id: S.RESTART_READY}
    assert store.get(job.id).state_reason == "retried by user"


@pytest.mark.parametrize("how", ["preprocessed", "running", "finished", "killed"])
def test_retry_of_a_job_that_did_not_fail_is_an_illegal_transition(store, how):
    [job] = make_jobs(store, 1)
    if how == "running":
        session = store.open_session()
        claim(store, session.id, ClaimLimits())
        report(store, session, job.id, S.RUNNING)
    elif how == "finished":
        run_all(store, [job])
    elif how == "killed":
        store.kill([job.id])
    current = state(store, job)
    before = store.events()
    with pytest.raises(IllegalTransition, match=f"cannot go from {current} to RESTART_READY"):
        store.retry([job.id])
    assert store.events() == before


def test_retrying_a_child_of_a_killed_parent_is_refused(store):
    a, b = chain(store, 2)
    store.kill([a.id])
    with pytest.raises(StoreError, match=f"parent {a.id} is KILLED; it can never run"):
        store.retry([b.id])


def test_retry_brings_back_a_descendant_reached_by_paths_of_different_lengths(store):
    a, b, c = chain(store, 3)
    [d] = make_jobs(store, 1, parent_ids=[a.id, c.id])
    fail(store, a)
    store.retry([a.id])
    assert [state(store, j) for j in (b, c, d)] == [S.AWAITING_PARENTS] * 3
    for job in (a, b, c, d):
        run_all(store, [job])
    assert state(store, d) == S.JOB_FINISHED
