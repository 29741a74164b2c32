"""Applying state changes inside a write transaction.

Every state change of the store funnels through :func:`apply_moves`: it checks each step
against the transition table, walks the default-hook steps, writes one event per step, and
then propagates along the DAG (children become ready when all parents finished, and fail when
a parent failed or was killed) within the same transaction.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import apsw
import msgspec

from balsamd import lifecycle
from balsamd.states import IllegalTransition, JobState, check_transition, is_allowed
from balsamd.store.db import values_chunks
from balsamd.store.sql import value

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
        rows = value(
            conn,
            "SELECT json_group_array(json_array(id, state, app, session_id)) FROM jobs "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (msgspec.json.encode(chunk),),
        )
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
    plans = [_plan(batch, hooks, now, finals) for batch in _rounds(moves)]
    last_event = value(conn, "SELECT value FROM counters WHERE name = 'events'")
    for plan in plans:  # every move was checked before the first write
        for (path, started, keys), rows in plan.items():
            last_event = _write_group(conn, path, started, keys, rows, now, seq, last_event)
    conn.execute("UPDATE counters SET value = ? WHERE name = 'events'", (last_event,))
    finished = [i for i, s in finals.items() if s == S.JOB_FINISHED]
    failed: list[tuple[str, JobState]] = [(i, s) for i, s in finals.items() if s in (S.FAILED, S.KILLED)]
    passed = _pass_stages(conn, moves, finals, hooks, now, seq)
    if finished:
        finals.update(_release_children(conn, finished, hooks, now, seq))
    if failed:
        conn.execute(
            "UPDATE transfer_items SET state = 'cancelled', updated_at = ?, seq = ? "
            "WHERE state = 'pending' AND job_id IN (SELECT value FROM json_each(?))",
            (now, seq, msgspec.json.encode([i for i, _ in failed]).decode()),
        )
        finals.update(_fail_children(conn, failed, hooks, now, seq))
    finals.update(passed)
    return finals


def _pass_stages(
    conn: apsw.Connection,
    moves: list[Move],
    finals: dict[str, JobState],
    hooks: Mapping[str, list[str]],
    now: float,
    seq: int,
) -> dict[str, JobState]:
    """Move on the jobs that stopped at a transfer stage (their app has slots that way) but
    have no item left to move that way; they and what follows are applied here."""
    waiting: dict[lifecycle.Stage, dict[str, str]] = defaultdict(dict)
    for m in moves:
        stage = lifecycle.STAGE_IN.get(finals[m.job_id])
        if stage is not None and stage.name in hooks.get(m.app, ()):
            waiting[stage][m.job_id] = m.app
    if not waiting:
        return {}
    onward = []
    for stage, jobs in waiting.items():
        held = {
            job_id
            for (job_id,) in conn.execute(
                "SELECT DISTINCT job_id FROM transfer_items WHERE direction = ? AND state != 'done' "
                "AND job_id IN (SELECT value FROM json_each(?))",
                (stage.direction, msgspec.json.encode(list(jobs)).decode()),
            )
        }
        onward += [Move(i, stage.waits_in, app, stage.next) for i, app in jobs.items() if i not in held]
    return apply_moves(conn, onward, hooks, now, seq) if onward else {}


def _rounds(moves: list[Move]) -> list[list[Move]]:
    """The moves split so that a job moves at most once per round, its moves in order.

    A round is written a statement per kind of move, not a statement per move; a job moving
    twice in one statement would leave its row and the order of its events undefined."""
    if len({m.job_id for m in moves}) == len(moves):
        return [moves]
    rounds: list[list[Move]] = []
    seen: dict[str, int] = {}
    for m in moves:
        k = seen[m.job_id] = seen.get(m.job_id, -1) + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(m)
    return rounds


# (states walked from the source, whether it starts with a RUNNING at started_at, columns set)
_Kind = tuple[tuple[JobState, ...], bool, tuple[str, ...]]


def _plan(
    moves: list[Move], hooks: Mapping[str, list[str]], now: float, finals: dict[str, JobState]
) -> dict[_Kind, list[Any]]:
    """Check one round of moves and sort them by kind, each kind's rows laid end to end as
    they are bound: first event id (given when written), job id, first step's time, time,
    reason, then the columns."""
    kinds: dict[_Kind, list[Any]] = defaultdict(list)
    # every report of a batch is alike: each (from, started, to, app) is checked and settled once
    paths: dict[tuple[JobState, bool, JobState, str], tuple[JobState, ...]] = {}
    for m in moves:
        job_id = m.job_id
        src = finals.get(job_id, m.src)
        started = m.started_at is not None
        path = paths.get((src, started, m.dst, m.app))
        if path is None:
            path = paths[src, started, m.dst, m.app] = _path(job_id, src, started, m.dst, hooks.get(m.app, ()))
        finals[job_id] = path[-1]
        ts = now if m.ts is None else m.ts
        columns = m.columns
        if m.reason:
            columns = {**columns, "state_reason": m.reason}
        kinds[path, started, tuple(columns)].extend(
            (0, job_id, m.started_at if started else ts, ts, m.reason, *columns.values())
        )
    return kinds


def _path(job_id: str, src: JobState, started: bool, dst: JobState, hooks: Iterable[str]) -> tuple[JobState, ...]:
    path: tuple[JobState, ...] = (src,)
    if started:
        if src not in _STARTABLE:
            check_transition(job_id, src, S.RUNNING)  # raises
        path = (src, S.RUNNING)
    check_transition(job_id, path[-1], dst)
    return (*path, dst, *lifecycle.settle(dst, list(hooks)))


def _write_group(
    conn: apsw.Connection,
    path: tuple[JobState, ...],
    started: bool,
    keys: tuple[str, ...],
    rows: list[Any],
    now: float,
    seq: int,
    last_event: int,
) -> int:
    """One kind of move for many jobs: a move row each (its events), then the job rows.
    Returns the last event id used.

    Only the jobs' own values are bound: the states they walk are the kind's path."""
    final = path[-1]
    steps = len(path) - 1
    path_id = _path_id(conn, path, 1 if started else 0)
    width = 5 + len(keys)
    count = len(rows) // width
    rows[0::width] = range(last_event + 1, last_event + 1 + count * steps, steps)
    starts = path[1:].count(S.RUNNING)
    names = ", ".join(("event", "id", "t0", "ts", "reason", *keys))
    sets = "".join(f", {c} = u.{c}" for c in keys)
    if final != S.RUNNING and "session_id" not in keys:
        sets += ", session_id = NULL"  # only a running job stays bound to the session that runs it
    for values, params in values_chunks(rows, width):
        head = f"WITH u({names}) AS (VALUES {values}) "
        conn.execute(
            f"{head}INSERT INTO moves (id, job_id, path, t0, ts, reason) "
            f"SELECT event, id, {path_id}, t0, ts, reason FROM u",
            params,
        )
        conn.execute(
            f"{head}UPDATE jobs SET state = '{final}', updated_at = ?{len(params) + 1}, seq = ?{len(params) + 2}, "
            f"version = version + 1, attempts = attempts + {starts}{sets} FROM u WHERE jobs.id = u.id",
            (*params, now, seq),
        )
    return last_event + count * steps


MAX_STEPS = 16  # of one move; event ids after a given one are searched from that many moves back


def _path_id(conn: apsw.Connection, path: tuple[JobState, ...], reason_step: int) -> int:
    """The id of a kind of move's steps, recorded the first time it is used."""
    if len(path) - 1 > MAX_STEPS:
        raise ValueError(f"a move of {len(path) - 1} steps is more than the store records ({MAX_STEPS})")
    key = f"{msgspec.json.encode([str(s) for s in path]).decode()}/{reason_step}"
    row = conn.execute("SELECT id FROM event_paths WHERE key = ?", (key,)).fetchone()
    if row is not None:
        return row[0]
    path_id = value(conn, "INSERT INTO event_paths (key) VALUES (?) RETURNING id", (key,))
    conn.executemany(
        "INSERT INTO event_steps VALUES (?, ?, ?, ?, ?)",
        [(path_id, i, a, b, int(i == reason_step)) for i, (a, b) in enumerate(itertools.pairwise(path))],
    )
    return path_id


def direct_children(conn: apsw.Connection, parent_ids: list[str]) -> list[tuple[str, str, JobState, str]]:
    """(parent, child, child state, child app) for the direct children of the parents."""
    out: list[tuple[str, str, JobState, str]] = []
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
        unfinished = value(
            conn,
            "SELECT COUNT(*) FROM job_parents jp JOIN jobs j ON j.id = jp.parent_id "
            "WHERE jp.child_id = ? AND j.state != 'JOB_FINISHED'",
            (child,),
        )
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
