"""Batch jobs in the site store, their transition table, and the backlog the elastic queue sees."""

from __future__ import annotations

import itertools

import apsw
import pytest

from balsamd.models import BATCH_TRANSITIONS, BatchJob, BatchJobState, ClaimLimits, JobMode, StateUpdate
from balsamd.states import JobState
from balsamd.store.batch import BacklogStats
from balsamd.store.errors import StoreError
from balsamd.store.schema import MIGRATIONS, SCHEMA_VERSION
from balsamd.store.store import SiteStore
from tests.conftest import RULES, make_jobs
from tests.store import claim

B = BatchJobState


def new(store: SiteStore, batch_id: str = "b1", now: float = 100.0, **fields: object) -> BatchJob:
    base: dict[str, object] = {"num_nodes": 2, "wall_time_min": 30}
    return store.create_batch_job(BatchJob(id=batch_id, **{**base, **fields}), now=now)


# the shortest way into each state through the table
PATHS: dict[BatchJobState, list[BatchJobState]] = {
    B.PENDING_SUBMISSION: [],
    B.QUEUED: [B.QUEUED],
    B.RUNNING: [B.QUEUED, B.RUNNING],
    B.FINISHED: [B.FINISHED],
    B.SUBMIT_FAILED: [B.SUBMIT_FAILED],
    B.PENDING_DELETION: [B.QUEUED, B.PENDING_DELETION],
}


def put_in(store: SiteStore, batch_id: str, state: BatchJobState) -> BatchJob:
    batch = new(store, batch_id)
    for step in PATHS[state]:
        batch = store.update_batch_job(batch_id, step)
    assert batch.state == state
    return batch


def test_a_created_batch_job_is_pending_submission_and_reads_back_whole(store):
    made = new(store, "b1", now=123.0, job_mode=JobMode.SERIAL, queue="debug", project="chem",
               filter_tags={"run": "a b"}, origin="elastic", state=B.RUNNING)  # fmt: skip
    assert (made.state, made.created_at) == (B.PENDING_SUBMISSION, 123.0)
    got = store.get_batch_job("b1")
    assert got == BatchJob(
        id="b1", num_nodes=2, wall_time_min=30, job_mode=JobMode.SERIAL, queue="debug", project="chem",
        filter_tags={"run": "a b"}, state=B.PENDING_SUBMISSION, created_at=123.0, origin="elastic",
    )  # fmt: skip
    assert store.batch_jobs() == [got]


def test_batch_jobs_are_listed_by_id_and_filtered_by_state(store):
    for batch_id, state in (("b3", B.RUNNING), ("b1", B.QUEUED), ("b2", B.FINISHED)):
        put_in(store, batch_id, state)
    assert [b.id for b in store.batch_jobs()] == ["b1", "b2", "b3"]
    assert [b.id for b in store.batch_jobs([B.QUEUED, B.RUNNING])] == ["b1", "b3"]
    assert store.batch_jobs([B.SUBMIT_FAILED]) == []
    assert [b.id for b in store.batch_jobs([])] == ["b1", "b2", "b3"]


def test_an_unknown_batch_job_is_a_store_error_saying_how_to_list_them(store):
    message = "no batch job with id nope (list them with `balsamd queue ls`)"
    with pytest.raises(StoreError) as info:
        store.get_batch_job("nope")
    assert str(info.value) == message
    with pytest.raises(StoreError) as info:
        store.update_batch_job("nope", B.QUEUED)
    assert str(info.value) == message
    with pytest.raises(StoreError) as info:
        store.remove_batch_job("nope")
    assert str(info.value) == message


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(B, B)), ids=lambda s: str(s))
def test_every_move_follows_the_transition_table(store, src, dst):
    put_in(store, "b1", src)
    if dst == src:
        assert store.update_batch_job("b1", dst).state == src
    elif dst in BATCH_TRANSITIONS[src]:
        assert store.update_batch_job("b1", dst).state == dst
    else:
        with pytest.raises(StoreError) as info:
            store.update_batch_job("b1", dst)
        assert str(info.value) == f"batch job b1 is {src}; it cannot become {dst}"
        assert store.get_batch_job("b1").state == src


def test_fields_are_updated_with_or_without_a_move(store):
    new(store)
    queued = store.update_batch_job("b1", B.QUEUED, scheduler_id="4242", status_info="submitted as 4242")
    assert (queued.state, queued.scheduler_id, queued.status_info) == (B.QUEUED, "4242", "submitted as 4242")
    running = store.update_batch_job("b1", B.RUNNING, start_time=200.0)
    ended = store.update_batch_job("b1", B.FINISHED, end_time=300.0, status_info="COMPLETED")
    assert (running.start_time, ended.start_time, ended.end_time) == (200.0, 200.0, 300.0)
    same = store.update_batch_job("b1", status_info="still")
    assert (same.state, same.status_info) == (B.FINISHED, "still")
    assert store.get_batch_job("b1") == same


def test_only_scheduler_fields_can_be_updated(store):
    new(store)
    with pytest.raises(TypeError, match="num_nodes"):
        store.update_batch_job("b1", num_nodes=5)


def test_expect_changes_nothing_unless_the_batch_job_is_still_in_that_state(store):
    new(store)
    store.remove_batch_job("b1")  # the user removed it while it was being submitted
    kept = store.update_batch_job("b1", B.QUEUED, B.PENDING_SUBMISSION, scheduler_id="77")
    assert (kept.state, kept.scheduler_id) == (B.FINISHED, None)
    assert store.get_batch_job("b1") == kept
    new(store, "b2")
    moved = store.update_batch_job("b2", B.QUEUED, B.PENDING_SUBMISSION, scheduler_id="78")
    assert (moved.state, moved.scheduler_id) == (B.QUEUED, "78")


