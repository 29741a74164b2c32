"""balsamd with a million jobs on the site: claim latency and the daemon's memory.

The big store
    N runnable no-op command jobs (app ``Noop``, ``true``; PREPROCESSED, the state create_jobs
    settles parentless jobs of a hook-free app in), created with ``SiteStore.create_jobs`` in
    chunks of 50,000, checkpointed and closed.  Filling 1,000,000 jobs took 38 to 64 s on a
    shared two-core machine (15,000 to 26,000 jobs/s; the time is logged) and makes a 590 MB
    file, so the file is built once and kept under ``~/.cache/balsamd-bench/stores/``
    (``$XDG_CACHE_HOME`` is honoured), named after the store's schema version, this module's
    FILL_FORMAT and N; a schema change builds a new one and removes the old.  Every benchmark
    works on its own byte copy of it, never on the cached file.
    Sizes: 1,000,000 jobs (100,000 with --quick, and the row names say which).

``scale.claim_latency_<N>.batch256`` and ``.single``
    Milliseconds per ``SiteStore.claim`` of a serial launcher's shape (``serial_only``;
    ``max_jobs`` 256 or 1), median of a run of claims, with N jobs in the store (balsamd
    column) and with 10,000 (baseline column).  Lower is better, so the ratio is
    10k-latency / N-latency, and the goal "at most twice as slow with N jobs" is
    ``goal_ratio = 0.5``.  Not timed: opening the store, the session, a few warm-up claims,
    and handing the claimed jobs back after each measurement (so each round starts alike).

``scale.daemon_rss_<N>``
    Resident memory (VmRSS from /proc/PID/status, in MB) of a daemon started with
    ``balsamd --site S start`` on a site whose store holds the N jobs, read after it has run
    its services for a moment, answered three ``status`` calls and served a launcher's
    session with five RPC claims of 256 jobs.  Baseline: the same on a site with no jobs.
    Goal: at most 200 MB.  The daemon's hook-worker children are not included (their
    memory is logged).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import apsw

from balsamd.apps import command_app_source
from balsamd.daemon import control
from balsamd.models import ClaimLimits, JobSpec
from balsamd.rpc.client import RemoteStore
from balsamd.rpc.record import read_record
from balsamd.site import SiteLayout, init_site
from balsamd.states import JobState
from balsamd.store.queries import claimed_jobs
from balsamd.store.schema import MIGRATIONS
from balsamd.store.store import SiteStore
from benchmarks.bench_peers import cache_root
from benchmarks.common import Benchmark, Context

APP = "Noop"
APP_FILE = "noop.py"
FILL_CHUNK = 50_000
FILL_FORMAT = 1  # bump when what the fill writes changes, so cached stores are rebuilt
CACHE_MIN_JOBS = 100_000  # smaller stores are quicker to build than to copy around
SMALL_JOBS = 10_000
BATCH = 256
WARMUP_CLAIMS = 5
BATCH_CLAIMS = 20
SINGLE_CLAIMS = 200
SETTLE_SEC = 2.0
STATUS_CALLS = 3
RPC_CLAIMS = 5
RSS_GOAL_MB = 200.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def size_label(jobs: int) -> str:
    """1000000 -> '1m', 100000 -> '100k', 1234 -> '1234'."""
    if jobs % 1_000_000 == 0:
        return f"{jobs // 1_000_000}m"
    if jobs % 1000 == 0:
        return f"{jobs // 1000}k"
    return str(jobs)


# a cached store is of this schema: its version, and what its migrations say (two branches'
# migrations of one number are not the same schema)
def schema_tag() -> str:
    return f"{len(MIGRATIONS)}.{hashlib.sha256(''.join(MIGRATIONS).encode()).hexdigest()[:8]}"


SCHEMA_TAG = schema_tag()


def cache_file(jobs: int, root: Path | None = None) -> Path:
    root = cache_root() if root is None else root
    return root / "stores" / f"store-schema{SCHEMA_TAG}-fill{FILL_FORMAT}-{jobs}.db"


def stale_caches(current: Path) -> list[Path]:
    """Cached stores of the same size as ``current`` made for another schema or fill."""
    size = current.name.rsplit("-", 1)[-1]
    return sorted(p for p in current.parent.glob(f"store-schema*-fill*-{size}") if p != current)


# ----- building stores ---------------------------------------------------------------------


def new_site(parent: Path) -> SiteLayout:
    """A fresh site with the one no-op command app in SITE/apps and in its store."""
    from balsamd.api import Site

    layout = init_site(parent / "site", name="scale")
    (layout.apps / APP_FILE).write_text(command_app_source(APP, "true"))
    with Site(layout) as site:
        site.apps.sync()
    return layout


def fill(store_path: Path, jobs: int) -> float:
    """Add ``jobs`` runnable jobs to a site's store in chunks; returns the seconds it took."""
    t0 = time.perf_counter()
    store = SiteStore(store_path)
    try:
        for start in range(0, jobs, FILL_CHUNK):
            count = min(FILL_CHUNK, jobs - start)
            store.create_jobs([JobSpec(app=APP, workdir=f"scale/{start + k:07d}") for k in range(count)])
        runnable = store.counts_by_state().get(str(JobState.PREPROCESSED), 0)
    finally:
        store.close()
    if runnable != jobs:
        raise RuntimeError(f"the filled store has {runnable} runnable jobs, expected {jobs}")
    checkpoint(store_path)
    return time.perf_counter() - t0


