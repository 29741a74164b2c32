"""Stage-in of many small files over rsync/ssh: the transfer service against one plain rsync.

``transfers.stage_in`` (files/s)
    Setup (untimed, once): a private sshd on 127.0.0.1 (``benchmarks/sshd.py``) and N files of
    FILE_BYTES each under a "remote" directory, one directory per run as a campaign's inputs are
    laid out (``in/<i>/in.dat``), reached as location ``dtn`` =
    ``rsync://user@127.0.0.1:PORT/remote``.  Each measurement first makes (untimed) a fresh site:
    a store with N jobs of an app with one inbound slot, job i's item naming file i, and closes
    the shared ssh connection an earlier round left, so that each round logs in anew as the
    baseline does.  It then times
    the daemon's transfer service (``daemon.transferring.Transferring``, with the
    default batch size and concurrency, stepped as the daemon steps it) until every job is past
    STAGED_IN: N files in N workdirs, every item and job recorded.  Checked: all N jobs
    PREPROCESSED and each workdir's file has its bytes.  Each round of either side then removes
    what it made (untimed), and the service's its ssh connection.

    Baseline: one ``rsync -a`` of the same tree over the same ssh into a fresh directory: the
    same files moved by hand in one process into a directory each, as the jobs need them, with
    nothing recorded.  (A flat copy of the N files into one directory is no baseline: no job can
    run there, and on some filesystems making N directories alone takes as long as that copy.)
    The goal (ratio >= 0.8) says batching works: per-file ssh logins or per-item store writes
    would be tens of times slower.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from time import perf_counter

import anyio

from balsamd.config import DaemonSettings, TransferSettings
from balsamd.daemon.main import one_at_a_time, tune_interpreter
from balsamd.daemon.transferring import Transferring
from balsamd.models import App, JobSpec, TransferSlot
from balsamd.states import JobState
from balsamd.store.queries import JobFilter
from balsamd.store.store import SiteStore
from balsamd.transfers.sshmux import control_dir, multiplex_options
from balsamd.validate import SiteRules
from benchmarks.common import Benchmark, Context, rate
from benchmarks.sshd import SshHost, private_sshd

FILE_BYTES = 1024
CREATE_CHUNK = 5000
PERIOD_S = DaemonSettings().processing_period_sec  # the daemon steps its services this often
APP = App(name="staged", command_template="true",
          transfers={"input": TransferSlot(direction="in", local_path="in.dat", required=True)})  # fmt: skip


def content(i: int) -> bytes:
    line = f"file {i:06d} ".encode()
    return (line * (FILE_BYTES // len(line) + 1))[:FILE_BYTES]


class Remote:
    """The sshd and the N files it serves, made once for every round."""

    def __init__(self, ctx: Context, files: int) -> None:
        self.ctx, self.files = ctx, files
        self.stack = contextlib.ExitStack()
        self.host: SshHost | None = None
        self.dir = Path()

    def setup(self) -> None:
        self.host = self.stack.enter_context(private_sshd(self.ctx.scratch("sshd-")))
        self.dir = self.ctx.scratch("remote-")
        for i in range(self.files):
            run = self.dir / "in" / str(i)
            run.mkdir(parents=True)
            (run / "in.dat").write_bytes(content(i))

    def teardown(self) -> None:
        self.stack.close()

    @property
    def ssh(self) -> list[str]:
        """ssh's argv without the port (a location gives it)."""
        assert self.host is not None
        argv = list(self.host.ssh_command)
        del argv[argv.index("-p") : argv.index("-p") + 2]
        return argv

    def url(self) -> str:
        assert self.host is not None
        return f"rsync://{self.host.user}@127.0.0.1:{self.host.port}{self.dir}"


def fresh_site(ctx: Context, remote: Remote) -> tuple[Path, SiteStore, TransferSettings]:
    site = ctx.scratch("site-")
    (site / "data").mkdir()
    store = SiteStore(site / "balsamd.db", SiteRules(transfer_locations={"dtn": "rsync"}))
    store.put_apps([APP])
    for start in range(0, remote.files, CREATE_CHUNK):
        store.create_jobs([JobSpec(app="staged", workdir=f"jobs/{i}", transfers={"input": f"dtn:/in/{i}/in.dat"})
                           for i in range(start, min(start + CREATE_CHUNK, remote.files))])  # fmt: skip
    return site, store, TransferSettings(locations={"dtn": remote.url()}, ssh=remote.ssh)


