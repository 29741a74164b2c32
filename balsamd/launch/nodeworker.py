"""Serial mode on many nodes: one worker per node runs the jobs the leader places there.

The leader starts each worker with the site's MPI launcher (``mpiexec -n 1 --hosts NODE``,
``srun -w NODE`` ...) and talks to it over the launcher's forwarded stdin/stdout, one base64
msgpack message per line, so no network setup between nodes is needed.  A worker whose
stdin closes (its leader is gone) stops every run it has: runs never outlive their leader.

Usage on a node: python -m balsamd.launch.nodeworker SITE_PATH
"""

from __future__ import annotations

import base64
import os
import signal
import sys
from pathlib import Path

import msgspec

from balsamd.config import load_settings
from balsamd.launch.resources import Placement
from balsamd.launch.runner import Finished, Runner
from balsamd.models import App, Job


class StartRun(msgspec.Struct, tag=True):
    job: Job
    app: App
    hosts: list[str]
    gpu_ids: dict[str, list[int]]
    cpus: float
    occupancy: float


class SignalRuns(msgspec.Struct, tag=True):
    job_ids: list[str]
    signum: int


class Shutdown(msgspec.Struct, tag=True):
    pass


class RunFinished(msgspec.Struct, tag=True):
    job_id: str
    return_code: int | None
    reason: str
    result: bytes | None
    stopped: bool


class WorkerReady(msgspec.Struct, tag=True):
    host: str
    pid: int


Command = StartRun | SignalRuns | Shutdown
Report = RunFinished | WorkerReady

_encode = msgspec.msgpack.Encoder().encode
_command_decode = msgspec.msgpack.Decoder(Command).decode
_report_decode = msgspec.msgpack.Decoder(Report).decode


# MPI launchers print their own lines (banners, errors) into the same stream: ours carry a
# prefix, and anything else is passed on as text.
PREFIX = b"@balsamd "


def to_line(message: Command | Report) -> bytes:
    return PREFIX + base64.b64encode(_encode(message)) + b"\n"


def _payload(line: bytes) -> bytes | None:
    line = line.strip()
    return base64.b64decode(line[len(PREFIX) :]) if line.startswith(PREFIX.strip()) else None


def command_from_line(line: bytes) -> Command | None:
    """The command on a line, or None for a line that is not ours."""
    payload = _payload(line)
    return None if payload is None else _command_decode(payload)


def report_from_line(line: bytes) -> Report | None:
    payload = _payload(line)
    return None if payload is None else _report_decode(payload)


def placement_of(msg: StartRun) -> Placement:
    return Placement(job_id=msg.job.id, hosts=msg.hosts, gpu_ids=msg.gpu_ids, cpus=msg.cpus, occupancy=msg.occupancy)


def finished_message(f: Finished) -> RunFinished:
    return RunFinished(f.job_id, f.return_code, f.reason, f.result, f.stopped)


class LineReader:
    """Whole lines from a non-blocking fd, however the bytes arrive."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.eof = False
        os.set_blocking(fd, False)

    def lines(self) -> list[bytes]:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        return [line for line in complete if line.strip()]


def serve(site_path: Path, stdin_fd: int = 0, out=None) -> int:
    out = out or sys.stdout.buffer
    settings = load_settings(site_path / "settings.toml").launcher
    runner = Runner(site_path, {}, settings, use_mpi=False, wakeup_fd=stdin_fd)
    reader = LineReader(stdin_fd)
    signal.signal(signal.SIGTERM, lambda *_: reader.__setattr__("eof", True))
    out.write(to_line(WorkerReady(os.uname().nodename, os.getpid())))
    out.flush()
    try:
        while not reader.eof:
            for event in runner.wait(1.0):
                if isinstance(event, Finished):  # the leader reported the start when it sent the run
                    out.write(to_line(finished_message(event)))
            for line in reader.lines():
                msg = command_from_line(line)
                if msg is None:
                    continue
                if isinstance(msg, StartRun):
                    runner.apps[msg.app.name] = msg.app
                    failed = runner.start(msg.job, placement_of(msg))
                    if failed is not None:
                        out.write(to_line(finished_message(failed)))
                elif isinstance(msg, SignalRuns):
                    runner.signal(msg.job_ids, msg.signum)
                else:
                    reader.eof = True
            out.flush()
    finally:
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
