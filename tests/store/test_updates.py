"""A launcher's batched state reports: applied in order, idempotent, one bad report never
blocks the rest."""

from __future__ import annotations

import pytest

from balsamd.models import ClaimLimits, StateUpdate
from balsamd.states import JobState
from tests.conftest import make_jobs
from tests.store import claim, history, report

S = JobState


@pytest.fixture
def session(store):
    return store.open_session("launcher")


def claimed(store, session, n: int = 1, **fields):
    jobs = make_jobs(store, n, **fields)
    claim(store, session.id, ClaimLimits(apps=[jobs[0].app]))
    return jobs


def test_running_then_run_done_in_one_batch_finishes_a_default_hook_job(store, session):
    [job] = claimed(store, session)
    outcome = report(store, session, job.id, S.RUNNING, S.RUN_DONE, return_code=0)
    assert outcome.applied == [job.id, job.id]
    assert (outcome.duplicate, outcome.rejected) == ([], {})
    done = store.get(job.id)
    assert (done.state, done.return_code, done.session_id) == (S.JOB_FINISHED, 0, None)
    assert history(store, job.id)[3:] == [
        S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED,
    ]  # fmt: skip


def test_events_carry_the_launchers_report_times(store, session):
    [job] = claimed(store, session)
    store.update_states(
        session.id,
        [
            StateUpdate(job_id=job.id, state=S.RUNNING, ts=10.0),
            StateUpdate(job_id=job.id, state=S.RUN_DONE, ts=20.0),
        ],
    )
    assert [e.ts for e in store.events(job.id)][-5:] == [10.0, 20.0, 20.0, 20.0, 20.0]


def test_an_end_report_carrying_its_start_records_running_at_that_time(store, session):
    [job] = claimed(store, session)
    outcome = store.update_states(
        session.id, [StateUpdate(job_id=job.id, state=S.RUN_DONE, ts=20.0, return_code=0, started_at=10.0)]
    )
    assert outcome.rejected == {}
    assert history(store, job.id)[3:] == [
        S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED,
    ]  # fmt: skip
    assert [e.ts for e in store.events(job.id)][-5:] == [10.0, 20.0, 20.0, 20.0, 20.0]
    assert store.get(job.id).attempts == 1


def test_a_start_already_reported_is_not_recorded_twice(store, session):
    [job] = claimed(store, session)
    store.update_states(session.id, [StateUpdate(job_id=job.id, state=S.RUNNING, ts=10.0)])
    store.update_states(session.id, [StateUpdate(job_id=job.id, state=S.RUN_ERROR, ts=20.0, started_at=10.0)])
    assert history(store, job.id)[-3:] == [S.RUNNING, S.RUN_ERROR, S.FAILED]
    assert history(store, job.id).count(S.RUNNING) == 1


def test_an_end_report_with_its_start_resent_after_a_lost_reply_is_a_duplicate(store, session):
    [job] = claimed(store, session)
    update = StateUpdate(job_id=job.id, state=S.RUN_DONE, ts=20.0, return_code=0, started_at=10.0)
    store.update_states(session.id, [update])
    again = store.update_states(session.id, [update])
    assert (again.duplicate, again.rejected) == ([job.id], {})
    assert history(store, job.id).count(S.RUNNING) == 1


def test_a_report_of_a_state_launchers_do_not_report_is_rejected_whole(store, session):
    [job] = claimed(store, session)
    end = StateUpdate(job_id=job.id, state=S.JOB_FINISHED, ts=20.0, started_at=10.0)
    outcome = store.update_states(session.id, [end])
    assert outcome.rejected == {
        job.id: "a launcher reports RUNNING, RUN_DONE, RUN_ERROR, RUN_TIMEOUT, not JOB_FINISHED"
    }
    assert store.get(job.id).state == S.PREPROCESSED
    assert len(store.events(job.id)) == 3  # only its creation's steps


def test_reports_with_times_that_are_not_numbers_are_rejected_and_the_rest_recorded(store, session):
    jobs = claimed(store, session, 2)
    bad = StateUpdate(job_id=jobs[0].id, state=S.RUN_DONE, ts=float("nan"), started_at=1.0)
    good = StateUpdate(job_id=jobs[1].id, state=S.RUN_DONE, ts=2.0, started_at=1.0)
    outcome = store.update_states(session.id, [bad, good])
    assert outcome.rejected == {jobs[0].id: "its times must be finite numbers of seconds"}
    assert outcome.applied == [jobs[1].id]


def test_an_end_report_with_its_start_for_a_job_of_another_session_is_rejected(store, session):
    [job] = make_jobs(store, 1)
    outcome = store.update_states(session.id, [StateUpdate(job_id=job.id, state=S.RUN_DONE, ts=20.0, started_at=10.0)])
    assert job.id in outcome.rejected
    assert store.get(job.id).state == S.PREPROCESSED


def test_an_app_with_a_postprocess_hook_stops_at_run_done(store, session):
    [job] = claimed(store, session, app="post")
    report(store, session, job.id, S.RUNNING, S.RUN_DONE, return_code=0)
    assert store.get(job.id).state == S.RUN_DONE
    assert history(store, job.id)[-1] == S.RUN_DONE


def test_run_error_fails_by_default_keeping_the_output_tail(store, session):
    [job] = claimed(store, session)
    report(store, session, job.id, S.RUNNING)
    report(store, session, job.id, S.RUN_ERROR, return_code=3, reason="Segmentation fault")
    failed = store.get(job.id)
    assert (failed.state, failed.return_code, failed.state_reason) == (S.FAILED, 3, "Segmentation fault")
    assert history(store, job.id)[-2:] == [S.RUN_ERROR, S.FAILED]


