"""Runs that are child processes of the launcher: commands, MPI launches, multi-rank Python apps.

Each run is a process in its own process group (so it can be signalled as a whole, and the
watchdog kills it if the launcher dies), watched through a pidfd registered in the local
runner's selector.  Short command runs are lazy about their files (``lazyfiles.py``).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import subprocess
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import msgspec

from balsamd.apps import job_preamble
from balsamd.config import LauncherSettings
from balsamd.launch.python.protocol import PyResult, PyTask
from balsamd.launch.running import commands
from balsamd.launch.running.lazyfiles import LazyFiles, LazyRun
from balsamd.launch.running.protocol import Finished, Placement, RunStarted
from balsamd.launch.running.watchdog import Watchdog
from balsamd.launch.workdirs import job_workdir, make_dir
from balsamd.models import App, AppKind, Job

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


class ProcessRuns:
    """The runs of this host that are processes; each pidfd is registered with its job id."""

    def __init__(
        self,
        selector: selectors.BaseSelector,
        watchdog: Watchdog,
        settings: LauncherSettings,
        site_path: Path,
        short_apps: AbstractSet[str],
    ) -> None:
        """``short_apps`` is the local runner's, read as it changes."""
        self.selector = selector
        self.watchdog = watchdog
        self.settings = settings
        self._site = str(site_path)
        self._data_prefix = f"{site_path / 'data'}{os.sep}"
        self._apps_prefix = f"{site_path / 'apps'}{os.sep}"
        self.base_env = dict(os.environ)  # copied once, not per run
        self.short_apps = short_apps  # their command runs are lazy about files
        self.lazy = LazyFiles(str(site_path / "data" / ".workers"))
        self.procs: dict[str, _ProcessRun] = {}

    def __contains__(self, job_id: str) -> bool:
        return job_id in self.procs

    def start(self, job: Job, app: App, placement: Placement, env: dict[str, str], use_mpi: bool) -> RunStarted:
        """Start ``job``'s process, under the MPI launcher when ``use_mpi``."""
        preamble = job_preamble(app, job, self._apps_prefix)  # before any file is made: it may fail
        workdir = job_workdir(self._data_prefix, job)
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
        argv = commands.run_argv(app, job, placement, self.settings, use_mpi, env, preamble)
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
        return RunStarted(job.id, started)

    def reap(self, job_id: str) -> Finished:
        """The end of a run whose pidfd became readable: its process has exited."""
        run = self.procs.pop(job_id)
        self.selector.unregister(run.pidfd)
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

    def signal(self, job_id: str, sig: int) -> None:
        """Send ``sig`` to the run's process group; its end will say it was stopped."""
        run = self.procs[job_id]
        run.stopped = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.popen.pid, sig)

    def close(self) -> None:
        """Wait for every process (after SIGKILL) and give back what lazy runs held."""
        for job_id in list(self.procs):
            run = self.procs.pop(job_id)
            run.popen.wait()
            os.close(run.pidfd)
            if run.lazy is not None:
                self.lazy.end(run.lazy, run.workdir, run.output)
        self.lazy.close()
