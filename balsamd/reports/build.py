"""``site.reports`` and ``conn.reports``: each report from a source of rows (a site's store, or
the central database), through the pure functions of ``series``."""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from balsamd.models import BatchJob, BatchJobState
from balsamd.reports import series
from balsamd.reports.records import (
    BusyBin,
    CountBin,
    FailureEvent,
    Failures,
    Queue,
    ReportFilter,
    RunSpan,
    Runtimes,
    Throughput,
    Utilization,
)
from balsamd.reports.window import DEFAULT_SPAN, WindowError, align, choose_bin, parse_duration, parse_time

TAIL_BYTES = 8192
FAILURE_LIMIT = 10_000  # failures read per report: the most recent
RECENT = 20  # failures listed one by one

# a moment as the API takes it: epoch seconds, a datetime, or text ("2h", "2026-12-07T09:00")
Moment = float | int | datetime.datetime | str | None


class ReportSource(Protocol):
    """Where reports read from: the store's report operations, and the batch jobs."""

    def finished_counts(self, f: ReportFilter, bin_sec: float) -> list[CountBin]: ...

    def run_spans(self, f: ReportFilter) -> list[RunSpan]: ...

    def busy_time(self, f: ReportFilter, bin_sec: float) -> list[BusyBin]: ...

    def failure_events(self, f: ReportFilter, limit: int = ...) -> list[FailureEvent]: ...

    def report_batch_jobs(self, site: str | None) -> list[tuple[BatchJob, str]]:
        """Every batch job with the name of its site."""
        ...

    def output_tail(self, event: FailureEvent, lines: int) -> str:
        """The end of a failed job's output, or "" when its files are not at hand."""
        ...


