"""What a leader and its node workers say to each other, one line per message.

The leader talks to each node worker over the MPI launcher's forwarded stdin and stdout, one
base64 msgpack message per line, so no network setup between nodes is needed.  MPI launchers
print their own lines (banners, errors) into the same stream: ours carry a prefix, and
anything else is passed on as text.
"""

from __future__ import annotations

import base64
import os

import msgspec

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
    no_space: bool = False  # it did not start: its files found no space (``reason`` says where)


class WorkerReady(msgspec.Struct, tag=True):
    host: str
    pid: int


Command = StartRun | SignalRuns | Shutdown
Report = RunFinished | WorkerReady

_encode = msgspec.msgpack.Encoder().encode
_command_decode = msgspec.msgpack.Decoder(Command).decode
_report_decode = msgspec.msgpack.Decoder(Report).decode

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
