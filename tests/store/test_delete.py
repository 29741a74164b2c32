"""Removing jobs: whole jobs or nothing of them, and never one that something still needs."""

from __future__ import annotations

from balsamd import ids
from balsamd.models import ClaimLimits
from balsamd.states import JobState
from balsamd.store.queries import JobFilter
from tests.conftest import make_jobs
from tests.store import claim, report, run_all

S = JobState


def rows(store, table: str, column: str, job_id: str) -> int:
    return store.db.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (job_id,)).fetchone()[0]


def test_delete_removes_the_job_with_its_events_tags_and_links(store):
    [parent] = make_jobs(store, 1)
    [child] = make_jobs(store, 1, tags={"exp": "a"}, parent_ids=[parent.id])
    outcome = store.delete([child.id, parent.id])
    assert sorted(outcome.removed) == sorted([child.id, parent.id])
    assert outcome.refused == {}
    assert store.count() == 0
    assert store.events() == []
    assert store.count(JobFilter(tags={"exp": "a"})) == store.count(JobFilter(parent_id=parent.id)) == 0


def test_delete_leaves_no_row_of_a_job_behind(site_store):
    store = site_store
    [parent] = make_jobs(store, 1)
    [child] = make_jobs(store, 1, tags={"exp": "a"}, parent_ids=[parent.id])
    assert sorted(store.delete([child.id, parent.id]).removed) == sorted([child.id, parent.id])
    for job in (parent, child):
        assert rows(store, "events", "job_id", job.id) == 0
        assert rows(store, "job_tags", "job_id", job.id) == 0
        assert rows(store, "job_parents", "child_id", job.id) == 0
        assert rows(store, "job_parents", "parent_id", job.id) == 0


def test_delete_refuses_a_job_claimed_by_a_session_and_says_how_to_stop_it(store):
    claimed, free = make_jobs(store, 2)
    session = store.open_session()
    claim(store, session.id, ClaimLimits(max_jobs=1))
    outcome = store.delete([claimed.id, free.id])
    assert outcome.removed == [free.id]
    assert session.id in outcome.refused[claimed.id]
    assert f"balsamd job kill {claimed.id}" in outcome.refused[claimed.id]
    assert store.get(claimed.id).session_id == session.id


def test_delete_refuses_a_running_job(store):
    [job] = make_jobs(store, 1)
    session = store.open_session()
    claim(store, session.id, ClaimLimits())
    report(store, session, job.id, S.RUNNING)
    outcome = store.delete([job.id])
    assert outcome.removed == []
    assert "RUNNING" in outcome.refused[job.id]


def test_delete_refuses_the_parent_of_an_unfinished_child(store):
    [parent] = make_jobs(store, 1)
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    outcome = store.delete([parent.id])
    assert outcome.removed == []
    assert "1 unfinished child job(s)" in outcome.refused[parent.id]
    assert child.id in outcome.refused[parent.id]
    assert store.get(parent.id).state == S.PREPROCESSED


def test_delete_refuses_a_parent_whose_child_in_the_same_request_is_refused(store):
    [parent] = make_jobs(store, 1)
    run_all(store, [parent])
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    session = store.open_session()
    claim(store, session.id, ClaimLimits())
    outcome = store.delete([parent.id, child.id])
    assert outcome.removed == []
    assert set(outcome.refused) == {parent.id, child.id}
    assert child.id in outcome.refused[parent.id]
    assert store.get(parent.id).state == S.JOB_FINISHED


def test_delete_allows_the_parent_of_finished_children(store):
    [parent] = make_jobs(store, 1)
    run_all(store, [parent])
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    run_all(store, [child])
    assert store.delete([parent.id]).removed == [parent.id]
    assert store.get(child.id).state == S.JOB_FINISHED
    assert store.filter(JobFilter(parent_id=parent.id)) == []


def test_delete_reports_unknown_ids_and_removes_the_rest(store):
    [job] = make_jobs(store, 1)
    missing = ids.new_id()
    outcome = store.delete([job.id, missing])
    assert outcome.removed == [job.id]
    assert outcome.refused == {missing: "no such job"}