def checkpoint(store_path: Path) -> None:
    """Fold the WAL into the main file, so that the file alone is the whole store."""
    conn = apsw.Connection(str(store_path))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()


def remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class StoreSource:
    """Sites whose store holds ``jobs`` runnable jobs: the store built once (cached on disk
    when large), each site made with its own copy of it."""

    def __init__(self, ctx: Context, jobs: int, cache: Path | None = None) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.cache = cache if cache is not None else (cache_file(jobs) if jobs >= CACHE_MIN_JOBS else None)
        self._built: Path | None = None

    def template(self) -> Path:
        if self._built is not None:
            return self._built
        if self.cache is not None and self.cache.exists():
            self._built = self.cache
            return self.cache
        layout = new_site(self.ctx.scratch("scale-build-"))
        if self.jobs:
            _log(f"[scale] filling a store with {self.jobs} jobs in chunks of {FILL_CHUNK} (not timed)")
            seconds = fill(layout.store, self.jobs)
            _log(f"[scale] filled {self.jobs} jobs in {seconds:.1f} s ({self.jobs / seconds:.0f} jobs/s)")
        else:
            checkpoint(layout.store)
        if self.cache is None:
            self._built = layout.store
            return layout.store
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_name(f"{self.cache.name}.tmp{os.getpid()}")
        shutil.move(layout.store, tmp)
        tmp.rename(self.cache)
        _log(f"[scale] cached the store as {self.cache} ({self.cache.stat().st_size / 1e6:.0f} MB)")
        for stale in stale_caches(self.cache):
            stale.unlink(missing_ok=True)
            _log(f"[scale] removed {stale}, built for another schema version or fill")
        self._built = self.cache
        return self.cache

    def site(self) -> SiteLayout:
        """A new site holding a copy of the store."""
        template = self.template()
        layout = new_site(self.ctx.scratch("scale-site-"))
        remove_store(layout.store)
        shutil.copyfile(template, layout.store)
        return layout


# ----- claim latency -----------------------------------------------------------------------


class ClaimProbe:
    """A store copy with an open session, claimed from in rounds and handed back after each."""

    def __init__(self, source: StoreSource) -> None:
        self.source = source
        self.layout: SiteLayout | None = None
        self.store: SiteStore | None = None
        self.session = ""

    def open(self) -> None:
        """Open the copy (made on first use, reopened afterwards) and warm it up."""
        if self.store is not None:
            return
        if self.layout is None:
            self.layout = self.source.site()
        self.store = SiteStore(self.layout.store)
        self.session = self.store.open_session(label="bench-scale").id
        self.latencies(BATCH, WARMUP_CLAIMS)

    def close(self) -> None:
        if self.store is not None:
            self.store.close_session(self.session)
            self.store.close()
            self.store = None

    def latencies(self, batch: int, claims: int) -> list[float]:
        """Seconds of each of ``claims`` claims of up to ``batch`` jobs."""
        self.open()
        assert self.store is not None
        limits = ClaimLimits(max_jobs=batch, serial_only=True)
        claim = self.store.claim
        took, claimed = [], []
        for _ in range(claims):
            t0 = time.perf_counter()
            jobs = claimed_jobs(claim(self.session, limits), limits)
            took.append(time.perf_counter() - t0)
            if len(jobs) != batch:
                raise RuntimeError(f"a claim of {batch} returned {len(jobs)} jobs")
            claimed.extend(j.id for j in jobs)
        released = self.store.release(self.session, claimed)
        if released != len(claimed):
            raise RuntimeError(f"released {released} of {len(claimed)} claimed jobs")
        return took

    def median_ms(self, batch: int, claims: int) -> float:
        return statistics.median(self.latencies(batch, claims)) * 1000


# ----- daemon memory -----------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile, ...)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return fields


