"""Starting, watching and stopping runs on this host.

Command runs are child processes in their own process group, watched through pidfds;
single-rank Python runs go to warm workers, watched through their pipes.  ``wait`` blocks
in one selector until something finishes or the timeout passes, so a finished run is seen
at once without polling every child.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from balsamd.config import LauncherSettings
from balsamd.launch import commands
from balsamd.launch.pyworker import PyResult, PyTask, PythonWorker, WorkerPool
from balsamd.launch.resources import Placement
from balsamd.launch.watchdog import Watchdog
from balsamd.models import App, AppKind, Job
from balsamd.results import unpack

TAIL_BYTES = 4096
_job_encode = msgspec.msgpack.Encoder().encode


@dataclass
class Finished:
    """The end of one run, as the launcher reports it."""

    job_id: str
    return_code: int | None
    reason: str = ""
    result: bytes | None = None
    stopped: bool = False  # ended by the launcher (time out or kill), not by itself
    lost: bool = False  # its node or worker went away: the run's fate is unknown


@dataclass
class _ProcessRun:
    job_id: str
    popen: subprocess.Popen[bytes]
    pidfd: int
    output: Path
    result_file: Path | None
    stopped: bool = False


def output_tail(path: Path, size: int = TAIL_BYTES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class Runner:
    def __init__(
        self,
        site_path: Path,
        apps: dict[str, App],
        settings: LauncherSettings,
        use_mpi: bool,
        wakeup_fd: int | None = None,
    ) -> None:
        self.site_path = site_path
        self.data = site_path / "data"
        self.apps = apps
        self.settings = settings
        self.use_mpi = use_mpi
        self.selector = selectors.DefaultSelector()
        self.procs: dict[str, _ProcessRun] = {}
        self.workers: dict[str, PythonWorker] = {}
        self.pool = WorkerPool()
        self.watchdog = Watchdog()
        self.base_env = dict(os.environ)  # copied once, not per run
        if wakeup_fd is not None:
            self.watch(wakeup_fd)

    def watch(self, fd: int) -> None:
        """Also return from ``wait`` when ``fd`` is readable (the caller reads it)."""
        self.selector.register(fd, selectors.EVENT_READ, None)

    def unwatch(self, fd: int) -> None:
        self.selector.unregister(fd)

    def running(self) -> list[str]:
        return [*self.procs, *self.workers]

    def start(self, job: Job, placement: Placement) -> Finished | None:
        """Start a run; a run that cannot even start is returned as finished with the reason."""
        app = self.apps.get(job.app)
        if app is None:
            return Finished(job.id, None, f"app {job.app} is not defined on this site any more")
        workdir = self.data / job.workdir
        try:
            env = commands.job_environment(job, app, placement, str(self.site_path), self.settings.gpu_env)
            output = workdir / commands.OUTPUT_FILE
            single = job.num_nodes == 1 and job.ranks_per_node == 1
            if app.kind == AppKind.PYTHON and single:
                self._start_python(job, app, workdir, output, env)  # the worker makes the workdir
            else:
                workdir.mkdir(parents=True, exist_ok=True)
                self._start_process(job, app, placement, workdir, output, env, use_mpi=self.use_mpi or not single)
        except Exception as exc:
            return Finished(job.id, None, f"could not start: {type(exc).__name__}: {exc}")
        return None

    def _task(self, job: Job, app: App, workdir: Path, output: Path, env: dict[str, str]) -> PyTask:
        return PyTask(
            job=_job_encode(job), source=str(self.site_path / "apps" / app.source),
            class_name=app.class_name, cwd=str(workdir), output=str(output), env=env,
        )  # fmt: skip

    def _start_python(self, job: Job, app: App, workdir: Path, output: Path, env: dict[str, str]) -> None:
        worker = self.pool.take()
        self.watchdog.started(worker.process.pid)
        worker.submit(self._task(job, app, workdir, output, env), job.id)
        self.workers[job.id] = worker
        self.selector.register(worker.conn, selectors.EVENT_READ, job.id)

    def _start_process(
        self, job: Job, app: App, placement: Placement, workdir: Path, output: Path,
        env: dict[str, str], use_mpi: bool,
    ) -> None:  # fmt: skip
        result_file = None
        if app.kind == AppKind.PYTHON:
            task = self._task(job, app, workdir, output, env)
            (workdir / commands.PY_TASK_FILE).write_bytes(msgspec.msgpack.encode(task))
            result_file = workdir / commands.PY_RESULT_FILE
            result_file.unlink(missing_ok=True)
        argv = commands.run_argv(app, job, placement, self.settings, use_mpi, env)
        with output.open("wb") as out:
            popen = subprocess.Popen(
                argv, cwd=workdir, env={**self.base_env, **env}, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.watchdog.started(popen.pid)
        pidfd = os.pidfd_open(popen.pid)
        self.procs[job.id] = _ProcessRun(job.id, popen, pidfd, output, result_file)
        self.selector.register(pidfd, selectors.EVENT_READ, job.id)

    def wait(self, timeout: float) -> list[Finished]:
        self.watchdog.flush()
        if not self.selector.get_map():
            time.sleep(max(0.0, timeout))
            return []
        done = []
        for key, _ in self.selector.select(timeout=max(0.0, timeout)):
            job_id = key.data
            if job_id is None:
                continue
            self.selector.unregister(key.fileobj)
            if job_id in self.procs:
                done.append(self._reap_process(self.procs.pop(job_id)))
            else:
                done.append(self._reap_worker(job_id, self.workers.pop(job_id)))
        return done

    def _reap_process(self, run: _ProcessRun) -> Finished:
        code = run.popen.wait()
        self.watchdog.ended(run.popen.pid)
        os.close(run.pidfd)
        result = None
        if run.result_file is not None and run.result_file.exists():
            result = msgspec.msgpack.decode(run.result_file.read_bytes(), type=PyResult).result
        reason = "" if code == 0 else output_tail(run.output)
        return Finished(run.job_id, code, reason, result, run.stopped)

    def _reap_worker(self, job_id: str, worker: PythonWorker) -> Finished:
        outcome = worker.receive()
        self.watchdog.ended(worker.process.pid)
        if outcome is None:
            worker.stop()
            return Finished(job_id, None, "the Python worker running this job died", stopped=True)
        self.pool.give_back(worker)
        if outcome.ok:
            return Finished(job_id, 0, "", outcome.result)
        return Finished(job_id, 1, _traceback_tail(outcome.result), outcome.result)

    def signal(self, job_ids: list[str], sig: int) -> None:
        """Send ``sig`` to the runs' process groups (Python workers included)."""
        for job_id in job_ids:
            if job_id in self.procs:
                run = self.procs[job_id]
                run.stopped = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.popen.pid, sig)
            elif job_id in self.workers:
                self.workers[job_id].signal(sig)

    def close(self) -> None:
        self.signal(self.running(), signal.SIGKILL)
        for job_id in list(self.procs):
            run = self.procs.pop(job_id)
            run.popen.wait()
            os.close(run.pidfd)
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()
        self.pool.close()
        self.selector.close()
        self.watchdog.close()


def _traceback_tail(blob: bytes) -> str:
    _kind, value, text = unpack(blob)
    return text[-TAIL_BYTES:] if text else f"{type(value).__name__}: {value}"
