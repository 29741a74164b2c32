"""SQL built from filter and claim Structs: pure functions returning (sql, params)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from balsamd.models import ClaimLimits, ClaimOrder, Job
from balsamd.states import JobState
from balsamd.store.db import LIMIT_PARAM, decode_jobs
from balsamd.store.schema import RUNNABLE_SQL
from balsamd.validate import limit_problem


class JobFilter(msgspec.Struct, kw_only=True):
    """Which jobs a query means; every field narrows, none set means all jobs."""

    ids: list[str] | None = None
    states: list[JobState] = []
    tags: dict[str, str] = {}
    app: str | None = None
    workdir_contains: str | None = None
    parent_id: str | None = None
    limit: int | None = None


class EventFilter(msgspec.Struct, kw_only=True):
    """Which events a query means, beyond a job and a cursor; every field narrows."""

    states: list[JobState] = []  # the state the job went to
    from_states: list[JobState] = []  # the state it left
    since: float | None = None  # at or after this Unix time
    until: float | None = None  # at or before
    tags: dict[str, str] = {}  # of jobs with these tags
    app: str | None = None  # of jobs of this app
    latest: int | None = None  # only the last so many (still oldest first)


def event_filter_problems(f: EventFilter, limit: int | None) -> list[str]:
    """What makes ``f`` (with a ``limit``) mean no listing; empty when it is fine."""
    problems = []
    for name in ("since", "until"):
        moment = getattr(f, name)
        if moment is not None and not math.isfinite(moment):
            problems.append(f"{name} must be a time (got {moment!r})")
    if f.since is not None and f.until is not None and f.since > f.until:
        problems.append("since is after until: nothing lies between; swap them")
    if f.latest is not None:
        problem = limit_problem(f.latest)
        if problem:
            problems.append(problem.replace("limit", "latest", 1))
        if limit is not None:
            problems.append("give latest (the last N) or limit (the first N), not both")
    return problems


def event_where(f: EventFilter) -> tuple[str, list[Any]]:
    """The conditions on the ``events`` view ``f`` adds, each starting with AND."""
    sql = ""
    params: list[Any] = []
    kinds: list[str] = []  # the kinds of move (paths) that hold such a step
    for column, states in (("to_state", f.states), ("from_state", f.from_states)):
        if states:
            marks = ", ".join("?" * len(states))
            sql += f" AND {column} IN ({marks})"
            kinds.append(f"path IN (SELECT path FROM event_steps WHERE {column} IN ({marks}))")
            params.extend(str(s) for s in states)
    if kinds:
        # the moves of those kinds, found through moves_path_ts (a move's last step is at its ts,
        # so none of its steps is after since unless its ts is), rather than every move read
        since = "" if f.since is None else " AND ts >= ?"
        sql += f" AND move IN (SELECT id FROM moves WHERE {' AND '.join(kinds)}{since})"
        params.extend(str(s) for s in f.states)
        params.extend(str(s) for s in f.from_states)
        if f.since is not None:
            params.append(f.since)
    if f.since is not None:
        sql += " AND ts >= ?"
        params.append(f.since)
    if f.until is not None:
        sql += " AND ts <= ?"
        params.append(f.until)
    tag_sql, tag_params = tag_conditions(f.tags, "job_id")
    sql += "".join(f" AND {c}" for c in tag_sql)
    params.extend(tag_params)
    if f.app is not None:
        sql += " AND job_id IN (SELECT id FROM jobs WHERE app = ?)"
        params.append(f.app)
    return sql, params


def tag_conditions(tags: dict[str, str], id_column: str = "id") -> tuple[list[str], list[Any]]:
    """A condition per tag, on the job whose id is ``id_column`` (through the tags' index), and
    their parameters: how every query of the store filters by tags."""
    items = sorted(tags.items())
    condition = f"{id_column} IN (SELECT job_id FROM job_tags WHERE key = ? AND value = ?)"
    return [condition] * len(items), [x for kv in items for x in kv]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def where_clause(f: JobFilter) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    if f.ids is not None:
        parts.append("id IN (SELECT value FROM json_each(?))")
        params.append(msgspec.json.encode(f.ids).decode())
    if f.states:
        parts.append(f"state IN ({', '.join('?' * len(f.states))})")
        params.extend(str(s) for s in f.states)
    tag_sql, tag_params = tag_conditions(f.tags)
    parts.extend(tag_sql)
    params.extend(tag_params)
    if f.app is not None:
        parts.append("app = ?")
        params.append(f.app)
    if f.workdir_contains:
        parts.append("workdir LIKE ? ESCAPE '\\'")
        params.append(f"%{_like_escape(f.workdir_contains)}%")
    if f.parent_id is not None:
        parts.append("id IN (SELECT child_id FROM job_parents WHERE parent_id = ?)")
        params.append(f.parent_id)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


class Order(NamedTuple):
    sql: str  # ORDER BY of the claim's candidates
    key: Callable[[Job], tuple[Any, ...]]  # the same order in Python, for the claimed jobs


ORDERS: dict[ClaimOrder, Order] = {
    # the index jobs_runnable holds the candidates in this order already
    ClaimOrder.SMALL_FIRST: Order("num_nodes, id", lambda j: (j.num_nodes, j.id)),
    ClaimOrder.LONG_LARGE_FIRST: Order(
        "wall_time_min DESC, num_nodes DESC, id", lambda j: (-j.wall_time_min, -j.num_nodes, j.id)
    ),
}


def claimed_jobs(document: str, limits: ClaimLimits) -> list[Job]:
    """The jobs of a claim's document (``Store.claim``), in the order its limits ask for."""
    jobs = decode_jobs(document)
    jobs.sort(key=ORDERS[limits.order].key)
    return jobs


def claim_statement(limits: ClaimLimits) -> tuple[str, list[Any]]:
    """One SELECT of the rowids (as one JSON array) of the runnable jobs a claim binds: the
    statements that bind and read them in the same transaction then find each row at once,
    where an id would be looked up in the primary key's index first.

    Candidates are unbound runnable jobs within the per-job limits, in the requested order,
    at most max_jobs of them; when max_aggregate_nodes is set the longest prefix whose summed
    footprint (num_nodes / node_packing_count) fits is taken.
    """
    order = ORDERS[limits.order].sql
    conds = [f"session_id IS NULL AND state IN {RUNNABLE_SQL}"]
    params: list[Any] = []
    if limits.max_nodes_per_job is not None:
        conds.append("num_nodes <= ?")
        params.append(limits.max_nodes_per_job)
    if limits.max_wall_time_min is not None:
        conds.append("wall_time_min <= ?")
        params.append(limits.max_wall_time_min)
    if limits.serial_only:
        conds.append("num_nodes = 1 AND ranks_per_node = 1")
    if limits.apps:
        conds.append(f"app IN ({', '.join('?' * len(limits.apps))})")
        params.extend(limits.apps)
    tag_sql, tag_params = tag_conditions(limits.filter_tags)
    conds.extend(tag_sql)
    params.extend(tag_params)
    candidates = (
        # Without statistics SQLite prefers jobs_state and sorts every runnable job per claim;
        # the partial index holds exactly the candidates, already in small-first order.
        "SELECT rowid AS job_rowid, id, num_nodes, node_packing_count, wall_time_min "
        f"FROM jobs INDEXED BY jobs_runnable WHERE {' AND '.join(conds)} ORDER BY {order} {LIMIT_PARAM}"
    )
    params.append(limits.max_jobs)
    if limits.max_aggregate_nodes is None:
        chosen = f"SELECT job_rowid FROM ({candidates})"
    else:
        chosen = (
            "SELECT job_rowid FROM (SELECT job_rowid, SUM(num_nodes * 1.0 / node_packing_count) "
            f"OVER (ORDER BY {order} ROWS UNBOUNDED PRECEDING) AS used FROM ({candidates})) "
            "WHERE used <= ? + 1e-9"
        )
        params.append(limits.max_aggregate_nodes)
    sql = f"SELECT json_group_array(job_rowid) FROM ({chosen})"
    return sql, params
