"""The leader's view of serial-mode node workers: runs on this host locally, others remotely.

``Fleet`` is a :class:`~balsamd.launch.running.protocol.Runner` wrapping another (the local
runner), so the launcher loop does not care where a run happens.  Each remote node is one
worker process started through the site's MPI launcher; its reports arrive on a pipe watched
by the local runner's ``wait``, so one ``wait`` sees local and remote completions alike.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from balsamd.config import LauncherSettings
from balsamd.launch.running import nodeproto as nw
from balsamd.launch.running.commands import package_root
from balsamd.launch.running.mpi import build_mpi_command
from balsamd.launch.running.protocol import Finished, HostLost, NoSpace, Placement, RunEvent, Runner, RunStarted
from balsamd.models import App, Job, JobMode

log = logging.getLogger("balsamd.launcher")


def is_local(host: str, this_host: str | None = None) -> bool:
    """A host this process can run on directly: itself, a loopback address, or a posed name
    that no resolver knows (how a workstation poses as several nodes)."""
    this_host = this_host or socket.gethostname()
    if host in ("localhost", this_host) or host.split(".")[0] == this_host.split(".")[0]:
        return True
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return True
    return ipaddress.ip_address(address).is_loopback


def remote_hosts(hosts: list[str], job_mode: JobMode, policy: str) -> list[str]:
    """Nodes that get a node worker: only serial mode runs processes on other nodes itself
    (mpi mode reaches them through each job's MPI launch)."""
    if job_mode != JobMode.SERIAL or policy == "none":
        return []
    return [h for h in hosts if policy == "all" or not is_local(h)]


def worker_argv(settings: LauncherSettings, host: str, site_path: Path) -> list[str]:
    return build_mpi_command(
        settings.mpi,
        app_argv=[sys.executable, "-m", "balsamd.launch.running.nodeworker", str(site_path)],
        hosts=[host],
        ranks_per_node=1,
        threads_per_rank=1,
        threads_per_core=1,
        gpus_per_rank=0.0,
        env={"PYTHONPATH": package_root()},
        executable=settings.mpiexec,
    )


class RemoteNode:
    """One node worker: its process, its pipe, the runs it holds."""

    def __init__(self, host: str, argv: list[str]) -> None:
        self.host = host
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        assert self.process.stdin is not None and self.process.stdout is not None  # both are pipes
        self.stdin = self.process.stdin
        self.reader = nw.LineReader(self.process.stdout.fileno())
        self.jobs: set[str] = set()
        self.alive = True

    def send(self, message: nw.Command) -> bool:
        try:
            self.stdin.write(nw.to_line(message))
            self.stdin.flush()
        except (BrokenPipeError, OSError):
            self.alive = False
        return self.alive

    def close(self) -> None:
        self.send(nw.Shutdown())
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Fleet:
    """Runs placed on a remote node go to its worker; the others to ``local``."""

    def __init__(
        self, local: Runner, apps: dict[str, App], remote_hosts: list[str], settings: LauncherSettings, site_path: Path
    ) -> None:
        self.local = local
        self.apps = apps
        self.remotes: dict[str, RemoteNode] = {}
        for host in remote_hosts:
            node = RemoteNode(host, worker_argv(settings, host, site_path))
            self.remotes[host] = node
            local.watch(node.reader.fd)
        self.where: dict[str, RemoteNode] = {}
        self._started: list[RunEvent] = []

    def watch(self, fd: int) -> None:
        self.local.watch(fd)

    def unwatch(self, fd: int) -> None:
        self.local.unwatch(fd)

    def running(self) -> list[str]:
        return [*self.local.running(), *self.where]

    def start(self, job: Job, placement: Placement) -> Finished | NoSpace | None:
        node = self.remotes.get(placement.hosts[0])
        if node is None:
            return self.local.start(job, placement)
        app = self.apps.get(job.app)
        if app is None:
            return Finished(job.id, None, f"app {job.app} is not defined on this site any more")
        message = nw.StartRun(
            job=job, app=app, hosts=placement.hosts, gpu_ids=placement.gpu_ids,
            cpus=placement.cpus, occupancy=placement.occupancy,
        )  # fmt: skip
        if not node.send(message):
            return Finished(job.id, None, f"the worker on node {node.host} is gone", lost=True)
        node.jobs.add(job.id)
        self.where[job.id] = node
        self._started.append(RunStarted(job.id, time.time()))
        return None

    def short_apps_changed(self, app: str, short: bool) -> None:
        self.local.short_apps_changed(app, short)

    def can_follow(self, job: Job) -> bool:
        return self.local.can_follow(job)

    def follow(self, after: str, jobs: list[Job], placement: Placement) -> bool:
        """Only local runs have workers to queue jobs on."""
        return after not in self.where and self.local.follow(after, jobs, placement)

    def wait(self, timeout: float) -> list[RunEvent]:
        done, self._started = self._started, []
        done.extend(self.local.wait(0.0 if done else timeout))
        for node in self.remotes.values():
            if not node.alive:
                continue
            for line in node.reader.lines():
                try:
                    msg = nw.report_from_line(line)
                except (ValueError, msgspec.DecodeError) as exc:
                    log.warning("unreadable message from node %s: %s", node.host, exc)
                    continue
                if msg is None:
                    log.info("node %s: %s", node.host, line.decode(errors="replace").rstrip())
                elif isinstance(msg, nw.RunFinished):
                    node.jobs.discard(msg.job_id)
                    self.where.pop(msg.job_id, None)
                    if msg.no_space:
                        done.append(NoSpace([msg.job_id], msg.reason))
                    else:
                        done.append(Finished(msg.job_id, msg.return_code, msg.reason, msg.result, msg.stopped))
                else:
                    log.info("node worker ready on %s (pid %d)", msg.host, msg.pid)
            if node.reader.eof:
                done.extend(self._lose(node))
        return done

    def _lose(self, node: RemoteNode) -> list[RunEvent]:
        """A worker that went away takes its node and its runs with it: they are reported lost."""
        node.alive = False
        node.process.poll()
        self.local.unwatch(node.reader.fd)
        log.error("the worker on node %s exited; %d run(s) there are lost", node.host, len(node.jobs))
        lost: list[RunEvent] = [HostLost(node.host)]
        lost += [Finished(j, None, f"the worker on node {node.host} exited", lost=True) for j in node.jobs]
        for job_id in node.jobs:
            self.where.pop(job_id, None)
        node.jobs.clear()
        return lost

    def signal(self, job_ids: list[str], sig: int) -> None:
        local: list[str] = []
        by_node: dict[str, list[str]] = {}
        for job_id in job_ids:
            node = self.where.get(job_id)
            if node is None:
                local.append(job_id)
            else:
                by_node.setdefault(node.host, []).append(job_id)
        self.local.signal(local, sig)
        for host, ids in by_node.items():
            self.remotes[host].send(nw.SignalRuns(ids, sig))

    def close(self) -> None:
        for node in self.remotes.values():
            node.close()
        self.local.close()
