"""``balsamd top`` on a store of a million jobs, against ``job ls --by-state`` on the same store.

The store
    ``bench_scale``'s store of N runnable jobs (each with the move that created it: its events),
    cached the same way, copied.  On the copy (not timed) a campaign is under way: RUNS jobs
    finished with their ends spread over the last hour, FAILS failed with a reason, and a batch
    job of 64 nodes runs RUNNING of them in a launcher session.  Sizes: 1,000,000 jobs (100,000
    with --quick).

``top.first_frame_<N>``
    Milliseconds of ``balsamd top --once`` in-process: a frame read whole (jobs by state, an
    hour of finished runs by minute, failures, the running batch job's busy nodes, the transfer
    backlog) by ``build_frame`` through the store contract, and rendered.  The daemon's services
    are not asked (no daemon runs).  Baseline: ``counts_by_state`` on the same store, what
    ``balsamd job ls --by-state`` asks.  Lower is better; ratio = count / frame.  Goal: at most
    twice the count (``goal_ratio = 0.5``).

``top.next_frame_<N>``
    Milliseconds of each following frame (the view's tally kept), with CHANGES more jobs
    finished between frames (not timed): counted from the moves since the frame before.
    Baseline: ``counts_by_state`` again.  Goal: ten times cheaper than the count.
"""

from __future__ import annotations

import statistics
import time

from balsamd.config import NodeSettings
from balsamd.models import BatchJob, BatchJobState, ClaimLimits, StateUpdate
from balsamd.states import JobState
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from balsamd.top.frame import View
from balsamd.top.live import Watcher
from balsamd.top.render import render
from balsamd.validate import SiteRules
from benchmarks.bench_scale import StoreSource, size_label
from benchmarks.common import Benchmark, Context

RUNS = 20_000
FAILS = 50
RUNNING = 64
NODES = 64
CHANGES = 500
NEXT_FRAMES = 20
WIDTH = 120
NO_DAEMON = "not asked (no daemon runs in the benchmark)"


class Campaign:
    """A copy of the big store with a campaign under way, a view on it, and the count to compare."""

    def __init__(self, source: StoreSource, runs: int) -> None:
        self.source = source
        self.runs = runs
        self.store: SiteStore | None = None
        self.watcher: Watcher | None = None
        self.session = ""

    def open(self) -> None:
        if self.store is not None:
            return
        self.store = SiteStore(self.source.site().store, SiteRules(nodes=NodeSettings(max_nodes=NODES)))
        now = time.time()
        self.finish(self.runs, now - 3600, now)
        self.finish(FAILS, now - 600, now, JobState.RUN_ERROR)
        batch = self.store.create_batch_job(BatchJob(id="bench", num_nodes=NODES, wall_time_min=60, job_mode="serial"))
        self.store.update_batch_job(batch.id, state=BatchJobState.QUEUED, scheduler_id="1")
        self.store.update_batch_job(batch.id, state=BatchJobState.RUNNING)
        self.session = self.store.open_session("bench-top", batch_job_id=batch.id).id
        jobs = self._claim(self.session, RUNNING)
        self.store.update_states(self.session, [StateUpdate(job_id=j, state=JobState.RUNNING, ts=now) for j in jobs])

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
            self.watcher = None

    def _claim(self, session: str, count: int) -> list[str]:
        assert self.store is not None
        limits = ClaimLimits(max_jobs=count, serial_only=True)
        jobs = [j.id for j in claimed_jobs(self.store.claim(session, limits), limits)]
        if len(jobs) != count:
            raise RuntimeError(f"claimed {len(jobs)} jobs, expected {count}")
        return jobs

    def finish(self, count: int, first: float, last: float, end: JobState = JobState.RUN_DONE) -> None:
        """Run ``count`` jobs to ``end``, their ends spread from ``first`` to ``last``."""
        assert self.store is not None
        session = self.store.open_session("bench-top-runs").id
        step = (last - first) / max(count, 1)
        reason = "exit code 1" if end == JobState.RUN_ERROR else ""
        for start in range(0, count, 5000):
            jobs = self._claim(session, min(5000, count - start))
            updates = [
                StateUpdate(job_id=j, state=end, ts=first + (start + k) * step, started_at=first, reason=reason)
                for k, j in enumerate(jobs)
            ]
            outcome = self.store.update_states(session, updates)
            if outcome.rejected:
                raise RuntimeError(f"{len(outcome.rejected)} reports were rejected")
        self.store.close_session(session)

    def first_frame_ms(self) -> float:
        self.open()
        assert self.store is not None
        watcher = Watcher(self.store, "bench", View(), lambda: NO_DAEMON)
        t0 = time.perf_counter()
        frame = watcher.next()
        render(frame, WIDTH)
        took = time.perf_counter() - t0
        self._check(frame.total, frame.batch_jobs[0].running_jobs if frame.batch_jobs else 0)
        self.watcher = watcher
        return took * 1000

    def next_frame_ms(self) -> float:
        self.open()
        assert self.store is not None
        if self.watcher is None:
            self.watcher = Watcher(self.store, "bench", View(), lambda: NO_DAEMON)
            self.watcher.next()
        took = []
        for _ in range(NEXT_FRAMES):
            now = time.time()
            self.finish(CHANGES, now - 1, now)
            t0 = time.perf_counter()
            frame = self.watcher.next()
            render(frame, WIDTH)
            took.append(time.perf_counter() - t0)
            finished = {s.state: s.change for s in frame.states}.get(str(JobState.JOB_FINISHED))
            if finished != CHANGES:
                raise RuntimeError(f"a frame showed {finished} jobs more finished, expected {CHANGES}")
        return statistics.median(took) * 1000

    def count_ms(self) -> float:
        self.open()
        assert self.store is not None
        t0 = time.perf_counter()
        counts = self.store.counts_by_state()
        took = time.perf_counter() - t0
        self._check(sum(counts.values()), RUNNING)
        return took * 1000

    def _check(self, total: int, running: int) -> None:
        if total != self.source.jobs or running != RUNNING:
            raise RuntimeError(f"read {total} jobs ({running} running), expected {self.source.jobs} ({RUNNING})")


def benchmarks(ctx: Context) -> list[Benchmark]:
    # what the rounds use up: the campaign's runs, and each round's next frames (five rounds)
    jobs = ctx.size(1_000_000, quick=100_000, minimum=RUNS + FAILS + RUNNING + CHANGES * NEXT_FRAMES * 5)
    runs = RUNS
    label = size_label(jobs)
    campaign = Campaign(StoreSource(ctx, jobs), runs)
    return [
        Benchmark(
            name=f"top.first_frame_{label}",
            unit="ms",
            description=(
                f"one `top --once` frame read whole and rendered, {jobs} jobs ({runs} finished in the last hour); "
                "vs counts_by_state (`job ls --by-state`) on the same store"
            ),
            measure=campaign.first_frame_ms,
            baseline=campaign.count_ms,
            goal_ratio=0.5,
            lower_is_better=True,
            setup=campaign.open,
            teardown=campaign.close,
        ),
        Benchmark(
            name=f"top.next_frame_{label}",
            unit="ms",
            description=(
                f"median of {NEXT_FRAMES} following frames, {CHANGES} jobs finished between each; "
                "vs counts_by_state on the same store"
            ),
            measure=campaign.next_frame_ms,
            baseline=campaign.count_ms,
            goal_ratio=10.0,
            lower_is_better=True,
            setup=campaign.open,
            teardown=campaign.close,
        ),
    ]
