"""apply_moves: the one place that writes states, checking every step against the table."""

from __future__ import annotations

import pytest

from balsamd.states import IllegalTransition, JobState
from balsamd.store.transitions import Move, apply_moves
from tests.conftest import make_jobs
from tests.store import history

S = JobState


def apply(site_store, moves: list[Move]) -> dict[str, JobState]:
    with site_store.db.write() as conn:
        hooks = {name: app.hooks for name, app in site_store.apps().items()}
        return apply_moves(conn, moves, hooks, 1.0, site_store.db.next_seq(conn))


def test_moves_of_one_job_apply_in_order_each_from_where_the_last_left_it(site_store):
    [job] = make_jobs(site_store, 1)
    finals = apply(
        site_store,
        [Move(job.id, S.PREPROCESSED, "noop", S.RUNNING), Move(job.id, S.PREPROCESSED, "noop", S.RUN_DONE)],
    )
    assert finals == {job.id: S.JOB_FINISHED}
    assert history(site_store, job.id)[-3:] == [S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED]


def test_a_move_is_checked_from_the_state_the_previous_one_settled_in(site_store):
    [job] = make_jobs(site_store, 1)
    before = site_store.events()
    moves = [
        Move(job.id, S.PREPROCESSED, "noop", S.RUNNING),
        Move(job.id, S.PREPROCESSED, "noop", S.RUN_DONE),
        Move(job.id, S.PREPROCESSED, "noop", S.KILLED),
    ]
    with pytest.raises(IllegalTransition, match="cannot go from JOB_FINISHED to KILLED"):
        apply(site_store, moves)
    assert site_store.get(job.id).state == S.PREPROCESSED
    assert site_store.events() == before


def test_an_illegal_first_move_writes_nothing(site_store):
    [job] = make_jobs(site_store, 1)
    with pytest.raises(IllegalTransition):
        apply(site_store, [Move(job.id, S.PREPROCESSED, "noop", S.JOB_FINISHED)])
    assert history(site_store, job.id)[-1] == S.PREPROCESSED


def test_interleaved_moves_of_several_jobs_keep_each_jobs_events_in_order(site_store):
    a, b, c = make_jobs(site_store, 3)
    finals = apply(
        site_store,
        [
            Move(a.id, S.PREPROCESSED, "noop", S.RUNNING),
            Move(b.id, S.PREPROCESSED, "noop", S.RUNNING),
            Move(a.id, S.PREPROCESSED, "noop", S.RUN_DONE),
            Move(c.id, S.PREPROCESSED, "noop", S.RUN_DONE, started_at=0.5),
            Move(b.id, S.PREPROCESSED, "noop", S.RUN_ERROR, "exit code 3"),
        ],
    )
    assert finals == {a.id: S.JOB_FINISHED, b.id: S.FAILED, c.id: S.JOB_FINISHED}
    done = [S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED]
    assert history(site_store, a.id)[-6:] == done
    assert history(site_store, c.id)[-6:] == done
    assert history(site_store, b.id)[-4:] == [S.PREPROCESSED, S.RUNNING, S.RUN_ERROR, S.FAILED]
    assert [site_store.get(j.id).attempts for j in (a, b, c)] == [1, 1, 1]
    assert site_store.events(c.id)[-5].ts == 0.5  # its start, at the time it was given


def test_a_reason_is_recorded_on_its_own_step_and_job_only(site_store):
    a, b = make_jobs(site_store, 2)
    apply(
        site_store,
        [
            Move(a.id, S.PREPROCESSED, "noop", S.RUN_ERROR, "exit code 3", started_at=0.5),
            Move(b.id, S.PREPROCESSED, "noop", S.RUN_DONE, started_at=0.5),
        ],
    )
    running, error, failed = site_store.events(a.id)[-3:]
    assert (running.reason, error.reason, failed.reason) == ("", "exit code 3", "")
    assert site_store.get(a.id).state_reason == "exit code 3"
    assert site_store.get(b.id).state_reason == ""


def test_columns_of_a_move_are_written_to_its_job_only(site_store):
    a, b = make_jobs(site_store, 2)
    apply(
        site_store,
        [
            Move(a.id, S.PREPROCESSED, "noop", S.RUN_DONE, columns={"return_code": 0}, started_at=0.5),
            Move(b.id, S.PREPROCESSED, "noop", S.RUN_ERROR, columns={"return_code": 7}, started_at=0.5),
        ],
    )
    assert (site_store.get(a.id).return_code, site_store.get(b.id).return_code) == (0, 7)
