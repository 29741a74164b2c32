"""What a live view reads, over every transport: jobs by state counted whole once and then
kept up to date from the moves since, finished runs by minute, recent failures, the nodes
running jobs occupy per batch job, and the transfer items jobs wait for."""

from __future__ import annotations

import pytest

from balsamd.models import ClaimLimits, StateUpdate
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.store.queries import JobFilter
from balsamd.validate import Refused
from tests.conftest import make_jobs
from tests.store import claim
from tests.store.test_transfer_tasks import STAGED, make, run_task

S = JobState
T0 = 1_800_000_000.0  # a minute's start: minute T0 // 60


def finish(store: Store, jobs, at: float, end: S = S.RUN_DONE, reason: str = "", batch: str | None = None) -> None:
    """Run the jobs in a new session (in batch job ``batch``), each ending at ``at``."""
    session = store.open_session("watch", batch_job_id=batch)
    wanted = {j.id for j in jobs}
    claimed = claim(store, session.id, ClaimLimits(max_jobs=100_000))
    store.release(session.id, [j.id for j in claimed if j.id not in wanted])
    updates = [StateUpdate(job_id=j.id, state=end, ts=at, started_at=at - 1, reason=reason) for j in jobs]
    assert not store.update_states(session.id, updates).rejected
    store.close_session(session.id)


def fold(counts: dict[str, int], change: dict[str, int]) -> dict[str, int]:
    merged = {s: counts.get(s, 0) + change.get(s, 0) for s in {*counts, *change}}
    return {s: n for s, n in merged.items() if n}


def test_counts_read_whole_are_the_jobs_by_state(store: Store) -> None:
    make_jobs(store, 3)
    whole = store.activity()
    assert whole.whole
    assert whole.counts == store.counts_by_state() == {"PREPROCESSED": 3}
    assert whole.last_move > 0


def test_the_moves_since_a_frame_change_the_counts_into_the_new_ones(store: Store) -> None:
    a, b, c = make_jobs(store, 3)
    before = store.activity()
    finish(store, [a], T0)
    finish(store, [b], T0, end=S.RUN_ERROR, reason="exit code 2")
    store.kill([c.id])
    make_jobs(store, 2)  # new jobs count only where they arrive

    change = store.activity(after_move=before.last_move)
    assert not change.whole
    assert change.counts == {"PREPROCESSED": -1, "JOB_FINISHED": 1, "FAILED": 1, "KILLED": 1}
    assert fold(before.counts, change.counts) == store.counts_by_state()
    assert change.last_move > before.last_move
    assert store.activity(after_move=change.last_move).counts == {}