def children_rss_kb(pid: int) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError, KeyError):
                total += proc_status(int(child))["VmRSS"]
    return total


@contextlib.contextmanager
def running_daemon(layout: SiteLayout) -> Iterator[int]:
    """``balsamd --site S start`` as a user types it; stopped (by its recorded pid) after."""
    done = subprocess.run(
        [sys.executable, "-m", "balsamd", "--site", str(layout.root), "start"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    record = read_record(layout.root)
    if done.returncode != 0 or record is None:
        raise RuntimeError(f"the daemon did not start (exit {done.returncode}): {done.stderr.strip()}")
    try:
        yield record.pid
    finally:
        control.stop(layout)


def daemon_rss_mb(layout: SiteLayout, jobs: int) -> float:
    """VmRSS of a fresh daemon on ``layout`` after status calls and a session's claims."""
    with running_daemon(layout) as pid:
        time.sleep(SETTLE_SEC)
        for _ in range(STATUS_CALLS):
            status = control.status(layout)
        total = sum(status.job_counts.values())
        if total != jobs:
            raise RuntimeError(f"the daemon reports {total} jobs, expected {jobs}")
        record = read_record(layout.root)
        assert record is not None
        remote = RemoteStore(control.client_for(layout, record))
        try:
            session = remote.open_session(label="bench-scale")
            limits = ClaimLimits(max_jobs=BATCH, serial_only=True)
            claimed = sum(len(claimed_jobs(remote.claim(session.id, limits), limits)) for _ in range(RPC_CLAIMS))
            fields = proc_status(pid)
            remote.close_session(session.id)
        finally:
            remote.close()
        want = min(jobs, BATCH * RPC_CLAIMS)
        if claimed != want:
            raise RuntimeError(f"the RPC claims returned {claimed} jobs, expected {want}")
        kids = children_rss_kb(pid)
    _log(
        f"[scale] daemon with {jobs} jobs: VmRSS {fields['VmRSS'] / 1024:.1f} MB "
        f"(anon {fields.get('RssAnon', 0) / 1024:.1f}, file {fields.get('RssFile', 0) / 1024:.1f}, "
        f"peak {fields.get('VmHWM', 0) / 1024:.1f}); its children {kids / 1024:.1f} MB"
    )
    return fields["VmRSS"] / 1024


class DaemonSite:
    def __init__(self, source: StoreSource) -> None:
        self.source = source
        self.layout: SiteLayout | None = None

    def rss(self) -> float:
        if self.layout is None:
            self.layout = self.source.site()
        return daemon_rss_mb(self.layout, self.source.jobs)


# ----- the rows -----------------------------------------------------------------------------


def benchmarks(ctx: Context) -> list[Benchmark]:
    least = BATCH * BATCH_CLAIMS  # each measurement hands its claims back before the next
    big = ctx.size(1_000_000, quick=100_000, minimum=least)
    small = min(ctx.size(SMALL_JOBS, minimum=least), big)
    label = size_label(big)
    big_source, small_source = StoreSource(ctx, big), StoreSource(ctx, small)
    big_probe, small_probe = ClaimProbe(big_source), ClaimProbe(small_source)

    def prepare() -> None:
        big_probe.open()
        small_probe.open()

    def finish() -> None:
        big_probe.close()
        small_probe.close()

    rows = []
    for suffix, batch, claims in (("batch256", BATCH, BATCH_CLAIMS), ("single", 1, SINGLE_CLAIMS)):
        rows.append(
            Benchmark(
                name=f"scale.claim_latency_{label}.{suffix}",
                unit="ms",
                description=(
                    f"median of {claims} serial claims of max_jobs={batch}: {big} jobs in the store "
                    f"vs {small}; the ratio is {size_label(small)} latency / {label} latency"
                ),
                measure=lambda b=batch, c=claims: big_probe.median_ms(b, c),
                baseline=lambda b=batch, c=claims: small_probe.median_ms(b, c),
                goal_ratio=0.5,
                lower_is_better=True,
                setup=prepare,
                teardown=finish,
            )
        )
    big_daemon, empty_daemon = DaemonSite(big_source), DaemonSite(StoreSource(ctx, 0))
    rows.append(
        Benchmark(
            name=f"scale.daemon_rss_{label}",
            unit="MB",
            description=(
                f"VmRSS of `balsamd start` on a site with {big} jobs after {STATUS_CALLS} status calls and "
                f"{RPC_CLAIMS} RPC claims of {BATCH}, vs the same daemon on an empty site"
            ),
            measure=big_daemon.rss,
            baseline=empty_daemon.rss,
            goal_value=RSS_GOAL_MB,
            lower_is_better=True,
        )
    )
    return rows
