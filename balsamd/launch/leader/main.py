"""Wiring a launcher for a site: the one place where its collaborators are built.

The caller hands over what it has opened (the site's layout, settings, store and apps); the
launcher's own parts are made here, its forks in their window before any thread starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from balsamd.apps import usable
from balsamd.config import Settings
from balsamd.launch.forks import Forks
from balsamd.launch.leader.loop import Launcher
from balsamd.launch.leader.nodes import resolve_nodes
from balsamd.launch.leader.resources import NodeManager
from balsamd.launch.leader.source import StoreSource
from balsamd.launch.leader.storeproc import ForkedStore
from balsamd.launch.leader.summary import Summary
from balsamd.launch.running.fleet import Fleet, remote_hosts
from balsamd.launch.running.local import LocalRunner
from balsamd.launch.running.protocol import Runner
from balsamd.logs import SiteLogHandler
from balsamd.models import App, JobMode
from balsamd.modes import site_modes
from balsamd.store.contract import Store
from balsamd.store.store import SiteStore

if TYPE_CHECKING:
    from balsamd.site import SiteLayout


@contextlib.contextmanager
def log_to(path: Path, settings: Settings) -> Iterator[None]:
    """Send balsamd's log records to ``path`` (rotated by size) for the duration of the block."""
    handler = SiteLogHandler(path, settings.logging, site_modes(settings.site.group_readable).file)
    root = logging.getLogger("balsamd")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def run_launcher(
    layout: SiteLayout,
    settings: Settings,
    store: Store,
    apps: dict[str, App],
    job_mode: JobMode,
    wall_time_min: float | None = None,
    idle_ttl: float | None = None,
    filter_tags: dict[str, str] | None = None,
    nodes: list[str] | None = None,
    batch_job_id: str | None = None,
) -> Summary:
    """Run a launcher in this process until it stops, on the site laid out at ``layout``.

    ``store`` is the site's store (on its host) or the daemon's RPC; ``apps`` the site's apps
    by name: while some cannot be used (their files are broken), only jobs of the others are
    claimed, and the broken apps' jobs wait for their files to be fixed.  ``idle_ttl`` None is
    the site's setting; ``nodes`` None, the allocation's."""
    claim_apps = sorted(usable(apps)) if usable(apps) != apps else []
    apps = usable(apps)
    hosts = resolve_nodes(nodes, os.environ)
    shape = settings.nodes
    manager = NodeManager(hosts, shape.cpus_per_node, shape.gpus_per_node)
    # The zygote and the store process are forks of this process, made before any thread
    # starts and with the store's connection closed (see forks.py).
    forks = Forks()
    with forks.window(release=[store.db] if isinstance(store, SiteStore) else []):
        runner: Runner = LocalRunner(layout.root, apps, settings.launcher, use_mpi=job_mode == JobMode.MPI, forks=forks)
        # the store's work then runs beside the loop that feeds the runs, not under its GIL
        forked = ForkedStore.fork(store, forks) if isinstance(store, SiteStore) else None
    remote = remote_hosts(hosts, job_mode, settings.launcher.node_workers)
    if remote:
        runner = Fleet(runner, apps, remote, settings.launcher, layout.root)
    # on the store itself, launchers also expire dead sessions; the daemon does it otherwise
    expiry = settings.launcher.session_expiry_sec if isinstance(store, SiteStore) else None
    source = StoreSource(
        forked or store, expiry,
        label=f"{job_mode} launcher on {','.join(hosts[:4])}", batch_job_id=batch_job_id,
    )  # fmt: skip
    launcher = Launcher(
        source, manager, runner, settings.launcher, job_mode,
        wall_time_min=wall_time_min, idle_ttl=idle_ttl, filter_tags=filter_tags, claim_apps=claim_apps,
    )  # fmt: skip
    try:
        with log_to(layout.log / f"launcher-{source.session_id}.log", settings):
            return launcher.run()
    finally:
        if forked is not None:
            forked.close()
