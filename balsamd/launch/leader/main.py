"""Wiring a launcher for a site: the one place where its collaborators are built."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from balsamd.api import Site
from balsamd.launch.forks import Forks
from balsamd.launch.leader.loop import Launcher, Summary
from balsamd.launch.leader.nodes import resolve_nodes
from balsamd.launch.leader.resources import NodeManager
from balsamd.launch.leader.source import StoreSource
from balsamd.launch.leader.storeproc import ForkedStore
from balsamd.launch.running.fleet import Fleet, remote_hosts
from balsamd.launch.running.local import LocalRunner
from balsamd.launch.running.protocol import Runner
from balsamd.models import JobMode
from balsamd.store.store import SiteStore


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Send balsamd's log records to ``path`` for the duration of the block."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("balsamd")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def run_launcher(
    site: Site,
    job_mode: JobMode,
    wall_time_min: float | None = None,
    idle_ttl: float | None = None,
    filter_tags: dict[str, str] | None = None,
    nodes: list[str] | None = None,
    batch_job_id: str | None = None,
) -> Summary:
    hosts = resolve_nodes(nodes, os.environ)
    shape = site.settings.nodes
    manager = NodeManager(hosts, shape.cpus_per_node, shape.gpus_per_node)
    apps = site.apps.sync()
    # The zygote and the store process are forks of this process, made before any thread
    # starts and with the store's connection closed (see forks.py).
    forks = Forks()
    with forks.window(release=[site.store.db] if isinstance(site.store, SiteStore) else []):
        runner: Runner = LocalRunner(
            site.path, apps, site.settings.launcher, use_mpi=job_mode == JobMode.MPI, forks=forks
        )
        # the store's work then runs beside the loop that feeds the runs, not under its GIL
        forked = ForkedStore.fork(site.store, forks) if isinstance(site.store, SiteStore) else None
    remote = remote_hosts(hosts, job_mode, site.settings.launcher.node_workers)
    if remote:
        runner = Fleet(runner, apps, remote, site.settings.launcher, site.path)
    # on the store itself, launchers also expire dead sessions; the daemon does it otherwise
    expiry = site.settings.launcher.session_expiry_sec if isinstance(site.store, SiteStore) else None
    source = StoreSource(
        forked or site.store, expiry,
        label=f"{job_mode} launcher on {','.join(hosts[:4])}", batch_job_id=batch_job_id,
    )  # fmt: skip
    launcher = Launcher(
        source, manager, runner, site.settings.launcher, job_mode,
        wall_time_min=wall_time_min, idle_ttl=idle_ttl, filter_tags=filter_tags,
    )  # fmt: skip
    try:
        with log_to(site.layout.log / f"launcher-{source.session_id}.log"):
            return launcher.run()
    finally:
        if forked is not None:
            forked.close()
