"""Starting, watching and stopping runs on this host.

Command runs are child processes in their own process group, watched through pidfds;
single-rank Python runs go to warm workers, watched through their sockets.  ``wait`` blocks
in one selector until something starts or finishes or the timeout passes, so an event is
seen at once without polling every child.

Short Python runs may be queued behind a running one on the same worker (``follow``): they
then start without waiting for the launcher, and are handed back unstarted if it stops.
"""

from __future__ import annotations

import logging
import selectors
import signal
import time
from pathlib import Path

from balsamd.config import LauncherSettings
from balsamd.diskspace import is_full
from balsamd.launch.forks import Forks
from balsamd.launch.python.handle import WarmWorker
from balsamd.launch.running import commands
from balsamd.launch.running.processes import ProcessRuns
from balsamd.launch.running.protocol import Finished, NoSpace, Placement, RunEvent
from balsamd.launch.running.watchdog import Watchdog
from balsamd.launch.running.workers import WarmWorkers
from balsamd.models import App, AppKind, Job
from balsamd.store.errors import DiskFull

log = logging.getLogger("balsamd.launcher")


class LocalRunner:
    """The runner of this host: a :class:`~balsamd.launch.running.protocol.Runner`.

    Runs that are processes are ``processes``'; single-rank Python runs are ``python``'s, on
    warm workers.  Both register in one selector, which ``wait`` blocks on."""

    def __init__(
        self,
        site_path: Path,
        apps: dict[str, App],
        settings: LauncherSettings,
        use_mpi: bool,
        wakeup_fd: int | None = None,
        forks: Forks | None = None,
    ) -> None:
        """``forks``: the launcher's fork window, in which the zygote may be a fork of it (else
        it is a new interpreter)."""
        self.site_path = site_path
        self._site = str(site_path)
        self.apps = apps
        self.settings = settings
        self.use_mpi = use_mpi
        self.selector = selectors.DefaultSelector()
        self.watchdog = Watchdog()
        self.short_apps: set[str] = set()  # their runs are lazy about files (see lazyfiles, python/files)
        self.processes = ProcessRuns(self.selector, self.watchdog, settings, site_path, self.short_apps)
        self.python = WarmWorkers(self.selector, self.watchdog, settings, site_path, apps, self.short_apps, forks)
        self._events: list[RunEvent] = []  # known before wait() is called
        if any(app.kind == AppKind.PYTHON for app in apps.values()):
            self.python.start_zygote()  # now (in the fork window): it imports while the first claim is made
        if wakeup_fd is not None:
            self.watch(wakeup_fd)

    def watch(self, fd: int) -> None:
        """Also return from ``wait`` when ``fd`` is readable (the caller reads it)."""
        self.selector.register(fd, selectors.EVENT_READ, None)

    def unwatch(self, fd: int) -> None:
        self.selector.unregister(fd)

    def running(self) -> list[str]:
        return [*self.processes.procs, *self.python.worker_of]

    def start(self, job: Job, placement: Placement) -> Finished | NoSpace | None:
        """Start a run; a run that cannot even start is returned as finished with the reason,
        one whose files find no space as NoSpace."""
        app = self.apps.get(job.app)
        if app is None:
            return Finished(job.id, None, f"app {job.app} is not defined on this site any more")
        try:
            if self._in_worker(job, app):
                self.python.start(job, app, placement)
            else:
                env = commands.job_environment(job, app, placement, self._site, self.settings.gpu_env)
                single = job.num_nodes == 1 and job.ranks_per_node == 1
                self._events.append(self.processes.start(job, app, placement, env, self.use_mpi or not single))
        except Exception as exc:
            if is_full(exc):
                return NoSpace([job.id], str(DiskFull(getattr(exc, "filename", None) or self.site_path / "data")))
            return Finished(job.id, None, f"could not start: {type(exc).__name__}: {exc}")
        return None

    @staticmethod
    def _in_worker(job: Job, app: App) -> bool:
        return app.kind == AppKind.PYTHON and job.num_nodes == 1 and job.ranks_per_node == 1

    def short_apps_changed(self, app: str, short: bool) -> None:
        if short:
            self.short_apps.add(app)
        else:
            self.short_apps.discard(app)

    def can_follow(self, job: Job) -> bool:
        """Whether ``job`` may wait in a worker's queue (a single-rank Python run)."""
        app = self.apps.get(job.app)
        return app is not None and self._in_worker(job, app)

    def follow(self, after: str, jobs: list[Job], placement: Placement) -> bool:
        """Queue ``jobs`` (``can_follow`` ones) behind ``after`` on the worker that holds it, to run
        in turn with its placement.  False when that worker cannot take them."""
        return self.python.follow(after, jobs, placement)

    def wait(self, timeout: float) -> list[RunEvent]:
        """Runs that started, ended or were handed back since the last call, waiting at most
        ``timeout`` seconds for the first."""
        events, self._events = self._events, []
        self.watchdog.flush()
        if events:
            timeout = 0.0
        if not self.selector.get_map():
            time.sleep(max(0.0, timeout))
            return events
        for key, mask in self.selector.select(timeout=max(0.0, timeout)):
            data = key.data
            if data is None:
                continue
            if isinstance(data, WarmWorker):
                events.extend(self.python.ready(data, mask))
            else:
                events.append(self.processes.reap(data))
        return events

    def signal(self, job_ids: list[str], sig: int) -> None:
        """Send ``sig`` to the runs' process groups (a Python run's is its worker's); jobs
        queued on a worker and not started are handed back instead."""
        processes = self.processes
        on_workers = []
        for job_id in job_ids:
            if job_id in processes:
                processes.signal(job_id, sig)
            else:
                on_workers.append(job_id)
        if on_workers:
            self.python.signal(on_workers, sig)

    def close(self) -> None:
        self.signal(self.running(), signal.SIGKILL)
        self.processes.close()
        self.python.close()
        self.selector.close()
        self.watchdog.close()
