"""What reports read from the site store: finished jobs per bin, runs with their jobs'
footprint, and failures, over a time window (``balsamd.reports`` turns them into series).

Events are stored a row per move (``moves``) whose steps are its kind's (``event_steps``);
these queries pick the kinds of move that hold the step they want from that small table, then
read only those moves in the window through the index on (path, ts).  Within a move, a
RUNNING step is always its first (at ``t0``) and every later step happens at ``ts``, so a
finish, a failure or the end of a run is at ``ts``.
"""

from __future__ import annotations

from typing import Any

import apsw
import msgspec

from balsamd.reports.records import BusyBin, CountBin, FailureEvent, ReportFilter, RunSpan, filter_problems
from balsamd.reports.series import bin_count, busy_bins
from balsamd.states import JobState
from balsamd.store.base import StoreBase
from balsamd.store.db import LIMIT_PARAM
from balsamd.store.queries import tag_conditions
from balsamd.validate import Refused, limit_problem

S = JobState
_RUN_ENDS = frozenset({S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT, S.KILLED})


class PathKinds(msgspec.Struct):
    """The kinds of move (event_paths ids) that hold each step reports look for."""

    finish: list[int]
    start: list[int]
    end: dict[int, str]  # path -> the state its run ended in
    failure: dict[int, str]  # path -> the failure state it records


def path_kinds(steps: list[tuple[int, int, str | None, str]]) -> PathKinds:
    """Classify kinds of move from their (path, step, from_state, to_state) rows."""
    kinds = PathKinds([], [], {}, {})
    for path, _step, src, dst in sorted(steps):
        if dst == S.JOB_FINISHED:
            kinds.finish.append(path)
        if dst == S.RUNNING:
            kinds.start.append(path)
        if src == S.RUNNING and dst in _RUN_ENDS:
            kinds.end[path] = dst
        if dst in (S.RUN_ERROR, S.RUN_TIMEOUT) or (dst == S.FAILED and src not in (S.RUN_ERROR, S.RUN_TIMEOUT)):
            kinds.failure.setdefault(path, dst)
    return kinds


def _ids(paths: Any) -> str:
    """Path ids inlined (integers the store numbered itself), so the planner uses the index."""
    return "(" + ", ".join(str(int(p)) for p in paths) + ")" if paths else "(NULL)"


def job_clause(f: ReportFilter, id_column: str = "m.job_id") -> tuple[str, list[Any]]:
    """The filter's conditions on the job ``j`` (whose id is ``id_column``)."""
    parts, params = [], []
    if f.app is not None:
        parts.append("j.app = ?")
        params.append(f.app)
    if f.batch_job_id is not None:
        parts.append("j.batch_job_id = ?")
        params.append(f.batch_job_id)
    tag_sql, tag_params = tag_conditions(f.tags, id_column)
    parts.extend(tag_sql)
    params.extend(tag_params)
    return "".join(f" AND {p}" for p in parts), params


def pair_runs(rows: list[tuple[Any, ...]], kinds: PathKinds) -> tuple[list[RunSpan], dict[str, RunSpan]]:
    """Runs from moves in id order (``job_id, path, t0, ts, app, num_nodes, packing, batch``):
    the runs paired, and ends whose start came before the moves read (by job, start unknown)."""
    starts = set(kinds.start)
    runs: list[RunSpan] = []
    open_runs: dict[str, RunSpan] = {}
    orphans: dict[str, RunSpan] = {}
    for job_id, path, t0, ts, app, nodes, packing, batch in rows:
        if path in starts:
            span = RunSpan(
                job_id=job_id,
                app=app,
                start=t0,
                end=None,
                end_state=None,
                num_nodes=nodes,
                node_packing_count=packing,
                batch_job_id=batch,
            )
            if path in kinds.end:
                span.end, span.end_state = ts, kinds.end[path]
                runs.append(span)
            else:
                open_runs[job_id] = span
        elif path in kinds.end:
            found = open_runs.pop(job_id, None)
            if found is None:
                orphans[job_id] = RunSpan(
                    job_id=job_id,
                    app=app,
                    start=float("nan"),
                    end=ts,
                    end_state=kinds.end[path],
                    num_nodes=nodes,
                    node_packing_count=packing,
                    batch_job_id=batch,
                )
                continue
            found.end, found.end_state = ts, kinds.end[path]
            runs.append(found)
    runs.extend(open_runs.values())
    return runs, orphans


