"""Applying state changes inside a write transaction.

Every state change of the store funnels through :func:`apply_moves`: it checks each step
against the transition table, walks the default-hook steps, writes one event per step, and
then propagates along the DAG (children become ready when all parents finished, and fail when
a parent failed or was killed) within the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import apsw
import msgspec

from balsamd import lifecycle
from balsamd.states import IllegalTransition, JobState, check_transition, is_allowed
from balsamd.store.db import values_chunks

S = JobState


class Move(msgspec.Struct):
    """One requested change: job ``job_id`` (now in ``src``) to ``dst``, plus column values.

    ``ts`` is when it happened (a launcher's report time), else the transaction's ``now``.
    ``started_at``: the job went RUNNING then, on its way to ``dst`` (a short run's start and
    end reported together).
    """

    job_id: str
    src: JobState
    app: str
    dst: JobState
    reason: str = ""
    columns: dict[str, Any] = {}
    ts: float | None = None
    started_at: float | None = None


_STATES = {str(s): s for s in JobState}
_STARTABLE = frozenset(s for s in JobState if is_allowed(s, S.RUNNING))


def _in_chunks(items: list[str], size: int = 20_000) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load_states(conn: apsw.Connection, ids: list[str]) -> dict[str, tuple[JobState, str, str | None]]:
    """id -> (state, app, session_id) for the ids that exist."""
    found: dict[str, tuple[JobState, str, str | None]] = {}
    for chunk in _in_chunks(ids):
        # one row of JSON, not a row per job: each row stepped is a GIL handover with the
        # launcher's loop when a courier thread reports
        (rows,) = conn.execute(
            "SELECT json_group_array(json_array(id, state, app, session_id)) FROM jobs "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (msgspec.json.encode(chunk),),
        ).fetchone()
        for id_, state, app, session in msgspec.json.decode(rows):
            found[id_] = (_STATES[state], app, session)
    return found


def apply_moves(
    conn: apsw.Connection,
    moves: list[Move],
    hooks: Mapping[str, list[str]],
    now: float,
    seq: int,
) -> dict[str, JobState]:
    """Apply moves in order (raising IllegalTransition before writing anything).

    A job may appear in several moves (RUNNING then RUN_DONE in one report); each move must
    start where the previous one left it.  Returns each job's final state.
    """
    finals: dict[str, JobState] = {}
    columns: dict[str, dict[str, Any]] = {}
    starts: dict[str, int] = {}
    events: list[Any] = []  # five values an event row, end to end, as they are bound
    add_event = events.extend
    # every report of a batch is alike: each (from, to, app) is checked and settled once
    chains: dict[tuple[JobState, JobState, str], tuple[JobState, ...]] = {}
    for m in moves:
        job_id = m.job_id
        prev = finals.get(job_id, m.src)
        if m.started_at is not None:
            if prev not in _STARTABLE:
                check_transition(job_id, prev, S.RUNNING)  # raises
            add_event((job_id, prev, S.RUNNING, m.started_at, ""))
            prev = S.RUNNING
            starts[job_id] = starts.get(job_id, 0) + 1
        chain = chains.get((prev, m.dst, m.app))
        if chain is None:
            check_transition(job_id, prev, m.dst)
            chain = chains[prev, m.dst, m.app] = (m.dst, *lifecycle.settle(m.dst, hooks.get(m.app, ())))
        ts = now if m.ts is None else m.ts
        reason = m.reason
        for state in chain:
            add_event((job_id, prev, state, ts, reason))
            reason = ""
            prev = state
        # the next move starts where this one settles, not where it was sent
        finals[job_id] = prev
        cols = columns.get(job_id)
        if cols is None:
            cols = columns[job_id] = dict(m.columns)
        elif m.columns:
            cols.update(m.columns)
        if m.reason:
            cols["state_reason"] = m.reason
        if m.dst == S.RUNNING:
            starts[job_id] = starts.get(job_id, 0) + 1
    updates: dict[tuple[str, ...], list[Any]] = defaultdict(list)  # rows end to end, as bound
    for job_id, final in finals.items():
        cols = columns[job_id]
        if final != S.RUNNING:
            # only a running job stays bound to the session that runs it
            cols.setdefault("session_id", None)
        # alike reports add their columns in the same order: they share a statement
        updates[tuple(cols)].extend((job_id, final, starts.get(job_id, 0), *cols.values()))
    for keys, rows in updates.items():
        names = ", ".join(("id", "state", "starts", *keys))
        sets = "".join(f", {c} = u.{c}" for c in keys)
        for values, params in values_chunks(rows, 3 + len(keys)):
            n = len(params)
            conn.execute(
                f"WITH u({names}) AS (VALUES {values}) UPDATE jobs SET state = u.state, updated_at = ?{n + 1}, "
                f"seq = ?{n + 2}, version = version + 1, attempts = attempts + u.starts{sets} "
                "FROM u WHERE jobs.id = u.id",
                (*params, now, seq),
            )
    for values, params in values_chunks(events, 5):
        conn.execute(f"INSERT INTO events (job_id, from_state, to_state, ts, reason) VALUES {values}", params)
    finished = [i for i, s in finals.items() if s == S.JOB_FINISHED]
    failed = [(i, s) for i, s in finals.items() if s in (S.FAILED, S.KILLED)]
    if finished:
        finals.update(_release_children(conn, finished, hooks, now, seq))
    if failed:
        finals.update(_fail_children(conn, failed, hooks, now, seq))
    return finals


def direct_children(conn: apsw.Connection, parent_ids: list[str]) -> list[tuple[str, str, JobState, str]]:
    """(parent, child, child state, child app) for the direct children of the parents."""
    out = []
    for chunk in _in_chunks(parent_ids):
        out.extend(
            (p, c, S(state), app)
            for p, c, state, app in conn.execute(
                "SELECT jp.parent_id, j.id, j.state, j.app FROM job_parents jp "
                "JOIN jobs j ON j.id = jp.child_id "
                "WHERE jp.parent_id IN (SELECT value FROM json_each(?))",
                (msgspec.json.encode(chunk).decode(),),
            )
        )
    return out


def _release_children(
    conn: apsw.Connection, parents: list[str], hooks: Mapping[str, list[str]], now: float, seq: int
) -> dict[str, JobState]:
    moves = []
    seen = set()
    for _parent, child, state, app in direct_children(conn, parents):
        if state != S.AWAITING_PARENTS or child in seen:
            continue
        seen.add(child)
        unfinished = conn.execute(
            "SELECT COUNT(*) FROM job_parents jp JOIN jobs j ON j.id = jp.parent_id "
            "WHERE jp.child_id = ? AND j.state != 'JOB_FINISHED'",
            (child,),
        ).fetchone()[0]
        if unfinished == 0:
            moves.append(Move(child, state, app, S.READY, "all parents finished"))
    return apply_moves(conn, moves, hooks, now, seq) if moves else {}


def _fail_children(
    conn: apsw.Connection,
    parents: list[tuple[str, JobState]],
    hooks: Mapping[str, list[str]],
    now: float,
    seq: int,
) -> dict[str, JobState]:
    parent_state = dict(parents)
    moves = []
    seen = set()
    for parent, child, state, app in direct_children(conn, list(parent_state)):
        if child in seen or lifecycle.is_final(state):
            continue
        seen.add(child)
        reason = lifecycle.parent_failure_reason(parent, parent_state[parent])
        try:
            check_transition(child, state, S.FAILED)
        except IllegalTransition:
            continue
        moves.append(Move(child, state, app, S.FAILED, reason))
    return apply_moves(conn, moves, hooks, now, seq) if moves else {}
