"""Running apps' lifecycle hooks in worker processes, each under a time limit.

A hook gets the job as ``self.job`` and moves it by setting ``self.job.state`` (it may also
change ``self.job.data``).  A hook that leaves the state alone gets the default move; one that
raises, or runs past its limit (its worker is killed and replaced), fails the job with the
reason.  User code never runs inside the daemon process itself.

A hook runs with the job's workdir as its current directory (made if missing), and its worker
goes back to where it started afterwards.  While it runs, the only thing its worker may ask
the pool is the parents of that hook's job (``ParentsAsk``, which names no job): the pool
answers from the store, so a hook reads nothing else of the site through its worker.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from balsamd import apps
from balsamd.apps import HookJob, ParentJob, import_app_module
from balsamd.diskspace import is_full
from balsamd.lifecycle import HOOK_NAMED
from balsamd.logs import drop_unwritable_stdio
from balsamd.models import Job
from balsamd.states import JobState

S = JobState

T = TypeVar("T")

_job_encode = _encode = msgspec.msgpack.Encoder().encode
_job_decode = msgspec.msgpack.Decoder(Job).decode
_hook_job_decode = msgspec.msgpack.Decoder(HookJob).decode
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder(dict).decode


class HookTask(msgspec.Struct, array_like=True):
    job: bytes
    hook: str
    source: str
    class_name: str
    workdir: str  # absolute, checked by the daemon to be inside the site's data/


class HookResult(msgspec.Struct, array_like=True, tag=True):
    job_id: str
    ok: bool
    state: str | None = None
    data: dict | None = None
    error: str = ""
    # the hook did not run: its workdir could not be made on a full disk (it runs again later)
    full: str = ""


class ParentsAsk(msgspec.Struct, array_like=True, tag=True):
    """A running hook asks for its job's parents; which job is the pool's to know."""


class ParentsReply(msgspec.Struct, array_like=True):
    parents: list[ParentJob] = []
    error: str = ""  # why they cannot be read; raised in the hook


# what a worker sends while it holds a task: questions, then the task's result
FromWorker = HookResult | ParentsAsk
# answers the pool's parents of the job a worker runs
ParentsOf = Callable[[str], ParentsReply]

_reply_decode = msgspec.msgpack.Decoder(ParentsReply).decode


def run_hook(task: HookTask, ask_parents: Callable[[], ParentsReply] | None = None) -> HookResult:
    """Run one hook in the job's workdir; ``ask_parents`` asks the pool for the job's parents."""
    job = _hook_job_decode(task.job)
    # a copy of its own: a hook that changes a list or dict inside job.data in place changes it
    before = _job_decode(task.job)
    home = os.getcwd()
    try:
        os.makedirs(task.workdir, exist_ok=True)
        os.chdir(task.workdir)
    except OSError as exc:
        if is_full(exc):
            return HookResult(job.id, False, full=task.workdir)
        return HookResult(job.id, False, error=f"{task.hook} hook: cannot enter its workdir {task.workdir}: {exc}")

    def parents(job_id: str) -> list[ParentJob]:
        if job_id != job.id or ask_parents is None:
            raise RuntimeError(f"a hook of job {job.id} may read the parents of that job only")
        reply = ask_parents()
        if reply.error:
            raise RuntimeError(reply.error)
        return reply.parents

    apps.workdir_provider = lambda: task.workdir
    apps.parents_provider = parents
    try:
        cls = getattr(import_app_module(Path(task.source)), task.class_name)
        getattr(cls(job), task.hook)()
    except BaseException:
        return HookResult(job.id, False, error=f"{task.hook} hook raised:\n{traceback.format_exc()}")
    finally:
        apps.workdir_provider = apps.parents_provider = None
        os.chdir(home)
    state = None if job.state == before.state else str(job.state)
    if job.data == before.data:
        return HookResult(job.id, True, state)
    if not isinstance(job.data, dict):
        error = f"{task.hook} set job.data to a {type(job.data).__name__}; it must be a dict"
        return HookResult(job.id, False, error=error)
    try:  # the store keeps data as JSON: send exactly what it will keep
        data = _json_decode(_json_encode(job.data))
        msgspec.msgpack.encode(data)
    except Exception as exc:
        error = f"{task.hook} set job.data to a value that cannot be stored: {exc}"
        return HookResult(job.id, False, error=error)
    return HookResult(job.id, True, state, data)


def serve_tasks(conn: Connection, task_type: type[T], func: Callable[[T, Connection], object]) -> None:
    """A worker's loop: decode a task, call ``func`` (which may ask questions on ``conn``),
    send back what it returns, until EOF."""
    os.setsid()  # its own process group: stopping a job stops what the job started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    decode = msgspec.msgpack.Decoder(task_type).decode
    while True:
        try:
            raw = conn.recv_bytes()
        except EOFError:
            return
        conn.send_bytes(_encode(func(decode(raw), conn)))


class PythonWorker:
    """One spawned worker process and the task it is running, if any."""

    def __init__(self, ctx: Any, target: Callable[[Connection], None]) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.job_id: str | None = None

    def fileno(self) -> int:
        return self.conn.fileno()

    def submit(self, task: msgspec.Struct, job_id: str) -> None:
        self.job_id = job_id
        self.conn.send_bytes(_encode(task))

    def receive(self, message_type: Any) -> Any:
        """The worker's next message (a result ends its task), or None when the worker died."""
        try:
            raw = self.conn.recv_bytes()
        except (EOFError, OSError):
            return None
        return msgspec.msgpack.decode(raw, type=message_type)

    def answer(self, reply: msgspec.Struct) -> None:
        self.conn.send_bytes(_encode(reply))

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        self.conn.close()
        self.signal(signal.SIGKILL)
        self.process.join(timeout=5)


