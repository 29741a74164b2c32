"""What a live view of the campaign reads from the site store (``balsamd top``).

Every read here follows an index and is bounded by what changed or by what is happening now
(runs in progress, recent failures), never by the number of jobs: a view that refreshes every
second must not cost a store of a million jobs a scan per frame.  Jobs by state are counted
whole once, then kept up to date from the moves written since (``Activity``).
"""

from __future__ import annotations

import math
from typing import Any

import apsw
import msgspec

from balsamd.states import JobState
from balsamd.store.base import StoreBase
from balsamd.store.db import LIMIT_PARAM
from balsamd.store.queries import JobFilter, where_clause
from balsamd.store.schema import FAILED_SQL
from balsamd.store.sql import all_rows, value
from balsamd.validate import Refused, limit_problem

S = JobState
_FINISHED_PATHS = f"(SELECT path FROM event_steps WHERE to_state = '{S.JOB_FINISHED}')"


class Activity(msgspec.Struct, kw_only=True):
    """What the watched jobs did (``Store.activity``).

    ``whole``: ``counts`` are jobs by state; else the net change of each state over the moves
    read (a job created counts only where it arrived).  ``finished``: runs that reached
    JOB_FINISHED, by minute (unix time // 60).  ``last_move``: the newest move id read, the
    next call's ``after_move``.  ``removals``: marks the last removal of jobs, whose moves go
    with them: when it changed, counts must be read whole again."""

    whole: bool
    counts: dict[str, int]
    finished: dict[int, int]
    last_move: int
    removals: int


class Failure(msgspec.Struct, kw_only=True):
    """A job whose run or whole life failed, with why and when."""

    job_id: str
    app: str
    state: JobState
    reason: str
    at: float


class RunningLoad(msgspec.Struct, kw_only=True):
    """Jobs running in one batch job and the nodes they occupy (num_nodes / node_packing_count)."""

    jobs: int
    nodes: float


def watched(f: JobFilter | None, operation: str) -> tuple[str, list[Any]]:
    """The filter as conditions to AND onto a query of ``jobs`` (empty for none); a live view
    narrows by app and tags only (the others are not indexed or change as jobs move)."""
    f = f or JobFilter()
    other = [
        name
        for name, given in (
            ("ids", f.ids is not None), ("states", bool(f.states)), ("workdir_contains", f.workdir_contains),
            ("parent_id", f.parent_id is not None), ("limit", f.limit is not None),
        )
        if given
    ]  # fmt: skip
    if other:
        raise Refused(operation, [f"a live view narrows by app and tags only, not {', '.join(other)}; drop them"])
    where, params = where_clause(f)
    return where.replace(" WHERE ", " AND ", 1), params


class WatchStoreMixin(StoreBase):
    def activity(self, f: JobFilter | None = None, after_move: int = 0, since: float = 0.0) -> Activity:
        conds, params = watched(f, "activity")
        problems = []
        if type(after_move) is not int or after_move < 0:
            problems.append(f"after_move must be a move id, 0 or more (got {after_move!r})")
        if not isinstance(since, int | float) or not math.isfinite(since):
            problems.append(f"since must be a time in seconds since the epoch (got {since!r})")
        if problems:
            raise Refused("activity", problems)
        of_job = f" AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = m.job_id{conds})" if conds else ""
        first = int(since // 60)
        with self.db.read() as conn:
            last_move = value(conn, "SELECT value FROM counters WHERE name = 'events'")
            removals = value(conn, "SELECT COALESCE(MAX(seq), 0) FROM deleted_jobs")
            if after_move == 0:
                counts = dict(all_rows(conn, f"SELECT state, COUNT(*) FROM jobs WHERE 1{conds} GROUP BY state", params))
                finished = dict(
                    all_rows(
                        conn,
                        "SELECT CAST(m.ts / 60 AS INTEGER), COUNT(*) FROM moves m INDEXED BY moves_path_ts "
                        f"WHERE m.ts >= ? AND m.path IN {_FINISHED_PATHS}{of_job} GROUP BY 1",
                        (first * 60, *params),
                    )
                )
                return Activity(whole=True, counts=counts, finished=finished, last_move=last_move, removals=removals)
            rows = all_rows(
                conn,
                # by id alone: with a filter SQLite would rather walk every matching job's moves
                "SELECT m.path, CAST(m.ts / 60 AS INTEGER), COUNT(*) FROM moves m NOT INDEXED "
                f"WHERE m.id > ?{of_job} GROUP BY 1, 2",
                (after_move, *params),
            )
            ends = _path_ends(conn, {r[0] for r in rows})
        change: dict[str, int] = {}
        done: dict[int, int] = {}
        for path, minute, n in rows:
            src, dst = ends[path]
            if src != S.CREATED:  # a new job's first move: it arrives, it leaves no state
                change[src] = change.get(src, 0) - n
            change[dst] = change.get(dst, 0) + n
            if dst == S.JOB_FINISHED and minute >= first:
                done[minute] = done.get(minute, 0) + n
        return Activity(
            whole=False, counts={k: v for k, v in change.items() if v}, finished=done,
            last_move=last_move, removals=removals,
        )  # fmt: skip

    def recent_failures(self, f: JobFilter | None = None, limit: int = 10) -> list[Failure]:
        conds, params = watched(f, "recent_failures")
        problem = limit_problem(limit)
        if problem:
            raise Refused("recent_failures", [problem])
        with self.db.read() as conn:
            rows = all_rows(
                conn,
                "SELECT id, app, state, state_reason, updated_at FROM jobs INDEXED BY jobs_failed "
                f"WHERE state IN {FAILED_SQL}{conds} ORDER BY updated_at DESC, id DESC {LIMIT_PARAM}",
                (*params, limit),
            )
        return [Failure(job_id=i, app=a, state=S(s), reason=r, at=t) for i, a, s, r, t in rows]

    def running_load(self) -> dict[str, RunningLoad]:
        with self.db.read() as conn:
            rows = all_rows(
                conn,
                "SELECT COALESCE(batch_job_id, ''), COUNT(*), SUM(num_nodes * 1.0 / node_packing_count) "
                f"FROM jobs WHERE state = '{S.RUNNING}' GROUP BY 1",
            )
        return {batch: RunningLoad(jobs=n, nodes=nodes) for batch, n, nodes in rows}


def _path_ends(conn: apsw.Connection, paths: set[int]) -> dict[int, tuple[JobState, JobState]]:
    """Each kind of move's first source state and last target state."""
    if not paths:
        return {}
    rows = all_rows(
        conn,
        "SELECT path, from_state, to_state FROM event_steps "
        "WHERE path IN (SELECT value FROM json_each(?)) ORDER BY path, step",
        (msgspec.json.encode(sorted(paths)).decode(),),
    )
    ends: dict[int, tuple[JobState, JobState]] = {}
    for path, src, dst in rows:
        # stores of schema 5 and before began a job's history at None -> CREATED
        ends[path] = (ends[path][0] if path in ends else S(src or S.CREATED), S(dst))
    return ends