def test_finished_runs_are_counted_by_minute_from_the_time_asked(store: Store) -> None:
    jobs = make_jobs(store, 6)
    finish(store, jobs[:1], T0 - 120)  # before the window
    finish(store, jobs[1:3], T0 + 5)
    finish(store, jobs[3:4], T0 + 65, end=S.RUN_ERROR)  # failed: not finished
    first = store.activity(since=T0)
    assert first.finished == {T0 // 60: 2}
    finish(store, jobs[4:], T0 + 70)
    assert store.activity(after_move=first.last_move, since=T0).finished == {T0 // 60 + 1: 2}
    assert store.activity(after_move=first.last_move, since=T0 + 120).finished == {}


def test_a_filter_of_app_and_tags_narrows_counts_finishes_and_failures(store: Store) -> None:
    [mine] = make_jobs(store, 1, tags={"batch": "a"})
    others = make_jobs(store, 2, tags={"batch": "b"})
    echo = make_jobs(store, 1, app="echo", tags={"batch": "a"})
    tagged = JobFilter(tags={"batch": "a"})
    before = store.activity(tagged, since=T0)
    assert before.counts == {"PREPROCESSED": 2}
    finish(store, [mine, others[0]], T0)
    finish(store, [others[1], *echo], T0, end=S.RUN_ERROR, reason="boom")

    change = store.activity(tagged, after_move=before.last_move, since=T0)
    assert change.counts == {"PREPROCESSED": -2, "JOB_FINISHED": 1, "FAILED": 1}
    assert change.finished == {T0 // 60: 1}
    assert store.activity(JobFilter(app="noop", tags={"batch": "a"}), since=T0).counts == {"JOB_FINISHED": 1}
    assert [f.job_id for f in store.recent_failures(tagged)] == [echo[0].id]
    assert [f.job_id for f in store.recent_failures(JobFilter(app="noop"))] == [others[1].id]


def test_a_removal_is_marked_so_that_counts_are_read_whole_again(store: Store) -> None:
    a, _ = make_jobs(store, 2)
    before = store.activity()
    store.delete([a.id])
    after = store.activity(after_move=before.last_move)
    assert after.removals != before.removals
    assert store.activity().counts == {"PREPROCESSED": 1}


@pytest.mark.parametrize("f", [JobFilter(states=[S.RUNNING]), JobFilter(limit=3), JobFilter(ids=["x"])])
def test_a_filter_a_live_view_cannot_follow_is_refused_naming_it(store: Store, f: JobFilter) -> None:
    with pytest.raises(Refused, match="narrows by app and tags only"):
        store.activity(f)
    with pytest.raises(Refused, match="narrows by app and tags only"):
        store.recent_failures(f)


def test_a_move_id_or_a_time_that_is_not_one_is_refused_naming_it(store: Store) -> None:
    with pytest.raises(Refused, match="after_move must be a move id"):
        store.activity(after_move=-1)
    with pytest.raises(Refused, match="since must be a time"):
        store.activity(since=float("nan"))


def test_recent_failures_come_latest_first_with_their_reason(store: Store) -> None:
    a, b, c = make_jobs(store, 3, app="handler")
    finish(store, [a], T0, end=S.RUN_ERROR, reason="exit code 1")
    finish(store, [b], T0 + 10, end=S.RUN_TIMEOUT, reason="wall time")
    finish(store, [c], T0 + 20)
    failures = store.recent_failures(limit=5)
    assert [(f.job_id, f.state, f.reason, f.app) for f in failures] == [
        (b.id, S.RUN_TIMEOUT, "wall time", "handler"),
        (a.id, S.RUN_ERROR, "exit code 1", "handler"),
    ]
    assert failures[0].at >= failures[1].at
    assert [f.job_id for f in store.recent_failures(limit=1)] == [b.id]
    with pytest.raises(Refused, match="limit must be"):
        store.recent_failures(limit=-1)


def test_running_jobs_occupy_their_nodes_over_their_packing_per_batch_job(store: Store) -> None:
    packed = make_jobs(store, 3, node_packing_count=4)
    wide = make_jobs(store, 1, num_nodes=2)
    outside = make_jobs(store, 1)
    for batch, jobs in (("B1", [*packed, *wide]), (None, outside)):
        session = store.open_session("watch", batch_job_id=batch)
        claimed = claim(store, session.id, ClaimLimits(max_jobs=100))
        store.release(session.id, [j.id for j in claimed if j.id not in {w.id for w in jobs}])
        updates = [StateUpdate(job_id=j.id, state=S.RUNNING, ts=T0) for j in jobs]
        assert not store.update_states(session.id, updates).rejected
    loads = store.running_load()
    assert {k: (v.jobs, v.nodes) for k, v in loads.items()} == {"B1": (4, 2.75), "": (1, 1.0)}


def test_the_transfer_backlog_counts_items_whose_job_waits_for_them(store: Store) -> None:
    store.put_apps([STAGED])
    make(store, 2, input="far:/in/1.dat", result="far:/out/1.dat")
    backlog = store.transfer_backlog()
    assert list(backlog) == ["in"], "outbound items are pending, but their jobs do not wait for them yet"
    assert backlog["in"].items == 2 and backlog["in"].since > 0
    run_task(store, "t1")
    assert store.transfer_backlog() == {}


# tables small whatever the store holds: the kinds of move, json_each's arguments
SMALL = ("event_steps", "json_each")


def plans(site_store, call) -> dict[str, list[str]]:
    """Each statement ``call`` runs on the store, with its query plan's lines."""
    conn = site_store.db.conn
    ran: list[tuple[str, object]] = []

    def trace(_cursor, sql: str, bindings) -> bool:
        ran.append((sql, bindings))
        return True

    conn.exec_trace = trace
    try:
        call()
    finally:
        conn.exec_trace = None
    found = {}
    for sql, bindings in ran:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            found[sql] = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", bindings)]
    return found


def test_what_a_live_view_reads_follows_an_index_and_scans_no_table_of_jobs_or_moves(site_store) -> None:
    site_store.put_apps([STAGED])
    make(site_store, 2, input="far:/in/1.dat")
    jobs = make_jobs(site_store, 3, tags={"batch": "a"})
    finish(site_store, jobs[:1], T0)
    tagged = JobFilter(app="noop", tags={"batch": "a"})
    first = site_store.activity(tagged, since=T0)
    calls = {
        "activity whole": lambda: site_store.activity(tagged, since=T0),
        "activity since": lambda: site_store.activity(tagged, after_move=first.last_move, since=T0),
        "activity since, all jobs": lambda: site_store.activity(after_move=first.last_move, since=T0),
        "recent_failures": lambda: site_store.recent_failures(tagged),
        "running_load": site_store.running_load,
        "transfer_backlog": site_store.transfer_backlog,
    }
    for name, call in calls.items():
        statements = plans(site_store, call)
        assert statements, name
        for sql, lines in statements.items():
            scans = [line for line in lines if line.startswith("SCAN") and "INDEX" not in line]
            assert all(line.split()[1] in SMALL for line in scans), f"{name}: {sql}\n{lines}"
    since = plans(site_store, calls["activity since"])
    assert any("(rowid>?)" in line for lines in since.values() for line in lines), "moves since: by id alone"
    whole = plans(site_store, lambda: site_store.activity(since=T0))
    assert any("moves_path_ts" in line for lines in whole.values() for line in lines), whole
    failures = plans(site_store, site_store.recent_failures)
    assert any("jobs_failed" in line for lines in failures.values() for line in lines), failures