class ReportsStoreMixin(StoreBase):
    """The store's report queries (``Store.finished_counts``, ``run_spans``, ``busy_time``,
    ``failure_events``)."""

    def _kinds(self, conn: apsw.Connection) -> PathKinds:
        return path_kinds([tuple(r) for r in conn.execute("SELECT path, step, from_state, to_state FROM event_steps")])

    def finished_counts(self, f: ReportFilter, bin_sec: float) -> list[CountBin]:
        _check(f, bin_sec)
        clause, params = job_clause(f)
        join = " JOIN jobs j ON j.id = m.job_id" if f.app is not None or f.batch_job_id is not None else ""
        bins = bin_count(f.since, f.until, bin_sec)
        with self.db.read() as conn:
            kinds = self._kinds(conn)
            # a count of an index range per bin: SQLite steps through the range without
            # evaluating, grouping or sorting anything per row (five times faster than GROUP BY)
            rows = conn.execute(
                "WITH RECURSIVE bins(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM bins WHERE i + 1 < ?4) "
                f"SELECT i, n FROM (SELECT i, (SELECT COUNT(*) FROM moves m{join} WHERE m.path IN {_ids(kinds.finish)} "
                f"AND m.ts >= ?1 + i * ?2 AND m.ts < MIN(?1 + (i + 1) * ?2, ?3){_numbered(clause, 5)}) AS n "
                "FROM bins) WHERE n > 0",
                (f.since, bin_sec, f.until, bins, *params),
            )
            return [CountBin(int(i), int(n)) for i, n in rows]

    def run_spans(self, f: ReportFilter) -> list[RunSpan]:
        _check(f)
        with self.db.read() as conn:
            kinds = self._kinds(conn)
            runs = self._runs(conn, f, kinds, [*kinds.start, *kinds.end])
        runs.sort(key=lambda r: (r.start, r.job_id))
        return runs

    def busy_time(self, f: ReportFilter, bin_sec: float) -> list[BusyBin]:
        _check(f, bin_sec)
        n = bin_count(f.since, f.until, bin_sec)
        nodes, slots = [0.0] * n, [0.0] * n
        clause, params = job_clause(f)
        with self.db.read() as conn:
            kinds = self._kinds(conn)
            whole = [p for p in kinds.start if p in kinds.end]  # a run in one move: its start and end
            # most runs are one move: summed in SQL per (first bin, last bin) of the run, which
            # spreads over the bins between as a launcher's run would
            rows = conn.execute(
                "WITH r AS (SELECT MAX(m.t0, ?1) AS a, MIN(m.ts, ?3) AS b, "
                "CAST(j.num_nodes AS REAL) / j.node_packing_count AS w FROM moves m JOIN jobs j ON j.id = m.job_id "
                f"WHERE m.path IN {_ids(whole)} AND m.ts >= ?1 AND m.t0 < ?3{_numbered(clause, 4)}), "
                "k AS (SELECT a, b, w, CAST((a - ?1) / ?2 AS INTEGER) AS b0, CAST((b - ?1) / ?2 AS INTEGER) AS b1 "
                "FROM r WHERE b > a) "
                "SELECT b0, b1, SUM(w * (b - a)), SUM(b - a), SUM(w * (?1 + (b0 + 1) * ?2 - a)), "
                "SUM(?1 + (b0 + 1) * ?2 - a), SUM(w * (b - (?1 + b1 * ?2))), SUM(b - (?1 + b1 * ?2)), SUM(w), COUNT(*) "
                "FROM k GROUP BY b0, b1",
                (f.since, bin_sec, f.until, *params),
            )
            for b0, b1, w_len, length, w_first, first, w_last, last, w, count in rows:
                _spread(nodes, int(b0), int(b1), w_len, w_first, w_last, w * bin_sec)
                _spread(slots, int(b0), int(b1), length, first, last, count * bin_sec)
            split = [p for p in dict.fromkeys([*kinds.start, *kinds.end]) if p not in whole]
            runs = self._runs(conn, f, kinds, split)
        for extra in busy_bins(runs, f.since, f.until, bin_sec):
            nodes[extra.index] += extra.node_sec
            slots[extra.index] += extra.run_sec
        return [BusyBin(i, a, b) for i, (a, b) in enumerate(zip(nodes, slots, strict=True)) if a or b]

    def _runs(self, conn: apsw.Connection, f: ReportFilter, kinds: PathKinds, paths: list[int]) -> list[RunSpan]:
        """The runs overlapping the window recorded in moves of these kinds, paired, with those
        that began before it (ended in it, or running still)."""
        clause, params = job_clause(f)
        cols = "m.job_id, m.path, m.t0, m.ts, j.app, j.num_nodes, j.node_packing_count, j.batch_job_id"
        rows = [
            tuple(r)
            for r in conn.execute(
                f"SELECT {cols} FROM moves m JOIN jobs j ON j.id = m.job_id "
                f"WHERE m.path IN {_ids(paths)} AND m.ts >= ? AND m.t0 < ?{clause} "
                "ORDER BY m.id",
                (f.since, f.until, *params),
            )
        ]
        runs, orphans = pair_runs(rows, kinds)
        seen = {r.job_id for r in runs} | set(orphans)
        jclause, jparams = job_clause(f, "j.id")
        running = conn.execute(
            "SELECT j.id, j.app, j.num_nodes, j.node_packing_count, j.batch_job_id FROM jobs j "
            f"WHERE j.state = 'RUNNING'{jclause}",
            jparams,
        )
        for job_id, app, nodes, packing, batch in [tuple(r) for r in running]:
            if job_id not in seen:
                orphans[job_id] = RunSpan(
                    job_id=job_id, app=app, start=float("nan"), end=None, end_state=None, num_nodes=nodes,
                    node_packing_count=packing, batch_job_id=batch,
                )  # fmt: skip
        if orphans:
            starts = dict(
                conn.execute(
                    f"SELECT job_id, MAX(t0) FROM moves WHERE path IN {_ids(kinds.start)} AND t0 < ? "
                    "AND job_id IN (SELECT value FROM json_each(?)) GROUP BY job_id",
                    (f.since, msgspec.json.encode(list(orphans)).decode()),
                )
            )
            for job_id, span in orphans.items():
                if job_id in starts:
                    span.start = starts[job_id]
                    runs.append(span)
        return runs

    def failure_events(self, f: ReportFilter, limit: int = 10_000) -> list[FailureEvent]:
        _check(f)
        problem = limit_problem(limit)
        if problem:
            raise Refused("failure_events", [problem])
        clause, params = job_clause(f)
        with self.db.read() as conn:
            kinds = self._kinds(conn)
            rows = conn.execute(
                "SELECT m.job_id, j.app, m.path, m.ts, m.reason, j.workdir FROM moves m JOIN jobs j ON j.id = m.job_id "
                f"WHERE m.path IN {_ids(kinds.failure)} AND m.ts >= ? AND m.ts < ?{clause} "
                f"ORDER BY m.ts DESC, m.id DESC {LIMIT_PARAM}",
                (f.since, f.until, *params, limit),
            )
            return [
                FailureEvent(job_id=job_id, app=app, state=kinds.failure[path], ts=ts, reason=reason, workdir=workdir)
                for job_id, app, path, ts, reason, workdir in rows
            ]


def _spread(area: list[float], b0: int, b1: int, within: float, first: float, last: float, full: float) -> None:
    """Add runs that went from bin b0 to bin b1: ``within`` when that is one bin, else ``first``
    in b0, ``last`` in b1 and ``full`` in each bin between (bins past the window are left out)."""
    if b0 == b1:
        if b0 < len(area):
            area[b0] += within
        return
    area[b0] += first
    if b1 < len(area):
        area[b1] += last
    for i in range(b0 + 1, min(b1, len(area))):
        area[i] += full


def _numbered(clause: str, first: int) -> str:
    """``clause``'s ``?`` as ``?N`` from ``first`` on (a statement may not mix the two)."""
    parts = clause.split("?")
    return "".join(p + (f"?{first + i}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def _check(f: ReportFilter, bin_sec: float | None = None) -> None:
    problems = filter_problems(f, bin_sec)
    if f.site is not None:
        problems.append("site: a site's store holds only its own jobs; leave it out (it is for the central database)")
    if problems:
        raise Refused("report", problems)
