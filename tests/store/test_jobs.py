"""Creating, reading and changing jobs; every state change leaves exactly one event per step."""

from __future__ import annotations

import itertools

import apsw
import pytest

from balsamd import ids
from balsamd.models import ClaimLimits, JobSpec
from balsamd.states import TRANSITIONS, IllegalTransition, JobState
from balsamd.store.errors import JobNotFound, StoreError
from balsamd.validate import JobSpecError
from tests.conftest import make_jobs
from tests.store import claim, history, run_all

S = JobState


def total_events(store) -> int:
    return len(store.events())


def assert_histories_are_legal(store) -> None:
    """Replaying each job's events walks only allowed steps and ends at its current state."""
    for job in store.filter():
        states = history(store, job.id)
        assert states[0] == S.CREATED
        for a, b in itertools.pairwise(states):
            assert b in TRANSITIONS[a], f"{job.id}: {a}->{b}"
        assert states[-1] == job.state


# ----- create -------------------------------------------------------------------------------


def test_a_new_job_without_parents_settles_preprocessed_with_one_event_per_step(store):
    [job] = make_jobs(store, 1)
    assert job.state == S.PREPROCESSED
    assert store.get(job.id).state == S.PREPROCESSED
    assert history(store, job.id) == [S.CREATED, S.READY, S.STAGED_IN, S.PREPROCESSED]


def test_a_new_job_of_an_app_with_a_preprocess_hook_stops_at_staged_in(store):
    [job] = make_jobs(store, 1, app="pre")
    assert history(store, job.id) == [S.CREATED, S.READY, S.STAGED_IN]


def test_create_returns_and_stores_every_field(store):
    [job] = make_jobs(
        store, 1, app="echo", parameters={"x": 1}, tags={"exp": "a"}, data={"k": [1]}, num_nodes=2,
        ranks_per_node=4, gpus_per_rank=0.5, node_packing_count=1, wall_time_min=12.5,
        launch_params={"cpu-bind": "depth"}, workdir="runs/one",
    )  # fmt: skip
    stored = store.get(job.id)
    assert stored == job
    assert (stored.parameters, stored.tags, stored.workdir) == ({"x": 1}, {"exp": "a"}, "runs/one")
    assert stored.version == 1


def test_create_with_an_unknown_app_writes_nothing(store):
    good = JobSpec(app="noop", workdir="a")
    bad = JobSpec(app="nosuch", workdir="b")
    with pytest.raises(JobSpecError) as info:
        store.create_jobs([good, bad])
    assert str(info.value) == (
        "job 1: unknown app 'nosuch' (known: echo, handler, noop, post, pre); "
        "create it with `balsamd app create nosuch --command ...`"
    )
    assert store.count() == 0
    assert total_events(store) == 0


def test_create_with_a_missing_parent_writes_nothing(store):
    missing = ids.new_id()
    good = JobSpec(app="noop", workdir="a")
    orphan = JobSpec(app="noop", workdir="b", parent_ids=[missing])
    with pytest.raises(StoreError, match=f"parent job.* not found: '{missing}'; give ids of jobs of this site"):
        store.create_jobs([good, orphan])
    assert store.count() == 0
    assert total_events(store) == 0


def test_creating_no_jobs_is_a_no_op(store):
    assert store.create_jobs([]) == []
    assert store.count() == 0


def test_get_of_an_unknown_id_says_how_to_list_jobs(store):
    with pytest.raises(JobNotFound, match="balsamd job ls"):
        store.get(ids.new_id())


def test_an_id_prefix_resolves_to_the_one_job_it_names(store):
    [job] = make_jobs(store, 1)
    assert store.resolve_id(job.id[-26:].lower()) == job.id
    with pytest.raises(JobNotFound):
        store.resolve_id("ZZZZ")


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_id_names_no_job(store, text):
    make_jobs(store, 1)
    with pytest.raises(JobNotFound, match="empty job id"):
        store.resolve_id(text)


def test_an_ambiguous_id_prefix_is_refused(store):
    make_jobs(store, 2)
    with pytest.raises(StoreError, match="matches several jobs"):
        store.resolve_id("0")


# ----- events -------------------------------------------------------------------------------


def test_every_state_change_writes_exactly_one_event_per_step(store):
    jobs = make_jobs(store, 3) + make_jobs(store, 2, app="post") + make_jobs(store, 2, app="handler")
    run_all(store, jobs[:2])
    run_all(store, jobs[3:5])
    run_all(store, jobs[5:6], S.RUN_ERROR, return_code=1)
    run_all(store, jobs[6:7], S.RUN_TIMEOUT)
    store.kill([jobs[2].id])
    steps = sum(len(history(store, j.id)) - 1 for j in jobs)
    assert total_events(store) == steps
    assert_histories_are_legal(store)


def test_events_are_ordered_and_pageable(store):
    make_jobs(store, 3)
    every = store.events()
    assert [e.id for e in every] == sorted(e.id for e in every)
    assert store.events(after=every[2].id, limit=2) == every[3:5]


def test_a_state_change_and_its_event_commit_together(site_store):
    store = site_store
    [job] = make_jobs(store, 1)
    store.db.conn.execute(
        "CREATE TEMP TRIGGER refuse_events BEFORE INSERT ON moves BEGIN SELECT RAISE(ABORT, 'events refused'); END"
    )
    with pytest.raises(apsw.ConstraintError, match="events refused"):
        store.kill([job.id])
    assert store.get(job.id).state == S.PREPROCESSED
    assert store.get(job.id).version == 1


# ----- user changes -------------------------------------------------------------------------


def test_set_state_is_all_or_none_and_names_the_illegal_job(store):
    waiting, done = make_jobs(store, 2)
    run_all(store, [done])
    before = total_events(store)
    with pytest.raises(IllegalTransition, match=f"job {done.id}: cannot go from JOB_FINISHED to KILLED"):
        store.kill([waiting.id, done.id])
    assert store.get(waiting.id).state == S.PREPROCESSED
    assert total_events(store) == before


def test_set_state_of_an_unknown_job_changes_nothing(store):
    [job] = make_jobs(store, 1)
    with pytest.raises(JobNotFound):
        store.kill([job.id, ids.new_id()])
    assert store.get(job.id).state == S.PREPROCESSED


def test_kill_records_who_killed_the_job(store):
    [job] = make_jobs(store, 1)
    assert store.kill([job.id]) == {job.id: S.KILLED}
    killed = store.get(job.id)
    assert (killed.state, killed.state_reason) == (S.KILLED, "killed by user")
    assert store.events(job.id)[-1].reason == "killed by user"


def test_every_change_bumps_the_job_version(store):
    [job] = make_jobs(store, 1)
    store.kill([job.id])
    assert store.get(job.id).version == 2


def test_a_request_carries_only_what_users_own_and_a_new_job_starts_unrun(store):
    execution = {"id", "state", "session_id", "batch_job_id", "attempts", "return_code", "state_reason", "result",
                 "created_at", "updated_at", "version", "owner"}  # fmt: skip
    assert execution.isdisjoint(JobSpec.__struct_fields__)
    [job] = store.create_jobs([JobSpec(app="noop", workdir="a")])
    stored = store.get(job.id)
    assert (stored.session_id, stored.batch_job_id, stored.attempts, stored.return_code) == (None, None, 0, None)
    assert (stored.result, stored.state_reason, stored.version, stored.owner) == (None, "", 1, "")
    session = store.open_session()
    assert [j.id for j in claim(store, session.id, ClaimLimits())] == [job.id]
