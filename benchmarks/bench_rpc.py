"""Claims over the daemon's RPC against the same claims made on the store directly.

Setup (once, untimed): a site with one command app and N runnable jobs, its daemon bound to
127.0.0.1; the store is checkpointed and closed, so the site directory is its whole state.

balsamd side
    every measurement copies that site, starts its daemon (``balsamd --site COPY start`` in a
    subprocess), connects an ``RpcClient`` with the site's secret to the port in daemon.json
    and opens a session through ``RemoteStore`` (all untimed).  Timed: ``RemoteStore.claim``
    in a loop until the target count is claimed: encoding, loopback TCP, the daemon's
    dispatch to its store thread, the store's claim, and decoding the returned jobs.  The
    daemon is stopped afterwards (untimed), and in teardown should a measurement fail.

baseline side
    ``SiteStore.claim`` in the same loop on a fresh copy of the same store file: what the RPC
    carries, without the RPC.

Metrics: ``rpc.claim_single`` (max_jobs=1, a fixed number of claims, in claims/s; each claim
syncs the store's WAL, on both sides, so the goal is what the RPC adds: at least 0.4 of the
direct rate, not a number of claims a second that a slower disk could never reach) and
``rpc.claim_batch`` (max_jobs=1000 until all N
jobs are claimed, in jobs/s).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from time import perf_counter

import apsw

import balsamd
from balsamd.daemon import control
from balsamd.models import ClaimLimits
from balsamd.rpc.client import RemoteStore, RpcClient
from balsamd.rpc.record import read_record, read_secret
from balsamd.site import SiteLayout, init_site
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from benchmarks.common import Benchmark, Context, rate

APP = "BenchNoop"
APP_SOURCE = f"""\
from balsamd import ApplicationDefinition


class {APP}(ApplicationDefinition):
    command_template = "true"
"""
CREATE_CHUNK = 10_000
BATCH = 1000
DAEMON_TIMEOUT = 60.0


class SiteTemplate:
    """A site with ``jobs`` runnable jobs, built once and copied for each measurement."""

    def __init__(self, ctx: Context, jobs: int) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.root: Path | None = None
        self._copies = itertools.count()
        self.running: set[Path] = set()  # copies whose daemon may still run

    def build(self) -> None:
        if self.root is not None:
            return
        root = self.ctx.scratch("rpc-") / "template"
        layout = init_site(root, name="bench")
        text, found = re.subn(r'(?m)^bind = "[^"\n]*"', 'bind = "127.0.0.1"', layout.settings.read_text())
        if found != 1:
            raise RuntimeError(f"{layout.settings} has no daemon bind line to set")
        layout.settings.write_text(text)
        (layout.apps / "bench_noop.py").write_text(APP_SOURCE)
        with balsamd.connect(root) as site:
            for start in range(0, self.jobs, CREATE_CHUNK):
                count = min(CREATE_CHUNK, self.jobs - start)
                site.jobs.bulk_create({"app": APP, "workdir": f"noop/{start + k}"} for k in range(count))
            runnable = site.jobs.count(state="PREPROCESSED")
        if runnable != self.jobs:
            raise RuntimeError(f"the template site has {runnable} runnable jobs, expected {self.jobs}")
        # fold the WAL into the main file so copying the directory copies the whole store
        conn = apsw.Connection(str(layout.store))
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        self.root = root

    def copy_site(self) -> Path:
        self.build()
        assert self.root is not None
        dst = self.root.with_name(f"site{next(self._copies)}")
        shutil.copytree(self.root, dst)
        return dst

    @contextlib.contextmanager
    def store_copy(self) -> Iterator[Path]:
        self.build()
        assert self.root is not None
        dst = self.root.with_name(f"store{next(self._copies)}.db")
        shutil.copyfile(SiteLayout(self.root).store, dst)
        try:
            yield dst
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{dst}{suffix}").unlink(missing_ok=True)

    @contextlib.contextmanager
    def daemon(self) -> Iterator[RemoteStore]:
        """A copy of the site with its daemon running, and a RemoteStore connected to it."""
        root = self.copy_site()
        self.running.add(root)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "balsamd", "--site", str(root), "start"],
                capture_output=True, text=True, timeout=DAEMON_TIMEOUT, check=False,
            )  # fmt: skip
            record = read_record(root)
            if proc.returncode != 0 or record is None:
                raise RuntimeError(f"the daemon did not start (exit {proc.returncode}): {proc.stderr.strip()}")
            store = RemoteStore(RpcClient("127.0.0.1", record.port, read_secret(root), "bench"))
            try:
                yield store
            finally:
                store.close()
        finally:
            stop_daemon(root)
            self.running.discard(root)
            shutil.rmtree(root, ignore_errors=True)

    def teardown(self) -> None:
        for root in list(self.running):
            stop_daemon(root)
            self.running.discard(root)


def stop_daemon(root: Path) -> None:
    with contextlib.suppress(control.NotRunning):
        control.stop(SiteLayout(root), timeout=DAEMON_TIMEOUT)


def claim_loop(claim: Callable[[str, ClaimLimits], str], session_id: str, batch: int, target: int) -> float:
    limits = ClaimLimits(max_jobs=batch)
    claimed = 0
    t0 = perf_counter()
    while claimed < target:
        got = claimed_jobs(claim(session_id, limits), limits)  # as a launcher decodes them
        if not got:
            break
        claimed += len(got)
    elapsed = perf_counter() - t0
    if claimed != target:
        raise RuntimeError(f"claimed {claimed} jobs, expected {target}")
    return rate(claimed, elapsed)


def rpc_claims(template: SiteTemplate, batch: int, target: int) -> float:
    """jobs/s (claims/s for batch 1) of RemoteStore.claim against a daemon on this host."""
    with template.daemon() as store:
        session_id = store.open_session(label="bench").id
        return claim_loop(store.claim, session_id, batch, target)


def store_claims(template: SiteTemplate, batch: int, target: int) -> float:
    """The same loop on SiteStore.claim over a copy of the same store file."""
    with template.store_copy() as path:
        store = SiteStore(path)
        try:
            session_id = store.open_session(label="bench").id
            return claim_loop(store.claim, session_id, batch, target)
        finally:
            store.close()


def benchmarks(ctx: Context) -> list[Benchmark]:
    jobs = ctx.size(50_000, quick=10_000, minimum=10)
    singles = min(ctx.size(5_000, quick=1_000), jobs)
    template = SiteTemplate(ctx, jobs)
    return [
        Benchmark(
            name="rpc.claim_single",
            unit="claims/s",
            description=f"{singles} RPC claims of max_jobs=1 from {jobs} runnable jobs vs SiteStore.claim",
            measure=lambda: rpc_claims(template, 1, singles),
            baseline=lambda: store_claims(template, 1, singles),
            goal_ratio=0.4,
            setup=template.build,
            teardown=template.teardown,
        ),
        Benchmark(
            name="rpc.claim_batch",
            unit="jobs/s",
            description=f"RPC claims of max_jobs={BATCH} until {jobs} runnable jobs are drained vs SiteStore.claim",
            measure=lambda: rpc_claims(template, BATCH, jobs),
            baseline=lambda: store_claims(template, BATCH, jobs),
            goal_ratio=0.5,
            setup=template.build,
            teardown=template.teardown,
        ),
    ]
