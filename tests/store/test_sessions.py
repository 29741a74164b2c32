"""Launcher sessions: heartbeats keep claims alive; an ended session's jobs are recovered
by their app's timeout policy, exactly once."""

from __future__ import annotations

import multiprocessing

from balsamd.models import ClaimLimits, SessionState
from balsamd.states import JobState
from tests.conftest import make_jobs, open_store
from tests.store import claim, history, report

S = JobState
EXPIRY = 300.0


def running_and_claimed(store, session, app: str = "noop"):
    """One job RUNNING and one claimed but not started, both bound to ``session``."""
    running, waiting = make_jobs(store, 2, app=app)
    claim(store, session.id, ClaimLimits(apps=[app]))
    report(store, session, running.id, S.RUNNING)
    return running, waiting


def timeouts(store, job_id: str) -> int:
    return sum(1 for e in store.events(job_id) if e.to_state == S.RUN_TIMEOUT)


def test_a_heartbeat_keeps_a_session_from_expiring(store):
    session = store.open_session(now=1000.0)
    store.heartbeat(session.id, now=1200.0)
    assert store.expire_sessions(EXPIRY, now=1400.0) == []
    assert store.get_session(session.id).state == SessionState.OPEN
    assert store.expire_sessions(EXPIRY, now=1600.0) == [session.id]


def test_expiry_times_out_running_jobs_then_restarts_them_by_default(store):
    session = store.open_session(now=1000.0)
    running, _ = running_and_claimed(store, session)
    assert store.expire_sessions(EXPIRY, now=2000.0) == [session.id]
    expired = store.get_session(session.id)
    assert (expired.state, expired.ended_at) == (SessionState.EXPIRED, 2000.0)
    job = store.get(running.id)
    assert (job.state, job.session_id, job.state_reason) == (
        S.RESTART_READY,
        None,
        "launcher session expired",
    )
    assert history(store, running.id)[-3:] == [S.RUNNING, S.RUN_TIMEOUT, S.RESTART_READY]


def test_expiry_unbinds_claimed_but_unstarted_jobs_without_an_event(store):
    session = store.open_session(now=1000.0)
    _, waiting = running_and_claimed(store, session)
    before = store.events(waiting.id)
    store.expire_sessions(EXPIRY, now=2000.0)
    assert store.get(waiting.id).session_id is None
    assert store.get(waiting.id).state == S.PREPROCESSED
    assert store.events(waiting.id) == before


def test_expiry_leaves_timed_out_jobs_to_an_apps_handle_timeout_hook(store):
    session = store.open_session(now=1000.0)
    running, _ = running_and_claimed(store, session, app="handler")
    store.expire_sessions(EXPIRY, now=2000.0)
    assert (store.get(running.id).state, store.get(running.id).session_id) == (S.RUN_TIMEOUT, None)


def test_expiring_twice_times_a_job_out_once(store):
    session = store.open_session(now=1000.0)
    running, _ = running_and_claimed(store, session)
    assert store.expire_sessions(EXPIRY, now=2000.0) == [session.id]
    assert store.expire_sessions(EXPIRY, now=3000.0) == []
    assert timeouts(store, running.id) == 1


def test_expired_jobs_can_be_claimed_by_another_session(store):
    session = store.open_session(now=1000.0)
    running, waiting = running_and_claimed(store, session)
    store.expire_sessions(EXPIRY, now=2000.0)
    fresh = store.open_session(now=2000.0)
    assert {j.id for j in claim(store, fresh.id, ClaimLimits())} == {running.id, waiting.id}


def test_close_session_times_out_running_jobs_and_unbinds_the_rest(store):
    session = store.open_session()
    running, waiting = running_and_claimed(store, session)
    store.close_session(session.id)
    assert store.get_session(session.id).state == SessionState.CLOSED
    assert history(store, running.id)[-2:] == [S.RUN_TIMEOUT, S.RESTART_READY]
    assert store.get(running.id).state_reason == "session closed while running"
    assert store.get(waiting.id).session_id is None
    store.close_session(session.id)
    assert timeouts(store, running.id) == 1


def test_sessions_lists_open_ones_on_request(store):
    closed = store.open_session("a")
    still = store.open_session("b")
    store.close_session(closed.id)
    assert [s.id for s in store.sessions()] == [closed.id, still.id]
    assert [s.id for s in store.sessions(open_only=True)] == [still.id]


def _expire(path: str, barrier) -> None:
    store = open_store(path)
    barrier.wait()
    store.expire_sessions(EXPIRY, now=2000.0)
    store.close()


def test_two_processes_expiring_at_once_time_each_job_out_once(site_store):
    store = site_store
    sessions = [store.open_session(now=1000.0) for _ in range(4)]
    running = []
    for session in sessions:
        jobs = make_jobs(store, 20)
        claim(store, session.id, ClaimLimits(max_jobs=20))
        for job in jobs:
            report(store, session, job.id, S.RUNNING)
        running.extend(jobs)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_expire, args=(str(store.db.path), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert all(s.state == SessionState.EXPIRED for s in store.sessions())
    assert [timeouts(store, j.id) for j in running] == [1] * len(running)
    assert {store.get(j.id).state for j in running} == {S.RESTART_READY}