def settle() -> None:
    """Write out what earlier rounds and the set-up left in memory, untimed: the disk would
    otherwise write it during whichever side runs next."""
    os.sync()


def forget(directory: Path) -> None:
    """Remove what a round made, untimed: the next round, of either side, starts where this
    one did, not among the files of every round before it."""
    shutil.rmtree(directory, ignore_errors=True)


def cold_ssh(remote: Remote, site: Path) -> None:
    """End the ssh connection an earlier round left open for the site's tasks to share
    (``ssh_multiplex``, kept a minute): each round logs in anew, as the plain rsync does."""
    directory = control_dir(site)
    if directory is None or remote.host is None:
        return
    subprocess.run([*remote.ssh, *multiplex_options(directory), "-p", str(remote.host.port), "-O", "exit",
                    f"{remote.host.user}@127.0.0.1"], capture_output=True, stdin=subprocess.DEVNULL)  # fmt: skip


async def stage_all(service: Transferring, store: SiteStore) -> None:
    """Step the service as the daemon does (at once when a task frees a slot, else once a
    period) until no task runs and no job waits for its inputs."""
    freed = anyio.Event()

    def wake() -> None:
        freed.set()

    service.wake = wake
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run, stop)
        while service.task_group is None:
            await anyio.sleep(0)
        while True:
            # done once the last task's records are written; the daemon would step again
            # anyway, but that finds nothing to do and is no part of staging
            if not service.running and not store.count(JobFilter(states=[JobState.READY])):
                break
            await service.step(time.time())
            with anyio.move_on_after(PERIOD_S):
                await freed.wait()
            freed = anyio.Event()
        stop.set()


def service_rate(ctx: Context, remote: Remote) -> float:
    site, store, settings = fresh_site(ctx, remote)
    try:
        tune_interpreter()  # as the daemon's start does
        service = Transferring(store, one_at_a_time(anyio.CapacityLimiter(1)), settings, site)
        cold_ssh(remote, site)
        settle()
        start = perf_counter()
        anyio.run(stage_all, service, store)
        seconds = perf_counter() - start
        staged = store.count(JobFilter(states=[JobState.PREPROCESSED]))
        if staged != remote.files:
            raise RuntimeError(f"{staged} of {remote.files} jobs were staged in; last error: {service.last_error}")
        for i in (0, remote.files // 2, remote.files - 1):
            if (site / "data" / "jobs" / str(i) / "in.dat").read_bytes() != content(i):
                raise RuntimeError(f"job {i}'s input is not the remote file")
        return rate(remote.files, seconds)
    finally:
        store.close()
        cold_ssh(remote, site)
        forget(site)


def plain_rsync_rate(ctx: Context, remote: Remote) -> float:
    target = ctx.scratch("plain-")
    rsh = shlex.join(remote.ssh)
    assert remote.host is not None
    argv = ["rsync", "-a", "-e", f"{rsh} -p {remote.host.port}",
            f"{remote.host.user}@127.0.0.1:{remote.dir}/in/", f"{target}/"]  # fmt: skip
    settle()
    start = perf_counter()
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    seconds = perf_counter() - start
    moved = sum(1 for run in os.scandir(target) if os.path.exists(os.path.join(run.path, "in.dat")))
    forget(target)
    if moved != remote.files:
        raise RuntimeError(f"plain rsync moved {moved} of {remote.files} files")
    return rate(remote.files, seconds)


def benchmarks(ctx: Context) -> list[Benchmark]:
    files = ctx.size(10_000, quick=2000, minimum=20)
    remote = Remote(ctx, files)
    return [
        Benchmark(
            name="transfers.stage_in",
            unit="files/s",
            description=f"{files} files of {FILE_BYTES} B for {files} jobs by the transfer service (rsync/ssh) vs "
            "one plain rsync -a of them",
            measure=lambda: service_rate(ctx, remote),
            baseline=lambda: plain_rsync_rate(ctx, remote),
            goal_ratio=0.8,
            setup=remote.setup,
            teardown=remote.teardown,
        )
    ]
