"""A warm Python worker: imports each app once, then runs job after job as the launcher sends them.

A run's stdout and stderr are fds 1 and 2, so subprocesses and C code are caught too.  Where a
run writes is ``files.Files``'s business (short runs make their files only if they use them),
its environment ``environment.Environment``'s.  Starts and ends go back to the launcher in
batches.

Usage (started by ``handle.WarmWorker`` or forked by the zygote):
python -m balsamd.launch.python.worker FD BASE
where BASE.out is the spill file and BASE.cwd the scratch directory.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import sys
import threading
import time

from balsamd import apps
from balsamd.diskspace import is_full
from balsamd.launch.python import protocol as pp
from balsamd.launch.python.appcall import call_app
from balsamd.launch.python.environment import Environment
from balsamd.launch.python.files import Files

# Where runs and their launcher compete for cores, the launcher's bookkeeping goes first: it
# feeds every run.  Short runs come thousands a second and are fed faster for it; long runs
# barely notice, as the launcher then has little to do.
NICE = 5
REPORT_DELAY_SEC = 0.002  # most a report waits for others to go out with it
LOOK_EVERY_SEC = 0.001  # how often a busy worker looks for messages between runs


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
                self.sock.sendall(pp.frame(pp.without_starts_of_ended(batch)))

    def _loop(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            time.sleep(max(0.0, self.first_at + REPORT_DELAY_SEC - time.monotonic()))
            try:
                self.flush()
            except OSError:
                return  # the launcher has gone; the main loop sees it too


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
        """Run ``task``, whose files ``files.begin`` has made."""
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
            try:
                self.files.begin(task)
            except OSError as exc:
                if not is_full(exc):
                    raise
                # the tasks after it would find no space either: all go back, none started
                self.reporter.add(pp.NoSpace([task.job.id, *(t.job.id for t in self.tasks)], exc.filename or task.cwd))
                self.tasks.clear()
                continue
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
