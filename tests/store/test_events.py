"""Events: a store's append-only history, one row per step a job took, with ids that only grow."""

from __future__ import annotations

import itertools
import math

import apsw
import pytest

from balsamd import ids, lifecycle
from balsamd.models import ClaimLimits, Job, JobSpec, StateUpdate
from balsamd.states import TRANSITIONS, JobState
from balsamd.store.queries import EventFilter
from balsamd.store.schema import MIGRATIONS
from balsamd.store.transitions import MAX_STEPS
from balsamd.validate import Refused
from tests.conftest import make_jobs, open_store
from tests.store import claim, run_all

S = JobState


def test_the_events_of_a_finished_run_have_consecutive_ids_in_the_order_of_its_steps(store):
    [job] = make_jobs(store, 1)
    run_all(store, [job])
    events = store.events(job.id)
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + len(events)))
    assert [e.to_state for e in events][-5:] == [S.RUNNING, S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED]
    assert all(a.to_state == b.from_state for a, b in itertools.pairwise(events))


def test_reading_after_an_id_inside_a_move_returns_the_rest_of_it_then_what_follows(store):
    a, b = make_jobs(store, 2)
    run_all(store, [a, b])
    everything = store.events()
    for cut in range(len(everything)):
        after = everything[cut].id
        assert store.events(after=after) == everything[cut + 1 :]
        assert store.events(after=after, limit=3) == everything[cut + 1 : cut + 4]


def test_event_ids_are_not_reused_after_their_job_is_deleted(store):
    [first] = make_jobs(store, 1)
    top = store.events()[-1].id
    store.delete([first.id])
    assert store.events() == []
    [second] = make_jobs(store, 1)
    assert store.events(second.id)[0].id == top + 1


def test_a_store_of_an_earlier_schema_keeps_its_events_and_their_ids(tmp_path):
    path = tmp_path / "old.db"
    conn = apsw.Connection(str(path))
    for version, sql in enumerate(MIGRATIONS[:5]):
        conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {version + 1}")
    conn.executemany(
        "INSERT INTO events (job_id, from_state, to_state, ts, reason) VALUES (?, ?, ?, ?, ?)",
        [
            ("J1", None, "CREATED", 1.0, ""),
            ("J1", "CREATED", "READY", 2.0, "all parents finished"),
            ("J2", "RUNNING", "RUN_ERROR", 3.0, "exit code 1"),
            ("J2", "RUN_ERROR", "FAILED", 3.0, ""),
        ],
    )
    conn.execute("DELETE FROM events WHERE id = 4")  # its id stays taken
    conn.close()
    store = open_store(path)
    try:
        rows = [(e.id, e.job_id, e.from_state, e.to_state, e.ts, e.reason) for e in store.events()]
        assert rows == [
            (1, "J1", None, S.CREATED, 1.0, ""),
            (2, "J1", S.CREATED, S.READY, 2.0, "all parents finished"),
            (3, "J2", S.RUNNING, S.RUN_ERROR, 3.0, "exit code 1"),
        ]
        assert store.events("J2", after=2) == store.events()[2:]
        [job] = make_jobs(store, 1)
        assert store.events(job.id)[0].id == 5
    finally:
        store.close()


def test_the_longest_move_the_lifecycle_allows_fits_what_events_are_read_back_by():
    # a move: from a state, maybe through RUNNING (a short run's start and end), to the reported
    # state, then the steps its default hooks settle through
    longest = max(
        1 + started + len(lifecycle.settle(dst, []))
        for src in S
        for started in (0, 1)
        for dst in TRANSITIONS[S.RUNNING if started else src]
    )
    assert longest <= MAX_STEPS


def _made(store, app: str = "noop", now: float = 1000.0, **fields) -> Job:
    return store.create_jobs([JobSpec(app=app, workdir=f"w/{ids.new_id()}", **fields)], now=now)[0]


