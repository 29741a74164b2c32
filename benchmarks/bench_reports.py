"""``balsamd report throughput`` on a store holding a week of history of a million jobs.

The history store
    N jobs of the no-op app (``bench_scale``'s site), created, claimed and reported finished
    through the store's own operations with their times (``now=``, ``started_at``, ``ts``):
    a week of runs ending at HISTORY_END, one finishing every 7 d / N, each 1 s to 10 min
    long, one in 50 failing (RUN_ERROR, then FAILED).  Each job is two moves in the store
    (its creation settling in PREPROCESSED, and its run to JOB_FINISHED or FAILED).  Built
    once in chunks of 50,000 and cached like ``bench_scale``'s stores (named after the schema
    version, HISTORY_FORMAT and N); every measurement opens its own copy.
    ``history_source(ctx, jobs)`` is the builder other benchmarks (a live view's ``top
    --once``) import.  Sizes: 1,000,000 jobs (100,000 with --quick).

``reports.throughput_<N>.week`` and ``.day``
    Milliseconds of ``site.reports.throughput`` (what ``balsamd report throughput`` calls)
    over the whole week (every finish, 28 bins of 6 h) and over its last day (48 bins of 30
    min), against ``site.jobs.counts_by_state()`` (what ``balsamd job ls --by-state``
    calls) on the same copy in the same round.  Lower is better, so the ratio is by-state /
    report; the goal is a report at most twice the cost of the by-state count (0.5).  Not
    timed: opening the site.

``reports.utilization_<N>.day``
    Milliseconds of ``site.reports.utilization`` over the last day (every run of the day
    joined with its job's footprint and summed per bin in the store), against the same
    baseline; measured without a goal, to show what reading each run costs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from balsamd.api import Site
from balsamd.models import ClaimLimits, JobSpec, StateUpdate
from balsamd.site import SiteLayout
from balsamd.states import JobState
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from benchmarks.bench_peers import cache_root
from benchmarks.bench_scale import (
    APP,
    CACHE_MIN_JOBS,
    SCHEMA_TAG,
    checkpoint,
    new_site,
    remove_store,
    size_label,
)
from benchmarks.common import Benchmark, Context

HISTORY_FORMAT = 1  # bump when what the fill writes changes, so cached stores are rebuilt
HISTORY_END = 1_800_000_000.0  # a fixed moment, so a cached store's week is always the same
WEEK = 7 * 86400.0
FILL_CHUNK = 50_000
CLAIM = 10_000
FAIL_EVERY = 50
CALLS = 3  # per measurement, the median taken


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fill_history(store_path: Path, jobs: int) -> float:
    """Add a week of ``jobs`` finished (or failed) runs ending at HISTORY_END; returns seconds."""
    t0 = time.perf_counter()
    step = WEEK / jobs
    store = SiteStore(store_path)
    try:
        for first in range(0, jobs, FILL_CHUNK):
            count = min(FILL_CHUNK, jobs - first)
            begins = HISTORY_END - WEEK + first * step
            store.create_jobs(
                [JobSpec(app=APP, workdir=f"history/{first + k:07d}") for k in range(count)], now=begins - 600
            )
            session = store.open_session(label="bench-history", now=begins - 600)
            done = 0
            while done < count:
                limits = ClaimLimits(max_jobs=min(CLAIM, count - done))
                claimed = claimed_jobs(store.claim(session.id, limits, now=begins - 600), limits)
                if not claimed:
                    raise RuntimeError(f"a claim for the history returned no jobs after {first + done}")
                updates = []
                for k, job in enumerate(claimed, start=done):
                    ends = begins + k * step
                    failed = (first + k) % FAIL_EVERY == 0
                    updates.append(StateUpdate(
                        job_id=job.id, state=JobState.RUN_ERROR if failed else JobState.RUN_DONE, ts=ends,
                        started_at=ends - 1 - (first + k) % 600, return_code=1 if failed else 0,
                        reason="exit code 1" if failed else "",
                    ))  # fmt: skip
                outcome = store.update_states(session.id, updates, now=updates[-1].ts)
                if outcome.rejected:
                    raise RuntimeError(f"history reports rejected: {list(outcome.rejected.items())[:3]}")
                done += len(claimed)
            store.close_session(session.id, now=begins + count * step)
    finally:
        store.close()
    checkpoint(store_path)
    return time.perf_counter() - t0


def history_cache_file(jobs: int) -> Path:
    return cache_root() / "stores" / f"history-schema{SCHEMA_TAG}-fill{HISTORY_FORMAT}-{jobs}.db"


class HistorySource:
    """Sites whose store holds a week of ``jobs`` finished runs: built once (cached on disk
    when large), each site made with its own copy."""

    def __init__(self, ctx: Context, jobs: int) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.cache = history_cache_file(jobs) if jobs >= CACHE_MIN_JOBS else None
        self._built: Path | None = None

    def template(self) -> Path:
        if self._built is None:
            self._built = self._build()
        return self._built

    def _build(self) -> Path:
        if self.cache is not None and self.cache.exists():
            return self.cache
        layout = new_site(self.ctx.scratch("history-build-"))
        _log(f"[reports] writing a week of history of {self.jobs} jobs in chunks of {FILL_CHUNK} (not timed)")
        seconds = fill_history(layout.store, self.jobs)
        _log(f"[reports] wrote {self.jobs} jobs' history in {seconds:.1f} s ({self.jobs / seconds:.0f} jobs/s)")
        if self.cache is None:
            return layout.store
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_name(f"{self.cache.name}.tmp{os.getpid()}")
        shutil.move(layout.store, tmp)
        tmp.rename(self.cache)
        size = self.cache.name.rsplit("-", 1)[-1]
        for stale in self.cache.parent.glob(f"history-schema*-fill*-{size}"):
            if stale != self.cache:
                stale.unlink(missing_ok=True)
        _log(f"[reports] cached the store as {self.cache} ({self.cache.stat().st_size / 1e6:.0f} MB)")
        return self.cache

    def site(self) -> SiteLayout:
        """A new site holding a copy of the history store."""
        layout = new_site(self.ctx.scratch("history-site-"))
        remove_store(layout.store)
        shutil.copyfile(self.template(), layout.store)
        return layout


def history_source(ctx: Context, jobs: int) -> HistorySource:
    return HistorySource(ctx, jobs)


class ReportProbe:
    """One site on a copy of the history, opened once for every round."""

    def __init__(self, source: HistorySource) -> None:
        self.source = source
        self.site: Site | None = None

    def open(self) -> Site:
        if self.site is None:
            self.site = Site(self.source.site())
        return self.site

    def close(self) -> None:
        if self.site is not None:
            self.site.close()
            self.site = None

    def throughput_ms(self, since: float) -> float:
        site = self.open()
        took = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            report = site.reports.throughput(since=since, until=HISTORY_END)
            took.append(time.perf_counter() - t0)
        finished = self.source.jobs - _failed(self.source.jobs)
        expected = finished if since <= HISTORY_END - WEEK else None
        if report.total <= 0 or (expected is not None and report.total != expected):
            raise RuntimeError(f"the report counted {report.total} finished jobs, expected {expected or 'some'}")
        return statistics.median(took) * 1000

    def utilization_ms(self, since: float) -> float:
        site = self.open()
        took = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            report = site.reports.utilization(since=since, until=HISTORY_END)
            took.append(time.perf_counter() - t0)
        if report.mean_busy_nodes <= 0:
            raise RuntimeError("the utilization report found no busy nodes in the history")
        return statistics.median(took) * 1000

    def by_state_ms(self) -> float:
        site = self.open()
        took = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            counts = site.jobs.counts_by_state()
            took.append(time.perf_counter() - t0)
        if sum(counts.values()) != self.source.jobs:
            raise RuntimeError(f"counts_by_state counted {sum(counts.values())} jobs, expected {self.source.jobs}")
        return statistics.median(took) * 1000


def _failed(jobs: int) -> int:
    return len(range(0, jobs, FAIL_EVERY))


def benchmarks(ctx: Context) -> list[Benchmark]:
    jobs = ctx.size(1_000_000, quick=100_000, minimum=100)
    label = size_label(jobs)
    probe = ReportProbe(history_source(ctx, jobs))
    rows = []
    for suffix, since, what in (("week", HISTORY_END - WEEK, "the whole week"), ("day", HISTORY_END - 86400,
                                                                               "the last day")):  # fmt: skip
        rows.append(
            Benchmark(
                name=f"reports.throughput_{label}.{suffix}",
                unit="ms",
                description=(
                    f"site.reports.throughput over {what} of a store with {jobs} jobs' history, vs "
                    "site.jobs.counts_by_state() (job ls --by-state) on the same store; ratio by-state / report"
                ),
                measure=lambda s=since: probe.throughput_ms(s),
                baseline=probe.by_state_ms,
                goal_ratio=0.5,
                lower_is_better=True,
                setup=probe.open,
                teardown=probe.close,
            )
        )
    rows.append(
        Benchmark(
            name=f"reports.utilization_{label}.day",
            unit="ms",
            description=(
                f"site.reports.utilization over the last day of a store with {jobs} jobs' history (every run of "
                "the day summed per bin in the store), vs site.jobs.counts_by_state(); measured, no goal"
            ),
            measure=lambda: probe.utilization_ms(HISTORY_END - 86400),
            baseline=probe.by_state_ms,
            lower_is_better=True,
            setup=probe.open,
            teardown=probe.close,
        )
    )
    return rows
