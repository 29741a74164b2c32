"""balsamd next to other workflow tools, on the same machine and the same number of cores.

Enabled by ``BALSAMD_BENCH_PEERS=1``; without it this module has no benchmarks (its rows are
skipped, not failed) and nothing is installed.  When enabled, each peer is installed once from
PyPI into its own virtual environment under ``~/.cache/balsamd-bench/peers/<name>`` (or
``$BALSAMD_BENCH_PEERS_DIR/<name>``) and reused afterwards; installing is never timed.  A peer
runs in a subprocess with its own interpreter (``benchmarks/peers/*.py``), which prints one
JSON line with its measured rate.

P1, no-op command jobs (``true``), the same count for every tool (10,000; 2,000 with --quick):

``peers.p1.parsl_bash``  Parsl HighThroughputExecutor ``bash_app`` / ``xargs -P cores -n 1 true``
``peers.p1.hyperqueue``  HyperQueue LocalCluster program tasks / the same xargs
``peers.p1.balsamd``     balsamd (create the jobs, run a serial launcher until drained) / xargs

P2, no-op Python-function jobs (5,000; 2,000 with --quick):

``peers.p2.parsl_python``       Parsl ``python_app`` / ``multiprocessing.Pool``
``peers.p2.hyperqueue``         HyperQueue function tasks / the same Pool
``peers.p2.balsamd_vs_parsl``   balsamd Python app / Parsl ``python_app``

In the rows named after a peer the table's "balsamd" column holds that peer's rate: each of
those rows compares a peer with the plain-tool floor, the same way ``peers.p1.balsamd`` does
for balsamd, so the three P1 ratios can be read side by side.

What each side's time covers (rates are jobs per second of wall time)
    Parsl   ``parsl.load`` and one warm-up task per worker are not timed (the workers take
            seconds to connect); submitting the N apps and waiting for every result is.
    HyperQueue  starting the cluster, its worker and a warm-up job are not timed; building
            the job of N tasks, submitting it and waiting for it is.  Its wait checks the
            job's progress about once a second, which can add up to a second.
    balsamd  nothing is warmed up: creating the N jobs in the store (``bulk_create``) and a
            serial launcher from its start until it exits drained are timed, including the
            start of its warm Python workers in P2 (a fraction of a second, which weighs more
            at the --quick sizes: quick ratios understate balsamd).
    xargs   one ``xargs -P cores -n 1 true`` over N lines.
    Pool    ``multiprocessing.Pool(cores)`` is started and warmed up untimed; timed is
            ``imap_unordered`` of a no-op over N items with ``chunksize=1`` (one item per
            round trip, as every tool here dispatches one job at a time).

HyperQueue's function tasks start a new Python interpreter for every task (its documented
model: ``python -c`` per task), 9 to 20 per second here, so that row uses a smaller count
(``P2_HQ_JOBS``), stated in its description; the rate does not depend on the count once it is
past a few dozen.

Run time, measured on a shared two-core machine (so with other work competing): ``run.py
--only peers scale --rounds 1`` took 2 min 10 s with the peers installed and the million-job
store of ``bench_scale`` cached, 3 min 20 s when that store had to be refilled (40 s, after a
schema change), and 6 min 10 s the first time (installing both peers ~15 s, filling the store
65 s on a busier machine).  The peers take 1.5 to 4 min per round, most of it Parsl's and
HyperQueue's 10,000 command tasks (20 to 70 s each) and Parsl's start-up (about 7 s per run,
not timed), so the default three rounds take 6 to 13 min.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balsamd.api import Site
from balsamd.apps import command_app_source
from balsamd.launch.leader.main import run_launcher
from balsamd.models import JobMode
from balsamd.site import SiteLayout, init_site
from benchmarks.common import Benchmark, Context, rate

PEERS_ENV = "BALSAMD_BENCH_PEERS"
PEERS_DIR_ENV = "BALSAMD_BENCH_PEERS_DIR"
HELPERS = Path(__file__).resolve().parent / "peers"
HELPER_TIMEOUT_SEC = 1800

P1_JOBS = 10_000
P1_JOBS_QUICK = 2_000
P2_JOBS = 5_000
P2_JOBS_QUICK = 2_000
P2_HQ_JOBS = 200
P2_HQ_JOBS_QUICK = 50

NOOP_APP = "Noop"
PY_APP = "PyNoop"
PY_APP_SOURCE = '''\
from balsamd import ApplicationDefinition


class PyNoop(ApplicationDefinition):
    """Does nothing, in a warm Python worker."""

    def run(self) -> None:
        return None
'''


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----- configuration -----------------------------------------------------------------------


def peers_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the peer comparisons run (they install packages from PyPI the first time)."""
    env = os.environ if env is None else env
    return env.get(PEERS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/balsamd-bench``, by default ``~/.cache/balsamd-bench``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "balsamd-bench"


def peers_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get(PEERS_DIR_ENV, "").strip()
    return Path(explicit).expanduser() if explicit else cache_root(env) / "peers"


def bench_cores() -> int:
    """The cores this process may use: every tool here gets exactly this many."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ----- peers in their own virtual environments ---------------------------------------------


@dataclass
class PeerEnv:
    """One peer's virtual environment: made and filled from PyPI once, then reused."""

    name: str
    requirement: str  # what pip installs
    module: str  # what must import afterwards
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of an activated venv: its bin first on PATH (Parsl starts its
        interchange and worker pool as scripts found on PATH)."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join(filter(None, [str(self.root / "bin"), env.get("PATH", "")]))
        env["VIRTUAL_ENV"] = str(self.root)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        return env

    def installed(self) -> bool:
        if not self.python.exists():
            return False
        probe = subprocess.run(
            [str(self.python), "-c", f"import {self.module}"],
            env=self.environ(), capture_output=True, timeout=120,
        )  # fmt: skip
        return probe.returncode == 0

    def ensure(self, log: Callable[[str], None] = _log) -> None:
        if self.installed():
            return
        if not self.python.exists():
            log(f"[peers] creating a virtual environment for {self.name} in {self.root}")
            self.root.parent.mkdir(parents=True, exist_ok=True)
            venv.EnvBuilder(with_pip=True, clear=True).create(self.root)
        log(f"[peers] pip install {self.requirement} into {self.root} (once; not timed)")
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(self.python), "-m", "pip", "install", "--quiet", self.requirement],
            env=self.environ(), capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        if done.returncode != 0 or not self.installed():
            raise RuntimeError(
                f"could not install {self.requirement} into {self.root} (pip exit {done.returncode}):\n"
                f"{done.stderr[-3000:]}\nremove {self.root} and run again, or unset {PEERS_ENV}"
            )
        log(f"[peers] {self.name} installed in {time.perf_counter() - t0:.0f} s")

    def version(self) -> str:
        out = subprocess.run(
            [str(self.python), "-c", f"import importlib.metadata as m; print(m.version({self.requirement!r}))"],
            env=self.environ(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        return out.stdout.strip() or "?"


def peer_envs(root: Path) -> dict[str, PeerEnv]:
    return {
        "parsl": PeerEnv("parsl", "parsl", "parsl", root / "parsl"),
        "hyperqueue": PeerEnv("hyperqueue", "hyperqueue", "hyperqueue", root / "hyperqueue"),
    }


def parse_result(stdout: str) -> dict[str, Any]:
    """The helper's result: the last stdout line that is a JSON object with a positive rate
    (peers may print banners of their own before it)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and "rate" in doc:
            value = doc["rate"]
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"helper reported an unusable rate: {line}")
            return doc
    tail = stdout.strip().splitlines()[-5:]
    raise ValueError("helper printed no JSON result line; its last output was:\n" + "\n".join(tail))


def helper_command(peer: PeerEnv, script: str, **options: object) -> list[str]:
    argv = [str(peer.python), str(HELPERS / script)]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def run_helper(peer: PeerEnv, script: str, tasks: int, workdir: Path, **options: object) -> float:
    """Run a helper in the peer's interpreter; returns its rate after checking its count."""
    argv = helper_command(peer, script, tasks=tasks, **options)
    # its own process group: a helper that hangs is ended with everything it started
    proc = subprocess.Popen(
        argv, env=peer.environ(), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=HELPER_TIMEOUT_SEC)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"{script} did not finish {tasks} tasks in {HELPER_TIMEOUT_SEC} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n{stderr[-4000:]}")
    result = parse_result(stdout)
    if result.get("tasks") != tasks:
        raise RuntimeError(f"{script} ran {result.get('tasks')} tasks, expected {tasks}")
    _log(
        f"[peers] {result.get('tool')} {result.get('version', '')} {result.get('kind')}: {tasks} tasks in "
        f"{result['seconds']:.2f} s = {result['rate']:.0f}/s "
        f"(startup and warm-up {result.get('startup_seconds', 0):.1f} s, not timed)"
    )
    return float(result["rate"])


# ----- the plain-tool floors ---------------------------------------------------------------


def xargs_rate(jobs: int, cores: int) -> float:
    """jobs/s of ``xargs -P cores -n 1 true`` over ``jobs`` input lines."""
    data = b"x\n" * jobs
    t0 = time.perf_counter()
    done = subprocess.run(["xargs", "-P", str(cores), "-n", "1", "true"], input=data, capture_output=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"xargs failed (exit {done.returncode}): {done.stderr.decode(errors='replace')}")
    return rate(jobs, elapsed)


def _noop(_item: object) -> None:
    return None


def pool_rate(jobs: int, cores: int) -> float:
    """jobs/s of a warm ``multiprocessing.Pool(cores)`` running a no-op, one item per dispatch."""
    with multiprocessing.get_context().Pool(cores) as pool:
        pool.map(_noop, range(cores * 4), chunksize=1)
        t0 = time.perf_counter()
        done = sum(1 for _ in pool.imap_unordered(_noop, range(jobs), chunksize=1))
        elapsed = time.perf_counter() - t0
    if done != jobs:
        raise RuntimeError(f"Pool ran {done} of {jobs} items")
    return rate(jobs, elapsed)


# ----- balsamd ------------------------------------------------------------------------------


def make_site(parent: Path, cores: int) -> Path:
    """A fresh local site with ``cores`` CPUs per node and the two no-op apps."""
    layout = init_site(parent / "site", name="bench")
    text = layout.settings.read_text()
    text, found = re.subn(r"(?m)^cpus_per_node = \d+", f"cpus_per_node = {cores}", text)
    if found != 1:
        raise RuntimeError(f"{layout.settings}: no cpus_per_node line to set")
    layout.settings.write_text(text)
    (layout.apps / "noop.py").write_text(command_app_source(NOOP_APP, "true"))
    (layout.apps / "pynoop.py").write_text(PY_APP_SOURCE)
    return layout.root


def balsamd_rate(ctx: Context, app: str, jobs: int, cores: int) -> float:
    """jobs/s of creating ``jobs`` jobs of ``app`` and running them with a serial launcher
    (``cores`` at a time: node_packing_count = cores) until it exits drained."""
    root = make_site(ctx.scratch("peers-site-"), cores)
    specs = [{"app": app, "workdir": f"j/{i:06d}", "node_packing_count": cores} for i in range(jobs)]
    with Site(SiteLayout(root)) as site:
        t0 = time.perf_counter()
        site.jobs.bulk_create(specs)
        summary = run_launcher(site.layout, site.settings, site.store, site.apps.sync(), JobMode.SERIAL, idle_ttl=0.0)
        elapsed = time.perf_counter() - t0
        finished = site.jobs.count(state="JOB_FINISHED")
    if summary.done != jobs or finished != jobs:
        raise RuntimeError(
            f"balsamd ran {summary.done} and finished {finished} of {jobs} {app} jobs "
            f"(errors {summary.errors}, exit: {summary.exit})"
        )
    return rate(jobs, elapsed)


# ----- the rows -----------------------------------------------------------------------------


class Peers:
    """The peer environments of this run, installed at most once per run."""

    def __init__(self, root: Path) -> None:
        self.envs = peer_envs(root)
        self._ready: set[str] = set()

    def ready(self, name: str) -> PeerEnv:
        peer = self.envs[name]
        if name not in self._ready:
            peer.ensure()
            _log(f"[peers] using {name} {peer.version()} from {peer.root}")
            self._ready.add(name)
        return peer

    def setup(self, name: str) -> Callable[[], None]:
        """A Benchmark.setup that installs the peer (untimed) before its first round."""

        def install() -> None:
            self.ready(name)

        return install


def benchmarks(ctx: Context) -> list[Benchmark]:
    if not peers_enabled():
        _log(
            f"[peers] skipped: set {PEERS_ENV}=1 to compare with Parsl and HyperQueue "
            f"(installed once from PyPI into {peers_dir()})"
        )
        return []
    return peer_benchmarks(ctx, Peers(peers_dir()), bench_cores())


def peer_benchmarks(ctx: Context, peers: Peers, cores: int) -> list[Benchmark]:
    p1 = ctx.size(P1_JOBS, quick=P1_JOBS_QUICK, minimum=cores)
    p2 = ctx.size(P2_JOBS, quick=P2_JOBS_QUICK, minimum=cores)
    p2_hq = ctx.size(P2_HQ_JOBS, quick=P2_HQ_JOBS_QUICK, minimum=cores)

    def parsl(kind: str, jobs: int) -> float:
        work = ctx.scratch("parsl-")
        return run_helper(peers.ready("parsl"), "parsl_run.py", jobs, work, kind=kind, cores=cores,
                          run_dir=work / "runinfo")  # fmt: skip

    def hyperqueue(kind: str, jobs: int) -> float:
        work = ctx.scratch("hq-")
        return run_helper(peers.ready("hyperqueue"), "hq_run.py", jobs, work, kind=kind, cores=cores,
                          server_dir=work / "server")  # fmt: skip

    floor_p1 = f"xargs -P {cores} -n 1 true"
    floor_p2 = f"multiprocessing.Pool({cores}), chunksize=1"
    column = "the balsamd column holds the peer's rate"
    return [
        Benchmark(
            name="peers.p1.parsl_bash",
            unit="jobs/s",
            description=f"{p1} `true` jobs: Parsl HTEX bash_app ({cores} workers) vs {floor_p1}; {column}",
            measure=lambda: parsl("bash", p1),
            baseline=lambda: xargs_rate(p1, cores),
            setup=peers.setup("parsl"),
        ),
        Benchmark(
            name="peers.p1.hyperqueue",
            unit="jobs/s",
            description=f"{p1} `true` jobs: HyperQueue program tasks ({cores} cores) vs {floor_p1}; {column}",
            measure=lambda: hyperqueue("program", p1),
            baseline=lambda: xargs_rate(p1, cores),
            setup=peers.setup("hyperqueue"),
        ),
        Benchmark(
            name="peers.p1.balsamd",
            unit="jobs/s",
            description=f"{p1} `true` jobs: balsamd create + serial launcher ({cores} at a time) vs {floor_p1}",
            measure=lambda: balsamd_rate(ctx, NOOP_APP, p1, cores),
            baseline=lambda: xargs_rate(p1, cores),
            goal_ratio=0.6,
        ),
        Benchmark(
            name="peers.p2.parsl_python",
            unit="jobs/s",
            description=f"{p2} no-op Python jobs: Parsl HTEX python_app vs {floor_p2}; {column}",
            measure=lambda: parsl("python", p2),
            baseline=lambda: pool_rate(p2, cores),
            setup=peers.setup("parsl"),
        ),
        Benchmark(
            name="peers.p2.hyperqueue",
            unit="jobs/s",
            description=(
                f"{p2_hq} no-op Python jobs (fewer: one new interpreter per task): HyperQueue function "
                f"tasks vs {floor_p2}; {column}"
            ),
            measure=lambda: hyperqueue("function", p2_hq),
            baseline=lambda: pool_rate(p2_hq, cores),
            setup=peers.setup("hyperqueue"),
        ),
        Benchmark(
            name="peers.p2.balsamd_vs_parsl",
            unit="jobs/s",
            description=f"{p2} no-op Python jobs: balsamd Python app (warm workers) vs Parsl HTEX python_app",
            measure=lambda: balsamd_rate(ctx, PY_APP, p2, cores),
            baseline=lambda: parsl("python", p2),
            goal_ratio=1.2,
            setup=peers.setup("parsl"),
        ),
    ]
