"""Reports through the central database (``conn.reports``): the same rows a site's store hands
over, read from central's events, jobs and batch jobs as the connecting role may see them
(row-level security: a user sees the events of their own jobs, a site its own rows, the
administrator everything).  The series are made by the same functions as at a site.

Central keeps an event per step (a site's store keeps one per move), so a run is a RUNNING
event and the event that follows it for the same job of the same store.  Its files are at
the site: failures come without their output's tail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from balsamd.models import BATCH_COLUMNS, BatchJob
from balsamd.reports.records import BusyBin, CountBin, FailureEvent, ReportFilter, RunSpan, filter_problems
from balsamd.reports.series import busy_bins
from balsamd.sync.remote_batch import _from_row
from balsamd.validate import Refused, limit_problem

if TYPE_CHECKING:
    from balsamd.sync.remote import CentralConnection

_RUN_ENDS = "('RUN_DONE', 'RUN_ERROR', 'RUN_TIMEOUT', 'KILLED')"
_FAILURES = (
    "(e.to_state IN ('RUN_ERROR', 'RUN_TIMEOUT') OR "
    "(e.to_state = 'FAILED' AND COALESCE(e.from_state, '') NOT IN ('RUN_ERROR', 'RUN_TIMEOUT')))"
)


def _conditions(f: ReportFilter) -> tuple[str, list[Any], bool]:
    """The filter as SQL on events ``e`` and jobs ``j``; whether it needs the job row."""
    parts, params = [], []
    if f.site is not None:
        parts.append("e.site = %s")
        params.append(f.site)
    if f.app is not None:
        parts.append("j.app = %s")
        params.append(f.app)
    if f.batch_job_id is not None:
        parts.append("j.batch_job_id = %s")
        params.append(f.batch_job_id)
    for key, value in sorted(f.tags.items()):
        parts.append("j.tags ->> %s = %s")
        params += [key, value]
    needs_job = f.app is not None or f.batch_job_id is not None or bool(f.tags)
    return "".join(f" AND {p}" for p in parts), params, needs_job


def _check(f: ReportFilter, bin_sec: float | None = None) -> None:
    problems = filter_problems(f, bin_sec)
    if problems:
        raise Refused("report", problems)


class CentralRows:
    """The central database as a source of report rows (``balsamd.reports.build.ReportSource``)."""

    def __init__(self, conn: CentralConnection) -> None:
        self._conn = conn

    def finished_counts(self, f: ReportFilter, bin_sec: float) -> list[CountBin]:
        _check(f, bin_sec)
        where, params, needs_job = _conditions(f)
        join = " JOIN balsamd.jobs j ON j.id = e.job_id" if needs_job else ""
        rows = self._conn.execute(
            f"SELECT floor((e.ts - %s) / %s)::bigint AS b, count(*) FROM balsamd.events e{join} "
            f"WHERE e.to_state = 'JOB_FINISHED' AND e.ts >= %s AND e.ts < %s{where} GROUP BY b ORDER BY b",
            (f.since, bin_sec, f.since, f.until, *params),
        )
        return [CountBin(int(b), int(n)) for b, n in rows]

    def run_spans(self, f: ReportFilter) -> list[RunSpan]:
        _check(f)
        where, params, _ = _conditions(f)
        site_only = ("AND e.site = %s", [f.site]) if f.site is not None else ("", [])
        rows = self._conn.execute(
            "WITH steps AS ("
            " SELECT e.site, e.job_id, e.ts, e.to_state, lead(e.ts) OVER w AS end_ts, lead(e.to_state) OVER w AS ended"
            " FROM balsamd.events e WHERE (e.to_state = 'RUNNING' OR e.from_state = 'RUNNING') "
            f" {site_only[0]} WINDOW w AS (PARTITION BY e.site, e.store_id, e.job_id ORDER BY e.id))"
            " SELECT e.job_id, j.app, e.ts, e.end_ts, e.ended, j.num_nodes, j.node_packing_count, j.batch_job_id"
            " FROM steps e JOIN balsamd.jobs j ON j.id = e.job_id"
            f" WHERE e.to_state = 'RUNNING' AND e.ts < %s AND (e.end_ts IS NULL OR e.end_ts >= %s){where}"
            " ORDER BY e.ts, e.job_id",
            (*site_only[1], f.until, f.since, *params),
        )
        return [
            RunSpan(
                job_id=job_id, app=app, start=start, end=end if ended in _RUN_ENDS else None,
                end_state=ended if ended in _RUN_ENDS else None, num_nodes=nodes, node_packing_count=packing,
                batch_job_id=batch,
            )
            for job_id, app, start, end, ended, nodes, packing, batch in rows
        ]  # fmt: skip

    def busy_time(self, f: ReportFilter, bin_sec: float) -> list[BusyBin]:
        _check(f, bin_sec)
        return busy_bins(self.run_spans(f), f.since, f.until, bin_sec)

    def failure_events(self, f: ReportFilter, limit: int = 10_000) -> list[FailureEvent]:
        _check(f)
        problem = limit_problem(limit)
        if problem:
            raise Refused("failure_events", [problem])
        where, params, _ = _conditions(f)
        rows = self._conn.execute(
            "SELECT e.job_id, j.app, e.to_state, e.ts, e.reason, j.workdir, e.site FROM balsamd.events e "
            f"JOIN balsamd.jobs j ON j.id = e.job_id WHERE {_FAILURES} AND e.ts >= %s AND e.ts < %s{where} "
            "ORDER BY e.ts DESC, e.id DESC LIMIT %s",
            (f.since, f.until, *params, limit),
        )
        return [
            FailureEvent(job_id=j, app=a, state=s, ts=ts, reason=r, workdir=w, site=site)
            for j, a, s, ts, r, w, site in rows
        ]

    def report_batch_jobs(self, site: str | None) -> list[tuple[BatchJob, str]]:
        where, params = (" WHERE site = %s", [site]) if site is not None else ("", [])
        rows = self._conn.execute(f"SELECT {', '.join(BATCH_COLUMNS)}, site FROM balsamd.batch_jobs{where}", params)
        return [_from_row(r) for r in rows]

    def output_tail(self, event: FailureEvent, lines: int) -> str:
        return ""  # a job's files are at its site
