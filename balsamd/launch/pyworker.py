"""Warm Python worker processes: Python apps run here without a fresh interpreter per job.

A worker imports each app module once and then runs job after job.  A job's stdout and
stderr go to its output file, its working directory and environment are set for the call
only.  A job that must be stopped is stopped by ending its worker; a new one replaces it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from balsamd.apps import import_app_module
from balsamd.models import Job
from balsamd.results import pack_error, pack_value

_job_decode = msgspec.msgpack.Decoder(Job).decode
_encode = msgspec.msgpack.Encoder().encode


class PyTask(msgspec.Struct, array_like=True):
    job: bytes  # msgpack Job
    source: str  # path of the app's module
    class_name: str
    cwd: str
    output: str
    env: dict[str, str]


class PyResult(msgspec.Struct, array_like=True):
    job_id: str
    ok: bool
    result: bytes


def call_app(task: PyTask) -> PyResult:
    """Import the app (once per process) and call its run() with the job's parameters."""
    job = _job_decode(task.job)
    try:
        cls = getattr(import_app_module(Path(task.source)), task.class_name)
        return PyResult(job.id, True, pack_value(cls(job).run(**job.parameters)))
    except BaseException as exc:
        traceback.print_exc()
        return PyResult(job.id, False, pack_error(exc))


def run_task(task: PyTask) -> PyResult:
    """Run one job in this warm process with its cwd, environment and output file."""
    saved_env = {k: os.environ.get(k) for k in task.env}
    saved_cwd = os.getcwd()
    os.makedirs(task.cwd, exist_ok=True)  # here, not in the launcher: its loop stays free
    out = os.open(task.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    saved_fds = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out, 1)
    os.dup2(out, 2)
    try:
        os.environ.update(task.env)
        os.chdir(task.cwd)
        return call_app(task)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in (*saved_fds, out):
            os.close(fd)
        os.chdir(saved_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def serve_tasks(conn: Connection, task_type: type, func: Callable[[Any], Any]) -> None:
    """A worker's loop: decode a task, call ``func``, send back what it returns, until EOF."""
    os.setsid()  # its own process group: stopping a job stops what the job started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    decode = msgspec.msgpack.Decoder(task_type).decode
    while True:
        try:
            raw = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(_encode(func(decode(raw))))


def _worker_main(conn: Connection) -> None:
    serve_tasks(conn, PyTask, run_task)


class PythonWorker:
    """One warm worker process and the job it is running, if any."""

    def __init__(self, ctx: Any, target: Callable[[Connection], None] = _worker_main) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.job_id: str | None = None

    def fileno(self) -> int:
        return self.conn.fileno()

    def submit(self, task: PyTask, job_id: str) -> None:
        self.job_id = job_id
        self.conn.send_bytes(_encode(task))

    def receive(self, result_type: type = PyResult) -> Any:
        """The finished job's result, or None when the worker died."""
        try:
            raw = self.conn.recv_bytes()
        except (EOFError, OSError):
            return None
        self.job_id = None
        return msgspec.msgpack.decode(raw, type=result_type)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        self.conn.close()
        self.signal(signal.SIGKILL)
        self.process.join(timeout=5)


class WorkerPool:
    """Idle workers kept warm; a worker is created when none is idle."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self.idle: list[PythonWorker] = []

    def take(self) -> PythonWorker:
        while self.idle:
            worker = self.idle.pop()
            if worker.process.is_alive():
                return worker
            worker.stop()
        return PythonWorker(self._ctx)

    def give_back(self, worker: PythonWorker) -> None:
        self.idle.append(worker)

    def close(self) -> None:
        for worker in self.idle:
            worker.stop()
        self.idle.clear()