def test_run_error_waits_for_an_apps_handle_error_hook(store, session):
    [job] = claimed(store, session, app="handler")
    report(store, session, job.id, S.RUNNING, S.RUN_ERROR, return_code=1, reason="tail")
    assert (store.get(job.id).state, store.get(job.id).state_reason) == (S.RUN_ERROR, "tail")


def test_run_timeout_restarts_by_default_and_is_claimable_again(store, session):
    [job] = claimed(store, session)
    report(store, session, job.id, S.RUNNING, S.RUN_TIMEOUT)
    timed_out = store.get(job.id)
    assert (timed_out.state, timed_out.session_id) == (S.RESTART_READY, None)
    assert history(store, job.id)[-2:] == [S.RUN_TIMEOUT, S.RESTART_READY]
    assert [j.id for j in claim(store, session.id, ClaimLimits())] == [job.id]


def test_a_resent_batch_is_a_duplicate_and_writes_no_events(store, session):
    [job] = claimed(store, session)
    batch = [
        StateUpdate(job_id=job.id, state=S.RUNNING, ts=1.0),
        StateUpdate(job_id=job.id, state=S.RUN_DONE, ts=2.0),
    ]
    store.update_states(session.id, batch)
    before = store.events()
    again = store.update_states(session.id, batch)
    assert again.duplicate == [job.id, job.id]
    assert (again.applied, again.rejected) == ([], {})
    assert store.events() == before


def test_a_partly_resent_batch_applies_only_what_is_new(store, session):
    [job] = claimed(store, session)
    running = StateUpdate(job_id=job.id, state=S.RUNNING, ts=1.0)
    store.update_states(session.id, [running])
    outcome = store.update_states(session.id, [running, StateUpdate(job_id=job.id, state=S.RUN_DONE, ts=2.0)])
    assert (outcome.duplicate, outcome.applied) == ([job.id], [job.id])
    assert store.get(job.id).state == S.JOB_FINISHED
    assert store.get(job.id).attempts == 1


def test_an_update_from_a_session_that_does_not_hold_the_job_is_rejected(store, session):
    [job] = claimed(store, session)
    other = store.open_session("other")
    outcome = report(store, other, job.id, S.RUNNING)
    assert outcome.applied == []
    assert f"not held by session {other.id}" in outcome.rejected[job.id]
    assert store.get(job.id).state == S.PREPROCESSED


def test_a_late_report_after_the_session_expired_is_rejected(store):
    session = store.open_session(now=1000.0)
    [job] = claimed(store, session)
    report(store, session, job.id, S.RUNNING)
    store.expire_sessions(300, now=2000.0)
    before = store.events()
    outcome = report(store, session, job.id, S.RUN_DONE, return_code=0)
    assert job.id in outcome.rejected
    assert store.get(job.id).state == S.RESTART_READY
    assert store.events() == before


def test_an_illegal_transition_is_rejected_for_that_job_only(store, session):
    bad, good = claimed(store, session, 2)
    outcome = store.update_states(
        session.id,
        [
            StateUpdate(job_id=bad.id, state=S.RUN_DONE, ts=1.0),
            StateUpdate(job_id=good.id, state=S.RUNNING, ts=1.0),
        ],
    )
    assert outcome.applied == [good.id]
    assert "cannot go from PREPROCESSED to RUN_DONE" in outcome.rejected[bad.id]
    assert store.get(bad.id).state == S.PREPROCESSED
    assert store.get(good.id).state == S.RUNNING


def test_a_report_for_an_unknown_job_is_rejected(store, session):
    outcome = store.update_states(session.id, [StateUpdate(job_id="nosuch", state=S.RUNNING, ts=1.0)])
    assert outcome.rejected == {"nosuch": "no such job"}


def test_attempts_count_starts(store, session):
    [job] = claimed(store, session)
    report(store, session, job.id, S.RUNNING, S.RUN_TIMEOUT)
    claim(store, session.id, ClaimLimits())
    report(store, session, job.id, S.RUNNING, S.RUN_DONE)
    assert store.get(job.id).attempts == 2
    assert history(store, job.id).count(S.RUNNING) == 2


def test_a_python_apps_result_is_stored(store, session):
    [job] = claimed(store, session)
    report(store, session, job.id, S.RUNNING)
    report(store, session, job.id, S.RUN_DONE, return_code=0, result=b"pickled")
    assert store.get(job.id).result == b"pickled"


def test_heartbeat_returns_the_running_jobs_that_were_killed(store, session):
    kept, killed = claimed(store, session, 2)
    for job in (kept, killed):
        report(store, session, job.id, S.RUNNING)
    assert store.heartbeat(session.id, [kept.id, killed.id]) == []
    store.kill([killed.id])
    assert store.heartbeat(session.id, [kept.id, killed.id]) == [killed.id]
    assert store.get(killed.id).session_id is None


def test_heartbeat_names_the_claimed_jobs_killed_before_they_started(store, session):
    kept, killed, started = claimed(store, session, 3)
    assert store.heartbeat(session.id, [], [kept.id, killed.id, started.id]) == []
    store.kill([killed.id])
    report(store, session, started.id, S.RUNNING)
    # a job started since the launcher listed it as waiting is still its own
    assert store.heartbeat(session.id, [], [kept.id, killed.id, started.id]) == [killed.id]
    assert store.heartbeat(session.id, [started.id], [kept.id]) == []


def test_a_second_start_of_a_running_job_is_rejected_as_already_running(store, session):
    [job] = claimed(store, session)
    report(store, session, job.id, S.RUNNING)
    outcome = report(store, session, job.id, S.RUNNING)
    assert outcome.rejected == {job.id: "job is already RUNNING"}
    assert store.get(job.id).attempts == 1
