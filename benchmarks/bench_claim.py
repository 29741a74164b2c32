"""Store claim throughput: ``SiteStore.claim`` against a raw SQLite loop on the same file.

Setup (once, untimed): a SiteStore on a temporary file with one app and N runnable jobs
(PREPROCESSED, the state create_jobs settles parentless jobs of a hook-free app in), created
with ``create_jobs`` in chunks; the file is checkpointed and closed.  Every measurement, on
either side, works on its own fresh byte copy of that file, so each starts from the same N
runnable jobs, the same schema and the same indexes.

balsamd side
    ``SiteStore(copy)`` and ``open_session`` (untimed), then ``claim(session, ClaimLimits(
    max_jobs=k))`` in a loop until the target count is claimed (timed).  This includes all
    the store does per claim: the session check, the change counter, the UPDATE ... RETURNING
    and building ``Job`` structs.

baseline side
    one apsw connection with the pragmas the store claims under (WAL, synchronous=FULL: a
    claim is on disk when it returns) doing
    ``BEGIN IMMEDIATE; UPDATE jobs SET session_id=? WHERE id IN (SELECT id FROM jobs WHERE
    session_id IS NULL AND state IN (...) ORDER BY num_nodes, id LIMIT CAST(? AS INTEGER))
    RETURNING *; COMMIT`` and fetching all rows, in the same loop.  (A plain ``LIMIT ?`` makes
    SQLite compile the statement again on every call, as it plans by the bound value: the cast
    spares the baseline that, as the store spares itself.)  Before timing, the baseline's copy gets
    ``ANALYZE`` (see BASELINE_ANALYZE): with statistics SQLite serves the subquery from the
    partial index ``jobs_runnable`` in order; without them it picks ``jobs_state`` and sorts
    every runnable row on each claim.  The baseline is meant to be the best plain loop over
    the same data, so a planning problem on the balsamd side shows up in the ratio instead of
    being copied into the reference.

Metrics: ``claim.single`` (k=1, a fixed number of claims) and ``claim.batch1000`` (k=1000
until all N jobs are claimed), both in jobs/s.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from time import perf_counter

import apsw

from balsamd.models import App, ClaimLimits, JobSpec
from balsamd.states import JobState
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from benchmarks.common import Benchmark, Context, rate

APP = "bench_noop"
CREATE_CHUNK = 10_000
BATCH = 1000
BASELINE_ANALYZE = True

RAW_CLAIM = (
    "UPDATE jobs SET session_id = ? WHERE id IN ("
    "SELECT id FROM jobs WHERE session_id IS NULL AND state IN ('PREPROCESSED', 'RESTART_READY') "
    "ORDER BY num_nodes, id LIMIT CAST(? AS INTEGER)) RETURNING *"
)


class StoreTemplate:
    """A store file with ``jobs`` runnable jobs, built once and copied for each measurement."""

    def __init__(self, ctx: Context, jobs: int) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.path: Path | None = None
        self._copies = itertools.count()

    def build(self) -> None:
        if self.path is not None:
            return
        path = self.ctx.scratch("claim-") / "template.db"
        store = SiteStore(path)
        try:
            store.put_apps([App(name=APP, command_template="true")])
            for start in range(0, self.jobs, CREATE_CHUNK):
                count = min(CREATE_CHUNK, self.jobs - start)
                store.create_jobs([JobSpec(app=APP, workdir=f"bench/{start + k}") for k in range(count)])
            runnable = store.counts_by_state().get(str(JobState.PREPROCESSED), 0)
        finally:
            store.close()
        if runnable != self.jobs:
            raise RuntimeError(f"template store has {runnable} runnable jobs, expected {self.jobs}")
        # fold the WAL into the main file so a plain file copy is the whole store
        conn = apsw.Connection(str(path))
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        self.path = path

    @contextlib.contextmanager
    def copy(self) -> Iterator[Path]:
        self.build()
        assert self.path is not None
        dst = self.path.with_name(f"copy-{next(self._copies)}.db")
        shutil.copyfile(self.path, dst)
        try:
            yield dst
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{dst}{suffix}").unlink(missing_ok=True)


def _check(claimed: int, wanted: int, side: str) -> None:
    if claimed != wanted:
        raise RuntimeError(f"{side} claimed {claimed} jobs, expected {wanted}")


def store_claims(template: StoreTemplate, batch: int, target: int) -> float:
    """jobs/s of SiteStore.claim with max_jobs=batch until ``target`` jobs are claimed."""
    with template.copy() as path:
        store = SiteStore(path)
        try:
            session_id = store.open_session(label="bench").id
            limits = ClaimLimits(max_jobs=batch)
            claim = store.claim
            claimed = 0
            t0 = perf_counter()
            while claimed < target:
                got = claimed_jobs(claim(session_id, limits), limits)  # as a launcher decodes them
                if not got:
                    break
                claimed += len(got)
            elapsed = perf_counter() - t0
        finally:
            store.close()
    _check(claimed, target, "SiteStore.claim")
    return rate(claimed, elapsed)


def raw_claims(template: StoreTemplate, batch: int, target: int) -> float:
    """jobs/s of the plain BEGIN IMMEDIATE / UPDATE ... RETURNING / COMMIT loop."""
    with template.copy() as path:
        conn = apsw.Connection(str(path))
        try:
            conn.set_busy_timeout(60_000)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # as the store claims: a claim is durable
            if BASELINE_ANALYZE:
                conn.execute("ANALYZE")
            execute = conn.execute
            params = ("raw-session", batch)
            claimed = 0
            t0 = perf_counter()
            while claimed < target:
                execute("BEGIN IMMEDIATE")
                rows = execute(RAW_CLAIM, params).fetchall()
                execute("COMMIT")
                if not rows:
                    break
                claimed += len(rows)
            elapsed = perf_counter() - t0
        finally:
            conn.close()
    _check(claimed, target, "raw loop")
    return rate(claimed, elapsed)


def benchmarks(ctx: Context) -> list[Benchmark]:
    jobs = ctx.size(100_000, quick=20_000, minimum=10)
    singles = min(ctx.size(5_000, quick=1_000), jobs)
    template = StoreTemplate(ctx, jobs)
    return [
        Benchmark(
            name="claim.single",
            unit="jobs/s",
            description=f"{singles} claims of max_jobs=1 from {jobs} runnable jobs",
            measure=lambda: store_claims(template, 1, singles),
            baseline=lambda: raw_claims(template, 1, singles),
            goal_ratio=0.5,
            setup=template.build,
        ),
        Benchmark(
            name=f"claim.batch{BATCH}",
            unit="jobs/s",
            description=f"claims of max_jobs={BATCH} until {jobs} runnable jobs are drained",
            measure=lambda: store_claims(template, BATCH, jobs),
            baseline=lambda: raw_claims(template, BATCH, jobs),
            goal_ratio=0.5,
            goal_value=100_000,
            setup=template.build,
        ),
    ]