def test_events_of_the_states_asked_for_going_to_or_leaving_them(store):
    killed, ran = _made(store), _made(store)
    store.kill([killed.id], now=2000.0)
    run_all(store, [ran])
    [kill] = store.events(f=EventFilter(states=[S.KILLED]))
    assert (kill.job_id, kill.from_state, kill.ts, kill.reason) == (killed.id, S.PREPROCESSED, 2000.0, "killed by user")
    [done] = store.events(f=EventFilter(from_states=[S.RUNNING]))
    assert (done.job_id, done.to_state) == (ran.id, S.RUN_DONE)
    ended = store.events(f=EventFilter(states=[S.KILLED, S.JOB_FINISHED], from_states=[S.PREPROCESSED, S.STAGED_OUT]))
    assert [(e.job_id, e.to_state) for e in ended] == [(killed.id, S.KILLED), (ran.id, S.JOB_FINISHED)]


def test_events_between_two_times_both_included(store):
    early, late = _made(store, now=1000.0), _made(store, now=2000.0)
    store.kill([early.id], now=3000.0)
    assert {e.job_id for e in store.events(f=EventFilter(since=1500.0, until=2000.0))} == {late.id}
    assert [e.job_id for e in store.events(f=EventFilter(since=3000.0))] == [early.id]
    assert {e.ts for e in store.events(f=EventFilter(until=1000.0))} == {1000.0}


def test_events_of_jobs_with_a_tag_or_of_an_app(store):
    tagged, plain = _made(store, tags={"run": "a"}), _made(store, app="echo")
    assert {e.job_id for e in store.events(f=EventFilter(tags={"run": "a"}))} == {tagged.id}
    assert {e.job_id for e in store.events(f=EventFilter(app="echo"))} == {plain.id}
    assert store.events(f=EventFilter(app="echo", tags={"run": "a"})) == []


def test_the_latest_events_are_the_last_ones_still_oldest_first(store):
    jobs = make_jobs(store, 3)
    run_all(store, jobs)
    everything = store.events()
    assert store.events(f=EventFilter(latest=4)) == everything[-4:]
    assert store.events(f=EventFilter(latest=0)) == []
    mine = store.events(jobs[0].id)
    assert store.events(jobs[0].id, f=EventFilter(latest=2)) == mine[-2:]
    finished = [e for e in everything if e.to_state == S.JOB_FINISHED]
    assert store.events(f=EventFilter(states=[S.JOB_FINISHED], latest=2)) == finished[-2:]
    assert store.events(after=everything[-3].id, f=EventFilter(latest=10)) == everything[-2:]


@pytest.mark.parametrize(
    ("limit", "f", "problem"),
    [
        (5, EventFilter(latest=5), "give latest (the last N) or limit (the first N), not both"),
        (None, EventFilter(latest=-1), "latest must be a whole number, 0 or more (got -1); give none for no limit"),
        (None, EventFilter(since=20.0, until=10.0), "since is after until: nothing lies between; swap them"),
        (None, EventFilter(since=math.nan), "since must be a time (got nan)"),
    ],
)
def test_an_event_filter_that_means_nothing_is_refused_saying_why(store, limit, f, problem):
    with pytest.raises(Refused) as refused:
        store.events(limit=limit, f=f)
    assert str(refused.value) == f"events: {problem}"


def test_a_short_runs_steps_keep_their_own_times_under_state_and_time_filters(store):
    [job] = make_jobs(store, 1)
    session = store.open_session("runner")
    assert [j.id for j in claim(store, session.id, ClaimLimits())] == [job.id]
    done = StateUpdate(job_id=job.id, state=S.RUN_DONE, ts=2000.0, started_at=1000.0)  # one report, one move
    assert store.update_states(session.id, [done]).rejected == {}
    [started] = store.events(f=EventFilter(states=[S.RUNNING], since=1000.0))
    assert started.ts == 1000.0
    assert store.events(f=EventFilter(states=[S.RUNNING], since=1500.0)) == []
    assert [e.ts for e in store.events(f=EventFilter(states=[S.JOB_FINISHED], since=1500.0))] == [2000.0]
    assert [e.to_state for e in store.events(f=EventFilter(from_states=[S.RUNNING], until=2000.0))] == [S.RUN_DONE]
