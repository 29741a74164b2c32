"""The launcher's end of its warm Python workers.

A worker holds a queue of the jobs sent to it: the first runs, the rest wait their turn.  It
says when each starts and ends; when it dies, what it held is accounted for here: the run it
had started ends, the jobs it never started go back to the launcher.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from balsamd.launch.forks import start_with_socket
from balsamd.launch.python import protocol as pp
from balsamd.launch.python.zygote import Zygote, describe_status

_serial = itertools.count()


def worker_environment() -> dict[str, str]:
    """The launcher's environment, with its import path, so workers import what it imported
    (also from an extracted zipapp)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


@dataclass(eq=False)
class WarmWorker:
    """One worker process, its socket and the jobs it holds, in the order they were sent."""

    pid: int  # also its process group
    sock: socket.socket
    base: Path  # BASE.out is its spill file, BASE.cwd its scratch directory (see worker)
    ended: Callable[[], str]  # waits for the process to end and says how it ended
    queue: collections.deque[str] = field(default_factory=collections.deque)
    workdirs: dict[str, str] = field(default_factory=dict)  # of the queued jobs
    current: str | None = None  # the queue's head, once the worker said it started it
    stop_for: set[str] = field(default_factory=set)  # runs it was signalled to stop
    buffer: pp.FrameBuffer = field(default_factory=pp.FrameBuffer)
    outgoing: bytearray = field(default_factory=bytearray)  # not yet taken by the socket

    @classmethod
    def start(cls, spill_dir: Path, env: dict[str, str], zygote: Zygote | None) -> WarmWorker:
        """A new worker, forked by ``zygote`` or else started as a fresh interpreter."""
        spill_dir.mkdir(parents=True, exist_ok=True)
        base = spill_dir / f"{socket.gethostname()}-{os.getpid()}-{next(_serial)}"
        if zygote is not None:
            pid, sock = zygote.fork(str(base))
            sock.setblocking(False)  # a busy worker reads between runs: the launcher never waits for it
            return cls(pid, sock, base, lambda: describe_status(zygote.status(pid)))
        process, sock = start_with_socket("balsamd.launch.python.worker", [str(base)], env)
        sock.setblocking(False)
        return cls(process.pid, sock, base, lambda: _describe_returncode(process.wait()))

    @property
    def idle(self) -> bool:
        return not self.queue and not self.stop_for

    def send(self, tasks: list[pp.PyTask]) -> bool:
        """Hand tasks over (what the socket does not take now waits in ``outgoing``); False
        when the worker has gone."""
        self.outgoing += pp.frame(pp.Tasks(tasks))
        if not self.push():
            return False
        for task in tasks:
            self.queue.append(task.job.id)
            self.workdirs[task.job.id] = task.cwd
        return True

    def drop_queued(self) -> None:
        self.outgoing += pp.frame(pp.Drop())
        self.push()

    def push(self) -> bool:
        """Write what the socket takes of ``outgoing``; False when the worker has gone."""
        try:
            while self.outgoing:
                sent = self.sock.send(self.outgoing)
                del self.outgoing[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        return True

    def read(self) -> list[pp.Report] | None:
        """Reports that arrived, or None once the worker has gone."""
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            return None
        self.buffer.feed(data)
        reports: list[pp.Report] = []
        for raw in self.buffer.frames():
            reports.extend(pp.decode_reports(raw))
        for report in reports:
            if isinstance(report, pp.Started):
                self.current = report.job_id
            elif isinstance(report, pp.Done):
                self._forget(report.job_id)
                self.current = None
            elif isinstance(report, pp.Returned | pp.NoSpace):
                for job_id in report.job_ids:
                    self._forget(job_id)
        return reports

    def _forget(self, job_id: str) -> None:
        with contextlib.suppress(ValueError):
            self.queue.remove(job_id)  # nearly always the head
        self.workdirs.pop(job_id, None)
        self.stop_for.discard(job_id)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self) -> str:
        """End the process (if it still runs) and say how it ended.  What a run cut short left
        in the scratch directory still becomes its job's working directory."""
        with contextlib.suppress(OSError):
            self.sock.close()
        self.signal(signal.SIGKILL)
        how = self.ended()
        scratch = Path(f"{self.base}.cwd")
        workdir = self.workdirs.get(self.current or "")
        with contextlib.suppress(OSError):
            if workdir is not None and any(scratch.iterdir()) and not os.path.exists(workdir):
                os.makedirs(os.path.dirname(workdir), exist_ok=True)
                scratch.rename(workdir)
        with contextlib.suppress(OSError):
            scratch.rmdir()
        with contextlib.suppress(OSError):
            os.unlink(f"{self.base}.out")
        return how


def _describe_returncode(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
