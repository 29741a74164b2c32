"""A warm Python worker: imports each app once, then runs job after job as the launcher sends them.

A run's stdout and stderr are fds 1 and 2, so subprocesses and C code are caught too.  Runs of
apps whose runs are known to be short are lazy about files: one starts in its job's working
directory when that exists (staged inputs, an earlier attempt), otherwise in this worker's
empty scratch directory, which becomes the job's working directory if the run leaves anything
in it; its output goes to a spill file that becomes the job's output file only if something
was written.  A short run that writes nothing costs no directory and no file: a campaign of a
million of them makes no two million metadata operations on a parallel filesystem.

Usage (started by balsamd.launch.pyworkers): python -m balsamd.launch.pyserve FD BASE
where BASE.out is the spill file and BASE.cwd the scratch directory.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import signal
import socket
import sys
import threading
import time
from typing import TextIO

from balsamd import apps
from balsamd.launch import pyproto as pp
from balsamd.launch.dirwatch import EntryWatch
from balsamd.launch.lazyfiles import keep_output, make_dir, move_scratch
from balsamd.launch.pyworker import call_app

# Where runs and their launcher compete for cores, the launcher's bookkeeping goes first: it
# feeds every run.  Short runs come thousands a second and are fed faster for it; long runs
# barely notice, as the launcher then has little to do.
NICE = 5
_FS_ENCODING = sys.getfilesystemencoding()
REPORT_DELAY_SEC = 0.002  # most a report waits for others to go out with it
LOOK_EVERY_SEC = 0.001  # how often a busy worker looks for messages between runs


class Files:
    """Where a run writes: its working directory and output file, made now or only if used.

    The worker's spill file sits on fds 1 and 2 between runs.  An eager run gets its working
    directory made and its output file on fds 1 and 2 at once, so both can be watched while it
    runs.  A lazy run (its app's runs are short) starts in the scratch directory unless its
    working directory exists, and writes to the spill file; afterwards what it left becomes
    its job's.  Asking for ``workdir()`` during a lazy run moves it into its working directory.
    """

    def __init__(self, base: str, diagnostics: TextIO) -> None:
        self.spill = f"{base}.out"
        self.scratch = f"{base}.cwd"
        self.diagnostics = diagnostics  # the worker's own stderr, for what is not a job's output
        self._leftovers = itertools.count()
        self.task: pp.PyTask | None = None
        self.in_scratch = False
        os.makedirs(self.scratch, exist_ok=True)
        # entered by descriptor and watched for entries: no path lookup and no listing per run
        self._scratch_fd = os.open(self.scratch, os.O_RDONLY | os.O_DIRECTORY)
        self._scratch_watch = EntryWatch(self.scratch)
        self._point_output_at(self.spill)

    def _point_output_at(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def begin(self, task: pp.PyTask) -> None:
        self.task = task
        self.in_scratch = False
        if not task.lazy:
            make_dir(task.cwd)
            os.chdir(task.cwd)
            self._point_output_at(task.output)
            return
        if os.access(task.cwd, os.F_OK):  # cheaper than a failing chdir, the usual case
            try:
                os.chdir(task.cwd)
                return
            except OSError:
                pass
        os.fchdir(self._scratch_fd)
        self.in_scratch = True

    def workdir(self) -> str:
        """The running job's working directory, made now; a run in the scratch directory moves
        there with what it wrote (the directory is renamed: the run's open files stay open)."""
        assert self.task is not None
        if self.in_scratch:
            self._move_scratch(self.task.cwd)
            os.chdir(self.task.cwd)
            self.in_scratch = False
        else:
            make_dir(self.task.cwd)
        return self.task.cwd

    def end(self) -> None:
        """After a run: what it left in the scratch directory and the spill file becomes its job's."""
        task, self.task = self.task, None
        assert task is not None
        sys.stdout.flush()
        sys.stderr.flush()
        if not task.lazy:
            self._point_output_at(self.spill)
            return
        if self.in_scratch and self._scratch_watch.maybe_changed():
            with os.scandir(self._scratch_fd) as entries:
                used = next(entries, None) is not None
            if used:
                self._move_scratch(task.cwd)
        if os.fstat(1).st_size == 0:
            return
        # the run's own children may go on writing to the spill file: it is theirs now
        problem = keep_output(self.spill, task.output)
        if problem:
            self._warn(problem)
        self._point_output_at(self.spill)

    def _move_scratch(self, workdir: str) -> None:
        for problem in move_scratch(self.scratch, workdir, f"{self.scratch}.left{next(self._leftovers)}"):
            self._warn(problem)
        os.mkdir(self.scratch)
        os.close(self._scratch_fd)
        self._scratch_fd = os.open(self.scratch, os.O_RDONLY | os.O_DIRECTORY)
        self._scratch_watch.watch()

    def _warn(self, text: str) -> None:
        print(f"balsamd worker: {text}", file=self.diagnostics)

    def remove(self) -> None:
        self._scratch_watch.close()
        with contextlib.suppress(OSError):
            os.close(self._scratch_fd)
        with contextlib.suppress(OSError):
            os.unlink(self.spill)
        with contextlib.suppress(OSError):
            os.rmdir(self.scratch)


class Environment:
    """Job environments applied over the worker's own, changing only what differs.

    Jobs of one app differ in a few variables (their id, their workdir).  When the last run
    left the job's variables as it was given them, only those whose values differ from the
    last job's are set; after a run that changed one, every variable of the next job is
    checked.  Variables are set as ``os.environ`` sets them (``putenv`` and CPython's bytes
    store behind it), minus its per-call encoding helpers: this is paid by every short run.
    """

    def __init__(self) -> None:
        self.base: dict[str, str | None] = {}  # the worker's value of every variable a job set
        self.applied: dict[str, str] = {}
        self._data: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)
        self._given: dict[bytes, bytes] = {}  # the variables the last run was given, encoded
        self._names: dict[str, bytes] = {}

    def apply(self, env: dict[str, str]) -> None:
        data, given, last = self._data, self._given, self.applied
        for key in last.keys() - env.keys():
            value = self.base[key]
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
            given.pop(self._name(key), None)
        # dict views compare in C: untouched when the last run left its variables as given
        untouched = data is not None and bool(given) and given.items() <= data.items()
        if not untouched:
            given.clear()
        for key, value in env.items() - last.items() if untouched else env.items():
            if key not in self.base:
                self.base[key] = os.environ.get(key)
            if data is None:  # not CPython's os module: every variable is set
                os.environ[key] = value
                continue
            name = self._name(key)
            encoded = value.encode(_FS_ENCODING, "surrogateescape")
            if data.get(name) != encoded:
                os.putenv(name, encoded)
                data[name] = encoded
            given[name] = encoded
        self.applied = env

    def _name(self, key: str) -> bytes:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = os.fsencode(key)
        return name


class Reporter:
    """Reports go out in batches: at once when the worker falls idle, else within
    REPORT_DELAY_SEC from a thread of their own, so a long run's start is known while it runs
    and short runs cost one message per batch, not per run."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.pending: list[pp.Report] = []
        self.first_at = 0.0
        self.wake = threading.Event()
        threading.Thread(target=self._loop, name="balsamd-reporter", daemon=True).start()

    def add(self, report: pp.Report) -> None:
        with self.lock:
            if not self.pending:
                self.first_at = time.monotonic()
                self.wake.set()
            self.pending.append(report)

    def flush(self) -> None:
        with self.lock:
            if self.pending:
                batch, self.pending = self.pending, []
                self.sock.sendall(pp.frame(_without_starts_of_ended(batch)))

    def _loop(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(max(0.0, self.first_at + REPORT_DELAY_SEC - time.monotonic()))
            try:
                self.flush()
            except OSError:
                return  # the launcher has gone; the main loop sees it too


def _without_starts_of_ended(batch: list[pp.Report]) -> list[pp.Report]:
    """A run that ended before its start went out is reported once: its Done says when it
    started (ts - elapsed)."""
    ended = {r.job_id for r in batch if type(r) is pp.Done}
    return [r for r in batch if not (type(r) is pp.Started and r.job_id in ended)] if ended else batch


class Worker:
    def __init__(self, sock: socket.socket, files: Files) -> None:
        self.sock = sock
        self.files = files
        self.environment = Environment()
        self.tasks: collections.deque[pp.PyTask] = collections.deque()
        self.buffer = pp.FrameBuffer()
        self.reporter = Reporter(sock)
        self.next_look = 0.0

    def run(self, task: pp.PyTask) -> tuple[bool, bytes]:
        self.files.begin(task)
        self.environment.apply(task.env)
        apps.workdir_provider = self.files.workdir
        try:
            outcome = call_app(task)
        finally:
            apps.workdir_provider = None
            self.files.end()
        return outcome.ok, outcome.result

    def receive(self, block: bool) -> bool:
        """Take in whatever the launcher sent; False once it has gone."""
        while True:
            try:
                data = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            except OSError:
                return False
            if not data:
                return False
            self.buffer.feed(data)
            for raw in self.buffer.frames():
                message = pp.decode_commands(raw)
                if isinstance(message, pp.Tasks):
                    self.tasks.extend(message.tasks)
                elif isinstance(message, pp.Drop) and self.tasks:
                    self.reporter.add(pp.Returned([t.job.id for t in self.tasks]))
                    self.tasks.clear()
            block = False

    def serve(self) -> None:
        while True:
            if not self.tasks:
                self.reporter.flush()
                if not self.receive(block=True):
                    return
                continue
            if time.monotonic() >= self.next_look:  # new tasks and a Drop need not wait for a run
                if not self.receive(block=False):
                    return
                self.next_look = time.monotonic() + LOOK_EVERY_SEC
                if not self.tasks:
                    continue
            task = self.tasks.popleft()
            started = time.time()
            self.reporter.add(pp.Started(task.job.id, started))
            ok, result = self.run(task)
            ended = time.time()
            self.reporter.add(pp.Done(task.job.id, ended, ended - started, ok, result))


def main(fd: int, base: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher decides when runs stop
    with contextlib.suppress(OSError):
        os.nice(NICE)
    sock = socket.socket(fileno=fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    files = Files(base, os.fdopen(os.dup(2), "w", buffering=1))
    try:
        Worker(sock, files).serve()
    finally:
        files.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
