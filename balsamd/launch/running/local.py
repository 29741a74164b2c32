"""Starting, watching and stopping runs on this host.

Command runs are child processes in their own process group, watched through pidfds;
single-rank Python runs go to warm workers, watched through their sockets.  ``wait`` blocks
in one selector until something starts or finishes or the timeout passes, so an event is
seen at once without polling every child.

Short Python runs may be queued behind a running one on the same worker (``follow``): they
then start without waiting for the launcher, and are handed back unstarted if it stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from balsamd.config import LauncherSettings
from balsamd.launch.forks import Forks
from balsamd.launch.python.handle import WarmWorker, worker_environment
from balsamd.launch.python.protocol import Done, PyResult, PyTask, Returned, Started
from balsamd.launch.python.zygote import Zygote
from balsamd.launch.running import commands
from balsamd.launch.running.lazyfiles import LazyFiles, LazyRun
from balsamd.launch.running.protocol import Finished, HandedBack, Placement, RunEvent, RunStarted
from balsamd.launch.running.watchdog import Watchdog
from balsamd.launch.workdirs import make_dir
from balsamd.models import App, AppKind, Job
from balsamd.results import unpack

log = logging.getLogger("balsamd.launcher")

TAIL_BYTES = 4096


@dataclass
class _ProcessRun:
    job_id: str
    popen: subprocess.Popen[bytes]
    pidfd: int
    workdir: str
    result_file: Path | None
    started: float  # monotonic
    lazy: LazyRun | None  # its files are made only if it uses them
    stopped: bool = False

    @property
    def output(self) -> str:
        return os.path.join(self.workdir, commands.OUTPUT_FILE)


def output_tail(path: str | Path, size: int = TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class LocalRunner:
    """The runner of this host: a :class:`~balsamd.launch.running.protocol.Runner`."""

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
        self.data = site_path / "data"
        self._site = str(site_path)
        self._data_prefix = f"{self.data}{os.sep}"
        self._apps_prefix = f"{site_path / 'apps'}{os.sep}"
        self.apps = apps
        self.settings = settings
        self.use_mpi = use_mpi
        self.selector = selectors.DefaultSelector()
        self.procs: dict[str, _ProcessRun] = {}
        self.workers: list[WarmWorker] = []
        self.worker_of: dict[str, WarmWorker] = {}  # every job sent to a worker and not ended
        self.watchdog = Watchdog()
        self.base_env = dict(os.environ)  # copied once, not per run
        self._worker_env = worker_environment()
        self._shared_env: dict[tuple[str, int, tuple[int, ...]], dict[str, str]] = {}  # by app, threads, GPUs
        self._events: list[RunEvent] = []  # known before wait() is called
        self.short_apps: set[str] = set()  # their runs are lazy about files (see lazyfiles, python.files)
        self.lazy = LazyFiles(str(self.data / ".workers"))
        self.zygote: Zygote | None = None
        self._zygote_failed = False
        self.forks = forks
        if any(app.kind == AppKind.PYTHON for app in apps.values()):
            self._start_zygote()  # now (in the fork window): it imports while the first claim is made
        if wakeup_fd is not None:
            self.watch(wakeup_fd)

    def watch(self, fd: int) -> None:
        """Also return from ``wait`` when ``fd`` is readable (the caller reads it)."""
        self.selector.register(fd, selectors.EVENT_READ, None)

    def unwatch(self, fd: int) -> None:
        self.selector.unregister(fd)

    def running(self) -> list[str]:
        return [*self.procs, *self.worker_of]

    def start(self, job: Job, placement: Placement) -> Finished | None:
        """Start a run; a run that cannot even start is returned as finished with the reason."""
        app = self.apps.get(job.app)
        if app is None:
            return Finished(job.id, None, f"app {job.app} is not defined on this site any more")
        try:
            if self._in_worker(job, app):
                self._start_python(job, app, placement)
            else:
                env = commands.job_environment(job, app, placement, self._site, self.settings.gpu_env)
                single = job.num_nodes == 1 and job.ranks_per_node == 1
                self._start_process(job, app, placement, env, use_mpi=self.use_mpi or not single)
        except Exception as exc:
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
        worker = self.worker_of.get(after)
        if worker is None or worker.stop_for:
            return False
        tasks = [self._task(job, self.apps[job.app], placement) for job in jobs]
        if not worker.send(tasks):
            return False
        for job in jobs:
            self.worker_of[job.id] = worker
        self._watch_writes(worker)
        return True

    def _watch_writes(self, worker: WarmWorker) -> None:
        """Wait for the worker's socket to take more only while something waits to be sent."""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.outgoing else 0)
        if self.selector.get_key(worker.sock).events != events:
            self.selector.modify(worker.sock, events, worker)

    def _task(self, job: Job, app: App, placement: Placement) -> PyTask:
        # strings, not paths: this runs for every short Python job
        cwd = self._data_prefix + job.workdir
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

    def _start_python(self, job: Job, app: App, placement: Placement) -> None:
        task = self._task(job, app, placement)
        for _ in range(2):  # an idle worker may have died unseen: then a fresh one
            worker = next((w for w in self.workers if w.idle), None) or self._spawn()
            if worker.send([task]):
                self.worker_of[job.id] = worker
                self._watch_writes(worker)
                return
            self._lose_worker(worker)
        raise RuntimeError("no Python worker would take the job")

    def _start_zygote(self) -> None:
        if self.zygote is None and not self._zygote_failed:
            self.zygote = Zygote.start(self._worker_env, self.forks)
            self.watchdog.started(self.zygote.pid)

    def _spawn(self) -> WarmWorker:
        self._start_zygote()
        try:
            worker = WarmWorker.start(self.data / ".workers", self._worker_env, self.zygote)
        except OSError as exc:
            if self.zygote is None:
                raise
            log.warning("the worker zygote failed (%s); starting workers as new interpreters", exc)
            self._stop_zygote()
            self._zygote_failed = True
            worker = WarmWorker.start(self.data / ".workers", self._worker_env, None)
        self.workers.append(worker)
        self.watchdog.started(worker.pid)
        self.selector.register(worker.sock, selectors.EVENT_READ, worker)
        return worker

    def _start_process(self, job: Job, app: App, placement: Placement, env: dict[str, str], use_mpi: bool) -> None:
        workdir = self._data_prefix + job.workdir
        # a short command run on this host makes its files only if it uses them; an MPI launch
        # may start its ranks elsewhere, and Python ranks talk through files in the workdir
        lazy = None
        if app.kind == AppKind.COMMAND and not use_mpi and job.app in self.short_apps:
            lazy = self.lazy.begin(workdir)
        else:
            make_dir(workdir)
        output = os.path.join(workdir, commands.OUTPUT_FILE)
        result_file = None
        if app.kind == AppKind.PYTHON:
            task = PyTask(
                job=job, source=self._apps_prefix + app.source, class_name=app.class_name,
                cwd=workdir, output=output, env=env,
            )  # fmt: skip
            (Path(workdir) / commands.PY_TASK_FILE).write_bytes(msgspec.msgpack.encode(task))
            result_file = Path(workdir) / commands.PY_RESULT_FILE
            result_file.unlink(missing_ok=True)
        argv = commands.run_argv(app, job, placement, self.settings, use_mpi, env)
        started, t0 = time.time(), time.monotonic()
        out = lazy.spill_fd if lazy is not None else os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            popen = subprocess.Popen(
                argv, cwd=workdir if lazy is None else lazy.cwd, env={**self.base_env, **env},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except BaseException:
            if lazy is not None:
                self.lazy.end(lazy, workdir, output)  # unused: kept for the next run
            raise
        finally:
            if lazy is None:
                os.close(out)
        self.watchdog.started(popen.pid)
        pidfd = os.pidfd_open(popen.pid)
        self.procs[job.id] = _ProcessRun(job.id, popen, pidfd, workdir, result_file, t0, lazy)
        self.selector.register(pidfd, selectors.EVENT_READ, job.id)
        self._events.append(RunStarted(job.id, started))

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
                if mask & selectors.EVENT_WRITE:
                    data.push()
                    self._watch_writes(data)
                if mask & selectors.EVENT_READ:
                    events.extend(self._worker_events(data))
            else:
                self.selector.unregister(key.fileobj)
                events.append(self._reap_process(self.procs.pop(data)))
        return events

    def _reap_process(self, run: _ProcessRun) -> Finished:
        code = run.popen.wait()
        elapsed = time.monotonic() - run.started
        self.watchdog.ended(run.popen.pid)
        os.close(run.pidfd)
        wrote = self.lazy.end(run.lazy, run.workdir, run.output) if run.lazy is not None else True
        result = None
        if run.result_file is not None and run.result_file.exists():
            result = msgspec.msgpack.decode(run.result_file.read_bytes(), type=PyResult).result
        reason = "" if code == 0 or not wrote else output_tail(run.output)
        return Finished(run.job_id, code, reason, result, run.stopped, elapsed=elapsed)

    def _worker_events(self, worker: WarmWorker) -> list[RunEvent]:
        reports = worker.read()
        if reports is None:
            return self._lose_worker(worker)
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
        return events

    def _lose_worker(self, worker: WarmWorker) -> list[RunEvent]:
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
        """Send ``sig`` to the runs' process groups (a Python run's is its worker's); jobs
        queued on a worker and not started are handed back instead."""
        queued: set[WarmWorker] = set()
        for job_id in job_ids:
            if job_id in self.procs:
                run = self.procs[job_id]
                run.stopped = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.popen.pid, sig)
            elif (worker := self.worker_of.get(job_id)) is not None:
                if job_id == worker.current:
                    worker.stop_for.add(job_id)
                    worker.signal(sig)
                else:
                    queued.add(worker)
        for worker in queued:
            worker.drop_queued()
            self._watch_writes(worker)

    def close(self) -> None:
        self.signal(self.running(), signal.SIGKILL)
        for job_id in list(self.procs):
            run = self.procs.pop(job_id)
            run.popen.wait()
            os.close(run.pidfd)
            if run.lazy is not None:
                self.lazy.end(run.lazy, run.workdir, run.output)
        self.lazy.close()
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        self.worker_of.clear()
        self._stop_zygote()
        self.selector.close()
        self.watchdog.close()

    def _stop_zygote(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.watchdog.ended(self.zygote.pid)
            self.zygote = None


def _traceback_tail(blob: bytes) -> str:
    _kind, value, text = unpack(blob)
    return text[-TAIL_BYTES:] if text else f"{type(value).__name__}: {value}"
