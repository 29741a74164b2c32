"""apply_moves: the one place that writes states, checking every step against the table."""

from __future__ import annotations

import pytest

from balsamd.states import IllegalTransition, JobState
from balsamd.store.transitions import Move, apply_moves
from tests.conftest import make_jobs
from tests.store import history

S = JobState


def apply(store, moves: list[Move]) -> dict[str, JobState]:
    with store.db.write() as conn:
        return apply_moves(conn, moves, store._app_hooks(conn), 1.0, store.db.next_seq(conn))


def test_moves_of_one_job_apply_in_order_each_from_where_the_last_left_it(store):
    [job] = make_jobs(store, 1)
    finals = apply(
        store,
        [Move(job.id, S.PREPROCESSED, "noop", S.RUNNING), Move(job.id, S.PREPROCESSED, "noop", S.RUN_DONE)],
    )
    assert finals == {job.id: S.JOB_FINISHED}
    assert history(store, job.id)[-3:] == [S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED]


def test_a_move_is_checked_from_the_state_the_previous_one_settled_in(store):
    [job] = make_jobs(store, 1)
    before = store.events()
    moves = [
        Move(job.id, S.PREPROCESSED, "noop", S.RUNNING),
        Move(job.id, S.PREPROCESSED, "noop", S.RUN_DONE),
        Move(job.id, S.PREPROCESSED, "noop", S.KILLED),
    ]
    with pytest.raises(IllegalTransition, match="cannot go from JOB_FINISHED to KILLED"):
        apply(store, moves)
    assert store.get(job.id).state == S.PREPROCESSED
    assert store.events() == before


def test_an_illegal_first_move_writes_nothing(store):
    [job] = make_jobs(store, 1)
    with pytest.raises(IllegalTransition):
        apply(store, [Move(job.id, S.PREPROCESSED, "noop", S.JOB_FINISHED)])
    assert history(store, job.id)[-1] == S.PREPROCESSED
