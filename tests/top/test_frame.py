"""A frame of the live view, built from a real store: counts and their change since the frame
before, throughput by window, busy and idle nodes of running batch jobs, failures, the
services' lag from the daemon's status; and the same frame over the daemon's RPC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from balsamd.models import BatchJob, BatchJobState, ClaimLimits, StateUpdate
from balsamd.rpc.protocol import ServiceHealth
from balsamd.states import JobState
from balsamd.store.store import SiteStore
from balsamd.top.frame import RECOUNT_SEC, Frame, Rate, ServiceLag, Tally, View, build_frame
from tests.conftest import make_jobs, open_store
from tests.store import claim
from tests.store.conftest import served

S = JobState
NOW = 1_800_000_030.0  # 30 s into a minute
NOT_RUNNING = "the daemon is not running"


@pytest.fixture
def store(tmp_path) -> Iterator[SiteStore]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def run(store: SiteStore, jobs, at: float, end: S | None = S.RUN_DONE, batch: str | None = None, reason: str = ""):
    """Start the jobs in a session of batch job ``batch``; end them at ``at`` unless ``end`` is None."""
    session = store.open_session("frame", batch_job_id=batch)
    wanted = {j.id for j in jobs}
    claimed = claim(store, session.id, ClaimLimits(max_jobs=1000))
    store.release(session.id, [j.id for j in claimed if j.id not in wanted])
    if end is None:
        updates = [StateUpdate(job_id=j.id, state=S.RUNNING, ts=at) for j in jobs]
    else:
        updates = [StateUpdate(job_id=j.id, state=end, ts=at, started_at=at - 1, reason=reason) for j in jobs]
    assert not store.update_states(session.id, updates).rejected


ALL = View()


def frame_of(store, tally: Tally | None = None, view: View = ALL, status=NOT_RUNNING, now=NOW):
    return build_frame(store, "site-a", view, tally, status, now)


def states(frame: Frame) -> dict[str, tuple[int, int]]:
    return {s.state: (s.count, s.change) for s in frame.states}


def test_a_first_frame_counts_jobs_by_state_and_shows_no_change(store) -> None:
    make_jobs(store, 4)
    frame, _ = frame_of(store)
    assert frame.first and frame.total == 4
    assert states(frame) == {"PREPROCESSED": (4, 0)}
    assert frame.daemon == NOT_RUNNING and frame.services == []


def test_the_next_frame_shows_each_states_change_since_the_one_before(store) -> None:
    jobs = make_jobs(store, 5)
    _, tally = frame_of(store)
    run(store, jobs[:2], NOW - 5)
    store.kill([jobs[2].id])
    make_jobs(store, 3)
    second, tally = frame_of(store, tally, now=NOW + 1)
    assert not second.first
    assert states(second) == {"PREPROCESSED": (5, 0), "JOB_FINISHED": (2, 2), "KILLED": (1, 1)}
    assert second.total == 8
    third, _ = frame_of(store, tally, now=NOW + 2)
    assert states(third) == {"PREPROCESSED": (5, 0), "JOB_FINISHED": (2, 0), "KILLED": (1, 0)}


def test_a_state_left_empty_shows_its_loss_once(store) -> None:
    jobs = make_jobs(store, 2)
    _, tally = frame_of(store)
    run(store, jobs, NOW)
    frame, tally = frame_of(store, tally, now=NOW + 1)
    assert states(frame) == {"PREPROCESSED": (0, -2), "JOB_FINISHED": (2, 2)}
    frame, _ = frame_of(store, tally, now=NOW + 2)
    assert states(frame) == {"JOB_FINISHED": (2, 0)}


def test_throughput_counts_finished_runs_in_the_last_minute_five_and_hour(store) -> None:
    jobs = make_jobs(store, 10)
    run(store, jobs[:1], NOW - 2 * 3600)  # before the hour
    run(store, jobs[1:4], NOW - 40 * 60)
    run(store, jobs[4:6], NOW - 3 * 60)
    run(store, jobs[6:7], NOW - 10)
    run(store, jobs[7:8], NOW - 20, end=S.RUN_ERROR)  # a failure is not throughput
    frame, tally = frame_of(store)
    # whole minutes, the current one (30 s old) included
    assert frame.throughput == [
        Rate(minutes=1, finished=1, per_sec=1 / 30),
        Rate(minutes=5, finished=3, per_sec=3 / 270),
        Rate(minutes=60, finished=6, per_sec=6 / 3570),
    ]
    run(store, jobs[8:], NOW + 20)
    later, _ = frame_of(store, tally, now=NOW + 25)
    assert [r.finished for r in later.throughput] == [3, 5, 8]


def test_batch_jobs_show_nodes_busy_with_running_jobs_and_the_rest_idle(store) -> None:
    batch = store.create_batch_job(BatchJob(id="b1", num_nodes=4, wall_time_min=30, job_mode="serial"))
    store.update_batch_job(batch.id, state=BatchJobState.QUEUED, scheduler_id="1234")
    store.update_batch_job(batch.id, state=BatchJobState.RUNNING)
    packed = make_jobs(store, 2, node_packing_count=4)
    wide = make_jobs(store, 1, num_nodes=2)
    run(store, [*packed, *wide], NOW, end=None, batch=batch.id)
    run(store, make_jobs(store, 1), NOW, end=None)  # a launcher outside any batch job
    frame, _ = frame_of(store)
    rows = [(b.id, b.scheduler_id, b.num_nodes, b.running_jobs, b.busy_nodes, b.idle_nodes) for b in frame.batch_jobs]
    assert rows == [(batch.id, "1234", 4, 3, 2.5, 1.5), ("", None, None, 1, 1.0, None)]


def test_failures_come_latest_first_with_their_reason(store) -> None:
    a, b = make_jobs(store, 2)
    run(store, [a], NOW - 60, end=S.RUN_ERROR, reason="exit code 3")
    run(store, [b], NOW - 30, end=S.RUN_ERROR, reason="exit code 4")
    frame, _ = frame_of(store)
    assert [(f.job_id, f.reason) for f in frame.failures] == [(b.id, "exit code 4"), (a.id, "exit code 3")]


def test_a_view_narrows_every_count_to_its_app_and_tags(store) -> None:
    mine = make_jobs(store, 2, tags={"run": "a"})
    make_jobs(store, 3, tags={"run": "b"})
    view = View(tags={"run": "a"})
    first, tally = frame_of(store, view=view)
    assert first.total == 2
    run(store, mine[:1], NOW - 5, end=S.RUN_ERROR, reason="bad")
    frame, tally = frame_of(store, tally, view=view, now=NOW + 1)
    assert states(frame) == {"PREPROCESSED": (1, -1), "FAILED": (1, 1)}
    assert [f.job_id for f in frame.failures] == [mine[0].id]
    # another view starts again: counted whole, no change shown
    other, _ = frame_of(store, tally, view=View(app="noop"), now=NOW + 2)
    assert other.first and other.total == 5


def test_counts_are_read_whole_again_after_a_removal_and_every_while(store) -> None:
    a, _ = make_jobs(store, 2)
    _, tally = frame_of(store)
    store.delete([a.id])
    frame, tally = frame_of(store, tally, now=NOW + 1)
    assert states(frame) == {"PREPROCESSED": (1, -1)}
    assert tally.counted_at == NOW + 1
    frame, tally = frame_of(store, tally, now=NOW + 2)
    assert tally.counted_at == NOW + 1
    frame, tally = frame_of(store, tally, now=NOW + 1 + RECOUNT_SEC)
    assert tally.counted_at == NOW + 1 + RECOUNT_SEC and frame.total == 1


def test_the_services_lag_comes_from_the_daemons_services(store) -> None:
    services = [
        ServiceHealth(name="processing", healthy=True),
        ServiceHealth(name="sync", healthy=False, last_error="connection refused\ntraceback",
                      detail={"lag_changes": 12, "last_ok": NOW - 40}),
        ServiceHealth(name="transfers", healthy=True, detail={"tasks_running": 2, "items_retrying": 1}),
    ]  # fmt: skip
    frame, _ = frame_of(store, status=services)
    assert frame.daemon == "running"
    assert frame.services == [
        ServiceLag(
            name="sync", healthy=False, lag="12 change(s) not yet central, last round 40 s ago",
            last_error="connection refused",
        ),
        ServiceLag(name="transfers", healthy=True, lag="2 task(s) running, 1 item(s) to retry"),
    ]  # fmt: skip
    frame, _ = frame_of(store, status=services[2:])
    assert frame.services[0] == ServiceLag(name="sync", healthy=None, lag="the site has no central database")


def test_a_frame_over_the_daemons_rpc_is_the_frame_of_the_store_itself(store) -> None:
    jobs = make_jobs(store, 3)
    run(store, jobs[:1], NOW - 5)
    local, local_tally = frame_of(store)
    with served(store) as remote:
        over_rpc, rpc_tally = frame_of(remote)
        assert over_rpc == local
        run(store, jobs[1:], NOW - 3, end=S.RUN_ERROR, reason="no")
        assert frame_of(remote, rpc_tally, now=NOW + 1)[0] == frame_of(store, local_tally, now=NOW + 1)[0]