def tail_of(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a file (reading at most its last few kB), or ""."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:]) if lines > 0 else ""


def _moment(value: Moment, now: float, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, str):
        return parse_time(value, now, field)
    return float(value)


class Reports:
    """Campaign reports over a window (default: the last day) and a filter (app, tags, batch
    job, site); each returns a Struct of series (``balsamd.reports.records``)."""

    def __init__(self, source: ReportSource, clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._clock = clock

    def _filter(
        self,
        since: Moment,
        until: Moment,
        app: str | None,
        tags: dict[str, str] | None,
        batch_job: str | None,
        site: str | None,
    ) -> ReportFilter:
        now = self._clock()
        end = _moment(until, now, "until")
        end = now if end is None else end
        start = _moment(since, now, "since")
        start = end - parse_duration(DEFAULT_SPAN, "since") if start is None else start
        return ReportFilter(since=start, until=end, app=app, tags=dict(tags or {}), batch_job_id=batch_job, site=site)

    def _bins(self, f: ReportFilter, bin: float | str | None) -> tuple[ReportFilter, float]:
        width = (
            choose_bin(f.until - f.since)
            if bin is None
            else (parse_duration(bin, "bin") if isinstance(bin, str) else float(bin))
        )
        if not math.isfinite(width) or width <= 0:
            raise WindowError(
                "bin", f"{bin!r:.40} is not a width of bin; give a positive number of seconds or e.g. '1h'"
            )
        return msgspec.structs.replace(f, since=align(f.since, width)), width

    def throughput(
        self,
        since: Moment = None,
        until: Moment = None,
        *,
        bin: float | str | None = None,
        app: str | None = None,
        tags: dict[str, str] | None = None,
        batch_job: str | None = None,
        site: str | None = None,
    ) -> Throughput:
        """Jobs finished per bin, and the rate (average, and of the last full bin) per hour."""
        f, width = self._bins(self._filter(since, until, app, tags, batch_job, site), bin)
        n = series.bin_count(f.since, f.until, width)
        counts = series.dense_counts(self._source.finished_counts(f, width), n)
        avg, now_rate = series.rates(counts, f.since, f.until, width, self._clock())
        return Throughput(
            since=f.since,
            until=f.until,
            bin_sec=width,
            bin_starts=series.bin_starts(f.since, f.until, width),
            finished=counts,
            total=sum(counts),
            rate_avg_per_h=avg,
            rate_now_per_h=now_rate,
        )

    def utilization(
        self,
        since: Moment = None,
        until: Moment = None,
        *,
        bin: float | str | None = None,
        app: str | None = None,
        tags: dict[str, str] | None = None,
        batch_job: str | None = None,
        site: str | None = None,
    ) -> Utilization:
        """Nodes and runs busy per bin (time averages) against the nodes batch jobs held."""
        f, width = self._bins(self._filter(since, until, app, tags, batch_job, site), bin)
        n = series.bin_count(f.since, f.until, width)
        node_sec, run_sec = series.dense_busy(self._source.busy_time(f, width), n)
        now = self._clock()
        batches = [b for b, _ in self._source.report_batch_jobs(site) if batch_job is None or b.id == batch_job]
        busy = series.per_second(node_sec, f.since, f.until, width)
        slots = series.per_second(run_sec, f.since, f.until, width)
        held = series.box_average(series.allocation_boxes(batches, now), f.since, f.until, width)
        mean_busy = series.time_mean(busy, f.since, f.until, width)
        mean_held = series.time_mean(held, f.since, f.until, width)
        return Utilization(
            since=f.since,
            until=f.until,
            bin_sec=width,
            bin_starts=series.bin_starts(f.since, f.until, width),
            busy_nodes=busy,
            busy_slots=slots,
            allocated_nodes=held,
            mean_busy_nodes=mean_busy,
            mean_allocated_nodes=mean_held,
            utilization=mean_busy / mean_held if mean_held > 0 else None,
        )

    def failures(
        self,
        since: Moment = None,
        until: Moment = None,
        *,
        app: str | None = None,
        tags: dict[str, str] | None = None,
        batch_job: str | None = None,
        site: str | None = None,
        tail_lines: int = 5,
    ) -> Failures:
        """Failures grouped by app and reason (the most frequent first), each group with the
        end of its most recent job's output where the site's files are at hand."""
        f = self._filter(since, until, app, tags, batch_job, site)
        events = self._source.failure_events(f, FAILURE_LIMIT)
        groups = series.group_failures(events)
        latest = {e.job_id: e for e in reversed(events)}
        for group in groups:
            group.tail = self._source.output_tail(latest[group.job_ids[0]], tail_lines)
        return Failures(since=f.since, until=f.until, total=len(events), groups=groups, recent=events[:RECENT])

    def runtimes(
        self,
        since: Moment = None,
        until: Moment = None,
        *,
        app: str | None = None,
        tags: dict[str, str] | None = None,
        batch_job: str | None = None,
        site: str | None = None,
    ) -> Runtimes:
        """Per app, the run times of runs that ended in the window: count, min, median, p90,
        max and a histogram."""
        f = self._filter(since, until, app, tags, batch_job, site)
        edges, stats = series.runtime_stats(self._source.run_spans(f), f.since, f.until)
        return Runtimes(since=f.since, until=f.until, edges=edges, apps=stats)

    def queue(self, since: Moment = None, until: Moment = None, *, site: str | None = None) -> Queue:
        """Batch jobs alive in the window: each one's wait in the scheduler's queue and its run."""
        f = self._filter(since, until, None, None, None, site)
        now = self._clock()
        timings = []
        for batch, at in self._source.report_batch_jobs(site):
            if batch.created_at < f.until and (batch.end_time is None or batch.end_time >= f.since):
                timings += series.batch_timings([batch], now, at)
        timings.sort(key=lambda t: (t.created_at, t.id))
        return Queue(
            since=f.since,
            until=f.until,
            batch_jobs=timings,
            wait=series.duration_stats(t.wait_sec for t in timings),
            run=series.duration_stats(t.run_sec for t in timings),
        )


class StoreRows:
    """A site's store as a report source: its report operations (over whichever transport
    the site uses), its batch jobs, and output tails from the site's data directory."""

    def __init__(self, store: StoreReads, data: Path, name: str, check_site: Callable[[str | None], None]) -> None:
        self._store, self._data, self._name, self._check = store, data, name, check_site

    def _here(self, f: ReportFilter) -> ReportFilter:
        self._check(f.site)
        return msgspec.structs.replace(f, site=None)

    def finished_counts(self, f: ReportFilter, bin_sec: float) -> list[CountBin]:
        return self._store.finished_counts(self._here(f), bin_sec)

    def run_spans(self, f: ReportFilter) -> list[RunSpan]:
        return self._store.run_spans(self._here(f))

    def busy_time(self, f: ReportFilter, bin_sec: float) -> list[BusyBin]:
        return self._store.busy_time(self._here(f), bin_sec)

    def failure_events(self, f: ReportFilter, limit: int = FAILURE_LIMIT) -> list[FailureEvent]:
        return self._store.failure_events(self._here(f), limit)

    def report_batch_jobs(self, site: str | None) -> list[tuple[BatchJob, str]]:
        self._check(site)
        return [(b, self._name) for b in self._store.batch_jobs()]

    def output_tail(self, event: FailureEvent, lines: int) -> str:
        from balsamd.launch.running.commands import OUTPUT_FILE  # where every run's output goes

        return tail_of(self._data / event.workdir / OUTPUT_FILE, lines)


class StoreReads(Protocol):
    """The store operations reports read through."""

    def finished_counts(self, f: ReportFilter, bin_sec: float) -> list[CountBin]: ...

    def run_spans(self, f: ReportFilter) -> list[RunSpan]: ...

    def busy_time(self, f: ReportFilter, bin_sec: float) -> list[BusyBin]: ...

    def failure_events(self, f: ReportFilter, limit: int = ...) -> list[FailureEvent]: ...

    def batch_jobs(self, states: list[BatchJobState] | None = None) -> list[BatchJob]: ...
