"""Single-rank Python runs on warm workers: which worker holds which job, and what happened.

A job goes to an idle worker (a new one forked by the zygote when none is idle); short runs
may be queued behind a running one on its worker (``follow``), to start without waiting for
the launcher.  Each worker's socket is registered in the local runner's selector; its reports
become the runner's events, and a worker that dies accounts for what it held: the run it had
started ends, the jobs it never started are handed back.
"""

from __future__ import annotations

import logging
import os
import selectors
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

from balsamd.config import LauncherSettings
from balsamd.launch.forks import Forks
from balsamd.launch.python import protocol as pp
from balsamd.launch.python.handle import WarmWorker, worker_environment
from balsamd.launch.python.protocol import Done, PyTask, Returned, Started
from balsamd.launch.python.zygote import Zygote
from balsamd.launch.running import commands
from balsamd.launch.running.protocol import Finished, HandedBack, NoSpace, Placement, RunEvent, RunStarted
from balsamd.launch.running.watchdog import Watchdog
from balsamd.launch.workdirs import WorkdirOutside, job_workdir
from balsamd.models import App, Job
from balsamd.results import error_text
from balsamd.store.errors import DiskFull

log = logging.getLogger("balsamd.launcher")

TAIL_BYTES = 4096


class WarmWorkers:
    def __init__(
        self,
        selector: selectors.BaseSelector,
        watchdog: Watchdog,
        settings: LauncherSettings,
        site_path: Path,
        apps: Mapping[str, App],
        short_apps: AbstractSet[str],
        forks: Forks | None,
    ) -> None:
        """``apps`` and ``short_apps`` are the local runner's, read as they change."""
        self.selector = selector
        self.watchdog = watchdog
        self.settings = settings
        self.apps = apps
        self.short_apps = short_apps  # their runs are lazy about files (see python/files.py)
        self.forks = forks  # the zygote is a fork of the launcher only inside their window
        self._site = str(site_path)
        self._data_prefix = f"{site_path / 'data'}{os.sep}"
        self._apps_prefix = f"{site_path / 'apps'}{os.sep}"
        self._spill_dir = site_path / "data" / ".workers"
        self._env = worker_environment()
        self._shared_env: dict[tuple[str, int, tuple[int, ...]], dict[str, str]] = {}  # by app, threads, GPUs
        self.workers: list[WarmWorker] = []
        self.worker_of: dict[str, WarmWorker] = {}  # every job sent to a worker and not ended
        self.zygote: Zygote | None = None
        self._zygote_failed = False

    def __contains__(self, job_id: str) -> bool:
        return job_id in self.worker_of

    def start_zygote(self) -> None:
        """Start the zygote now (it imports while the first claim is made), unless it runs or
        failed already."""
        if self.zygote is None and not self._zygote_failed:
            self.zygote = Zygote.start(self._env, self.forks)
            self.watchdog.started(self.zygote.pid)

    def start(self, job: Job, app: App, placement: Placement) -> None:
        """Send ``job`` (of ``app``) to an idle worker."""
        task = self._task(job, app, placement)
        for _ in range(2):  # an idle worker may have died unseen: then a fresh one
            worker = next((w for w in self.workers if w.idle), None) or self._spawn()
            if worker.send([task]):
                self.worker_of[job.id] = worker
                self._watch_writes(worker)
                return
            self.lose(worker)
        raise RuntimeError("no Python worker would take the job")

    def follow(self, after: str, jobs: list[Job], placement: Placement) -> bool:
        """Queue ``jobs`` behind ``after`` on the worker that holds it, to run in turn with its
        placement.  False when that worker cannot take them."""
        worker = self.worker_of.get(after)
        if worker is None or worker.stop_for:
            return False
        try:
            tasks = [self._task(job, self.apps[job.app], placement) for job in jobs]
        except WorkdirOutside:
            return False  # each starts on its own instead, where such a workdir fails only its job
        if not worker.send(tasks):
            return False
        for job in jobs:
            self.worker_of[job.id] = worker
        self._watch_writes(worker)
        return True

    def _task(self, job: Job, app: App, placement: Placement) -> PyTask:
        # strings, not paths: this runs for every short Python job
        cwd = job_workdir(self._data_prefix, job)
        gpus = placement.gpu_ids.get(placement.hosts[0])
        key = (app.name, job.threads_per_rank, tuple(gpus) if gpus else ())
        shared = self._shared_env.get(key)
        if shared is None:
            shared = self._shared_env[key] = commands.shared_environment(
                app, job.threads_per_rank, gpus or [], self._site, self.settings.gpu_env
            )
        env = commands.with_job_variables(shared, job)
        return PyTask(
            job=job, source=self._apps_prefix + app.source, class_name=app.class_name,
            cwd=cwd, output=f"{cwd}{os.sep}{commands.OUTPUT_FILE}", env=env, lazy=job.app in self.short_apps,
        )  # fmt: skip

    def _watch_writes(self, worker: WarmWorker) -> None:
        """Wait for the worker's socket to take more only while something waits to be sent."""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.outgoing else 0)
        if self.selector.get_key(worker.sock).events != events:
            self.selector.modify(worker.sock, events, worker)

    def _spawn(self) -> WarmWorker:
        self.start_zygote()
        try:
            worker = WarmWorker.start(self._spill_dir, self._env, self.zygote)
        except OSError as exc:
            if self.zygote is None:
                raise
            log.warning("the worker zygote failed (%s); starting workers as new interpreters", exc)
            self._stop_zygote()
            self._zygote_failed = True
            worker = WarmWorker.start(self._spill_dir, self._env, None)
        self.workers.append(worker)
        self.watchdog.started(worker.pid)
        self.selector.register(worker.sock, selectors.EVENT_READ, worker)
        return worker

    def ready(self, worker: WarmWorker, mask: int) -> list[RunEvent]:
        """The worker's socket is ready (``mask``): send what waits, read what it reported."""
        if mask & selectors.EVENT_WRITE:
            worker.push()
            self._watch_writes(worker)
        if not mask & selectors.EVENT_READ:
            return []
        reports = worker.read()
        if reports is None:
            return self.lose(worker)
        events: list[RunEvent] = []
        for report in reports:
            if isinstance(report, Started):
                events.append(RunStarted(report.job_id, report.ts))
            elif isinstance(report, Done):
                self.worker_of.pop(report.job_id, None)
                code, reason = (0, "") if report.ok else (1, _traceback_tail(report.result))
                # a short run's start comes with its end: it started elapsed before it ended
                ended = Finished(report.job_id, code, reason, report.result, elapsed=report.elapsed)
                ended.started_at = report.ts - report.elapsed
                events.append(ended)
            elif isinstance(report, Returned):
                for job_id in report.job_ids:
                    self.worker_of.pop(job_id, None)
                    events.append(HandedBack(job_id))
            elif isinstance(report, pp.NoSpace):
                for job_id in report.job_ids:
                    self.worker_of.pop(job_id, None)
                events.append(NoSpace(report.job_ids, str(DiskFull(report.path))))
        return events

    def lose(self, worker: WarmWorker) -> list[RunEvent]:
        """A worker that went away: the run it started ended with it, the rest go back."""
        self.selector.unregister(worker.sock)
        self.workers.remove(worker)
        self.watchdog.ended(worker.pid)
        how = worker.stop()
        held = list(worker.queue)
        for job_id in held:
            self.worker_of.pop(job_id, None)
        events: list[RunEvent] = []
        if worker.current is not None:
            job_id = held.pop(0)
            if job_id in worker.stop_for:
                events.append(Finished(job_id, None, f"stopped ({how})", stopped=True))
            elif worker.stop_for:
                why = "its worker was stopped to stop the run before it"
                events.append(Finished(job_id, None, why, stopped=True, lost=True))
            else:
                why = f"the Python worker running this job died ({how})"
                events.append(Finished(job_id, None, why, stopped=True))
        elif held and not worker.stop_for:
            # a worker that dies before its first run would die again for the next: not retried
            job_id = held.pop(0)
            events.append(Finished(job_id, None, f"the Python worker exited before running this job ({how})"))
        events.extend(HandedBack(job_id) for job_id in held)
        return events

    def signal(self, job_ids: list[str], sig: int) -> None:
        """Send ``sig`` to the workers running these jobs (a Python run's process group is its
        worker's); jobs queued on a worker and not started are handed back instead."""
        queued: set[WarmWorker] = set()
        for job_id in job_ids:
            worker = self.worker_of.get(job_id)
            if worker is None:
                continue
            if job_id == worker.current:
                worker.stop_for.add(job_id)
                worker.signal(sig)
            else:
                queued.add(worker)
        for worker in queued:
            worker.drop_queued()
            self._watch_writes(worker)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        self.worker_of.clear()
        self._stop_zygote()

    def _stop_zygote(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.watchdog.ended(self.zygote.pid)
            self.zygote = None


def _traceback_tail(blob: bytes) -> str:
    return error_text(blob)[-TAIL_BYTES:]