def follow_log(path: Path | None) -> None:
    """Point stdout and stderr at ``path`` once they no longer write it: the daemon's log was
    rotated since this worker started, and an old file must not grow beyond its size."""
    if path is None:
        return
    try:
        log, out = os.stat(path), os.fstat(1)
        if (log.st_dev, log.st_ino) == (out.st_dev, out.st_ino):
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _hook_worker_main(conn: Connection, stdio_log: Path | None = None) -> None:
    drop_unwritable_stdio()  # a hook that prints to a full disk's log must not fail for it

    def run(task: HookTask, conn: Connection) -> HookResult:
        def ask_parents() -> ParentsReply:
            conn.send_bytes(_encode(ParentsAsk()))
            return _reply_decode(conn.recv_bytes())

        follow_log(stdio_log)
        return run_hook(task, ask_parents)

    serve_tasks(conn, HookTask, run)


def next_state(hook: str, result: HookResult) -> tuple[JobState, str]:
    """Where the job goes after its hook, and the reason to record."""
    if not result.ok:
        return S.FAILED, result.error
    if result.state is None:
        return HOOK_NAMED[hook].default_next, ""
    try:
        return S(result.state), f"set by {hook}"
    except ValueError:
        return S.FAILED, f"{hook} set the unknown state {result.state!r}"


class HookPool:
    """Warm workers for hooks; a worker that overruns its time limit is killed and replaced.
    ``stdio_log``: the daemon's log, when its stdout and stderr go there (workers follow it as
    it rotates)."""

    def __init__(self, size: int, time_limit: float, stdio_log: Path | None = None) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self.size = size
        self.time_limit = time_limit
        self.stdio_log = stdio_log
        self.idle: list[PythonWorker] = []

    def _worker(self) -> PythonWorker:
        if self.idle:
            return self.idle.pop()
        return PythonWorker(self._ctx, functools.partial(_hook_worker_main, stdio_log=self.stdio_log))

    def run(self, tasks: list[tuple[str, HookTask]], parents: ParentsOf | None = None) -> list[tuple[str, HookResult]]:
        """Run (hook, task) pairs, ``size`` at a time; blocks until all have an outcome.
        ``parents`` answers a hook's question for its job's parents (given the job's id)."""
        pending = list(reversed(tasks))
        busy: dict[Connection, tuple[PythonWorker, str, str, float]] = {}
        done: list[tuple[str, HookResult]] = []
        while pending or busy:
            while pending and len(busy) < self.size:
                hook, task = pending.pop()
                worker = self._worker()
                job_id = _job_decode(task.job).id
                worker.submit(task, job_id)
                busy[worker.conn] = (worker, hook, job_id, time.monotonic() + self.time_limit)
            soonest = min(deadline for *_, deadline in busy.values())
            ready = wait(list(busy), timeout=max(0.0, soonest - time.monotonic()))
            # busy's own keys: wait() gives back what it was given, typed as any waitable
            for conn in [c for c in busy if c in ready]:
                worker, hook, job_id, deadline = busy.pop(conn)
                try:
                    result = worker.receive(FromWorker)
                except msgspec.DecodeError:
                    result = None
                if isinstance(result, ParentsAsk):
                    if not self._answer(worker, job_id, parents):
                        worker.stop()
                        error = f"{hook} hook: its worker process died while asking for parents"
                        done.append((hook, HookResult(job_id, False, error=error)))
                        continue
                    busy[conn] = (worker, hook, job_id, deadline)
                    continue
                worker.job_id = None
                if result is None:
                    worker.stop()
                    result = HookResult(job_id, False, error=f"{hook} hook: its worker process died")
                else:
                    self.idle.append(worker)
                done.append((hook, result))
            now = time.monotonic()
            for conn, (worker, hook, job_id, deadline) in list(busy.items()):
                if now >= deadline:
                    del busy[conn]
                    worker.signal(signal.SIGKILL)
                    worker.stop()
                    error = f"{hook} hook ran past its {self.time_limit:g} s limit and was stopped"
                    done.append((hook, HookResult(job_id, False, error=error)))
        return done

    @staticmethod
    def _answer(worker: PythonWorker, job_id: str, parents: ParentsOf | None) -> bool:
        """Answer a worker's question for the parents of the job it runs; False if it died."""
        if parents is None:
            reply = ParentsReply(error="parents cannot be read here: no store was given to the hook pool")
        else:
            try:
                reply = parents(job_id)
            except Exception as exc:  # a store that fails fails this hook's question, not the pool
                reply = ParentsReply(error=f"the parents of job {job_id} could not be read: {exc}")
        try:
            worker.answer(reply)
        except OSError:
            return False
        return True

    def close(self) -> None:
        for worker in self.idle:
            worker.stop()
        self.idle.clear()


def hook_task(job: Job, hook: str, source: Path, class_name: str, workdir: str) -> HookTask:
    return HookTask(_job_encode(job), hook, str(source), class_name, workdir)