def test_removing_a_batch_job_never_submitted_finishes_it_at_once(store):
    new(store)
    removed = store.remove_batch_job("b1")
    assert (removed.state, removed.status_info) == (B.FINISHED, "removed by user")


@pytest.mark.parametrize("state", [B.QUEUED, B.RUNNING])
def test_removing_a_queued_or_running_batch_job_asks_for_its_deletion(store, state):
    put_in(store, "b1", state)
    removed = store.remove_batch_job("b1")
    assert (removed.state, removed.status_info) == (B.PENDING_DELETION, "removal requested")
    assert store.remove_batch_job("b1") == removed  # asking again changes nothing


@pytest.mark.parametrize("state", [B.FINISHED, B.SUBMIT_FAILED])
def test_removing_an_ended_batch_job_says_so(store, state):
    put_in(store, "b1", state)
    with pytest.raises(StoreError) as info:
        store.remove_batch_job("b1")
    assert str(info.value) == f"batch job b1 has already ended ({state}); nothing to remove"


# ----- the backlog --------------------------------------------------------------------------


def test_an_empty_store_has_no_backlog(store):
    assert store.backlog_stats(4, 60, {}) == BacklogStats()


def test_the_footprint_counts_runnable_jobs_by_nodes_over_packing(store):
    make_jobs(store, 3, num_nodes=1, node_packing_count=4)  # 0.75
    make_jobs(store, 2, num_nodes=2)  # 4
    make_jobs(store, 1, app="pre")  # not runnable yet: STAGED_IN
    stats = store.backlog_stats(4, 60, {})
    assert stats == BacklogStats(runnable=5, runnable_footprint=4.75, largest_nodes=2)


def test_jobs_that_cannot_fit_the_limits_are_counted_apart(store):
    make_jobs(store, 2, num_nodes=1, wall_time_min=30.0)
    make_jobs(store, 1, num_nodes=1)  # no wall time: fits any
    make_jobs(store, 1, num_nodes=8)  # too wide
    make_jobs(store, 2, num_nodes=1, wall_time_min=61.0)  # too long
    make_jobs(store, 1, num_nodes=4, wall_time_min=60.0)  # exactly at both limits: fits
    stats = store.backlog_stats(4, 60, {})
    assert (stats.runnable, stats.runnable_footprint, stats.unfit, stats.largest_nodes) == (4, 7.0, 3, 4)


def test_the_backlog_is_filtered_by_tags(store):
    make_jobs(store, 2, tags={"run": "a", "site": "x"})
    make_jobs(store, 1, tags={"run": "a"})
    make_jobs(store, 4, tags={"run": "b"})
    make_jobs(store, 1, num_nodes=9, tags={"run": "a", "site": "x"})
    assert store.backlog_stats(4, 60, {"run": "a"}).runnable == 3
    stats = store.backlog_stats(4, 60, {"run": "a", "site": "x"})
    assert (stats.runnable, stats.unfit) == (2, 1)
    assert store.backlog_stats(4, 60, {"run": "c"}) == BacklogStats()


def test_running_jobs_make_the_running_footprint(store):
    packed = make_jobs(store, 2, num_nodes=1, node_packing_count=2)
    wide = make_jobs(store, 1, num_nodes=3)
    make_jobs(store, 1)  # stays runnable
    session = store.open_session("test")
    claim(store, session.id, ClaimLimits(max_jobs=100))
    running = [*packed, *wide]
    outcome = store.update_states(
        session.id, [StateUpdate(job_id=j.id, state=JobState.RUNNING, ts=1.0) for j in running]
    )
    assert outcome.rejected == {}
    stats = store.backlog_stats(4, 60, {})
    assert (stats.running_footprint, stats.runnable, stats.runnable_footprint) == (4.0, 1, 1.0)


def test_restart_ready_jobs_are_runnable(store):
    [job] = make_jobs(store, 1, num_nodes=2)
    session = store.open_session("test")
    claim(store, session.id, ClaimLimits(max_jobs=10))
    store.update_states(session.id, [StateUpdate(job_id=job.id, state=s, ts=float(i))
                                     for i, s in enumerate((JobState.RUNNING, JobState.RUN_TIMEOUT))])  # fmt: skip
    store.close_session(session.id)
    assert store.get(job.id).state == JobState.RESTART_READY
    assert store.backlog_stats(4, 60, {}).runnable_footprint == 2.0


# ----- the schema migration (1 -> 2) that added origin--------------------------------------------


def test_a_version_1_store_gains_the_origin_column_and_its_batch_jobs_are_users(tmp_path):
    path = tmp_path / "old.db"
    conn = apsw.Connection(str(path))
    conn.execute(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO batch_jobs (id, num_nodes, wall_time_min, job_mode, project, queue, filter_tags, state, "
        "scheduler_id, status_info, created_at, start_time, end_time, seq) "
        "VALUES ('old', 2, 30, 'mpi', 'p', 'q', '{}', 'queued', '99', '', 5.0, NULL, NULL, 1)"
    )
    conn.close()
    store = SiteStore(path, RULES)
    try:
        assert store.db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
        old = store.get_batch_job("old")
        assert (old.origin, old.state, old.scheduler_id) == ("user", B.QUEUED, "99")
        assert new(store, "b2", origin="elastic").origin == "elastic"
        assert store.get_batch_job("b2").origin == "elastic"
    finally:
        store.close()
