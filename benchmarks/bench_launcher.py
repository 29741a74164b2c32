"""Launcher throughput on no-op jobs, against the plain tools doing the same runs.

Both benchmarks give every tool the cores this process may use (``os.sched_getaffinity``).

launcher.p1_noop_command
    balsamd: a fresh local site whose ``cpus_per_node`` is that core count, a command app
    running ``true``, N jobs with ``node_packing_count`` equal to the core count (so a node
    takes that many single-CPU runs at once), all created with ``bulk_create`` (untimed).
    Then ``run_launcher(site, JobMode.SERIAL, idle_ttl=0.2)`` runs in this process on this
    host.  Timed: from the call until the store recorded the last job JOB_FINISHED (the
    largest ``updated_at`` of the finished jobs), so the launcher's start (app import,
    session) counts and its idle wait before exiting does not.  Every job must be finished.
    baseline: ``seq N | xargs -P cores -n 1 true``.

launcher.p2_noop_python
    balsamd: the same with a Python app whose ``run`` returns None; the launcher runs them in
    its warm workers (forked from the zygote it starts, inside the timed region).
    baseline: a ``spawn`` ``multiprocessing.Pool(cores)`` mapping the same no-op function over
    N items with ``chunksize=1``, timed from creating the pool until ``map`` returns.  One item
    per task, as each balsamd job is a unit of its own with its start and end recorded (the
    launcher may queue several on a worker in one message, the Pool's feeder thread does the
    same); Pool's default chunking would run N / (4 * cores) items as one call.

Metrics in jobs/s.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from time import perf_counter, time

from benchmarks.common import Benchmark, Context, rate

# balsamd is imported inside the functions that use it: the pool's spawn children import this
# module to find ``noop``, and importing balsamd there would slow the baseline's start by
# several times what a balsamd worker's own imports cost.

IDLE_TTL = 0.2
CREATE_CHUNK = 10_000
APP = "BenchNoop"

COMMAND_APP = f"""\
from balsamd import ApplicationDefinition


class {APP}(ApplicationDefinition):
    command_template = "true"
"""

PYTHON_APP = f"""\
from balsamd import ApplicationDefinition


class {APP}(ApplicationDefinition):
    def run(self):
        return None
"""


def bench_cores() -> int:
    """The cores this process may use: the launcher, xargs and the pool all get this many."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class NoopSites:
    """Fresh sites of ``jobs`` no-op jobs of one app, made outside any timed region."""

    def __init__(self, ctx: Context, app_source: str, jobs: int, cores: int) -> None:
        self.ctx = ctx
        self.app_source = app_source
        self.jobs = jobs
        self.cores = cores
        self._serial = itertools.count()

    def make(self) -> Path:
        import balsamd
        from balsamd.site import init_site

        root = self.ctx.scratch("launcher-") / f"site{next(self._serial)}"
        layout = init_site(root, name="bench")
        text, found = re.subn(
            r"(?m)^cpus_per_node = [^#\n]*", f"cpus_per_node = {self.cores} ", layout.settings.read_text()
        )
        if found != 1:
            raise RuntimeError(f"{layout.settings} has no cpus_per_node line to set")
        layout.settings.write_text(text)
        (layout.apps / "bench_noop.py").write_text(self.app_source)
        with balsamd.connect(root) as site:
            for start in range(0, self.jobs, CREATE_CHUNK):
                count = min(CREATE_CHUNK, self.jobs - start)
                site.jobs.bulk_create(
                    {"app": APP, "workdir": f"noop/{start + k}", "node_packing_count": self.cores} for k in range(count)
                )
            runnable = site.jobs.count(state="PREPROCESSED")
        if runnable != self.jobs:
            raise RuntimeError(f"the bench site has {runnable} runnable jobs, expected {self.jobs}")
        return root


def launcher_rate(sites: NoopSites) -> float:
    """jobs/s of one serial launcher in this process, start to the last JOB_FINISHED."""
    import balsamd
    from balsamd.launch.leader.main import run_launcher
    from balsamd.models import JobMode

    root = sites.make()
    try:
        with balsamd.connect(root) as site:
            t0 = time()
            summary = run_launcher(
                site.layout, site.settings, site.store, site.apps.sync(), JobMode.SERIAL,
                idle_ttl=IDLE_TTL, nodes=[socket.gethostname()],
            )  # fmt: skip
            finished = site.jobs.filter(state="JOB_FINISHED")
        if len(finished) != sites.jobs or summary.errors:
            raise RuntimeError(
                f"{len(finished)} of {sites.jobs} jobs finished ({summary.started} started, "
                f"{summary.errors} errors, exit: {summary.exit})"
            )
        last = max(job.updated_at for job in finished)
        return rate(len(finished), last - t0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def xargs_rate(jobs: int, cores: int) -> float:
    """jobs/s of ``seq N | xargs -P cores -n 1 true``."""
    t0 = perf_counter()
    seq = subprocess.Popen(["seq", str(jobs)], stdout=subprocess.PIPE)
    assert seq.stdout is not None
    xargs = subprocess.run(["xargs", "-P", str(cores), "-n", "1", "true"], stdin=seq.stdout, check=False)
    seq.stdout.close()
    elapsed = perf_counter() - t0
    if seq.wait() != 0 or xargs.returncode != 0:
        raise RuntimeError(f"seq | xargs failed (exit {seq.returncode} / {xargs.returncode})")
    return rate(jobs, elapsed)


def noop(_item: object) -> None:
    return None


def pool_rate(jobs: int, cores: int) -> float:
    """jobs/s of a fresh spawn Pool(cores) mapping a no-op over ``jobs`` items, one per message."""
    ctx = multiprocessing.get_context("spawn")
    t0 = perf_counter()
    with ctx.Pool(cores) as pool:
        results = pool.map(noop, range(jobs), chunksize=1)
        elapsed = perf_counter() - t0
    if len(results) != jobs:
        raise RuntimeError(f"the pool returned {len(results)} results, expected {jobs}")
    return rate(jobs, elapsed)


def benchmarks(ctx: Context) -> list[Benchmark]:
    cores = bench_cores()
    command_jobs = ctx.size(10_000, quick=2_000, minimum=10)
    python_jobs = ctx.size(10_000, quick=2_000, minimum=10)
    commands = NoopSites(ctx, COMMAND_APP, command_jobs, cores)
    pythons = NoopSites(ctx, PYTHON_APP, python_jobs, cores)
    return [
        Benchmark(
            name="launcher.p1_noop_command",
            unit="jobs/s",
            description=f"{command_jobs} `true` jobs, serial launcher on {cores} cores vs xargs -P {cores}",
            measure=lambda: launcher_rate(commands),
            baseline=lambda: xargs_rate(command_jobs, cores),
            goal_ratio=0.6,
        ),
        Benchmark(
            name="launcher.p2_noop_python",
            unit="jobs/s",
            description=(
                f"{python_jobs} no-op Python jobs, serial launcher on {cores} cores vs "
                f"spawn Pool({cores}).map(chunksize=1) including pool start"
            ),
            measure=lambda: launcher_rate(pythons),
            baseline=lambda: pool_rate(python_jobs, cores),
            goal_ratio=0.5,
        ),
    ]
