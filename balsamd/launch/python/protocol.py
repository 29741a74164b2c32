"""What a launcher and its warm Python workers say to each other, and how it is framed.

The launcher sends tasks, several at once when runs are short; a worker runs them in order and
reports each start and end as it happens.  One frame goes each way per batch: a worker sends
the end of one run and the start of the next together.  Frames are a 4-byte big-endian length
and a msgpack payload, over a socket pair.
"""

from __future__ import annotations

import struct

import msgspec

from balsamd.models import Job

_LENGTH = struct.Struct(">I")


class PyTask(msgspec.Struct, array_like=True):
    """One Python-app job, with everything a worker needs to run it."""

    job: Job
    source: str  # path of the app's module
    class_name: str
    cwd: str
    output: str
    env: dict[str, str]
    lazy: bool = False  # make the working directory and output file only if the run uses them


class PyResult(msgspec.Struct, array_like=True):
    job_id: str
    ok: bool
    result: bytes


class Tasks(msgspec.Struct, tag=True, array_like=True):
    """Run these after whatever the worker holds already."""

    tasks: list[PyTask]


class Drop(msgspec.Struct, tag=True, array_like=True):
    """Hand back every task not started yet (the launcher is stopping)."""


class Started(msgspec.Struct, tag=True, array_like=True):
    job_id: str
    ts: float


class Done(msgspec.Struct, tag=True, array_like=True):
    job_id: str
    ts: float
    elapsed: float
    ok: bool
    result: bytes


class Returned(msgspec.Struct, tag=True, array_like=True):
    """Tasks handed back unstarted, in the order they were sent."""

    job_ids: list[str]


class NoSpace(msgspec.Struct, tag=True, array_like=True):
    """Tasks handed back unstarted because the first one's files found no space at ``path``
    (the others would find none either), in the order they were sent."""

    job_ids: list[str]
    path: str


ToWorker = Tasks | Drop
Report = Started | Done | Returned | NoSpace

_encode = msgspec.msgpack.Encoder().encode
decode_commands = msgspec.msgpack.Decoder(ToWorker).decode
decode_reports = msgspec.msgpack.Decoder(list[Report]).decode


def without_starts_of_ended(batch: list[Report]) -> list[Report]:
    """A run that ended before its start went out is reported once: its Done says when it
    started (ts - elapsed)."""
    ended = {r.job_id for r in batch if type(r) is Done}
    return [r for r in batch if not (type(r) is Started and r.job_id in ended)] if ended else batch


def frame(message: object) -> bytes:
    payload = _encode(message)
    return _LENGTH.pack(len(payload)) + payload


class FrameBuffer:
    """Bytes received so far; ``frames`` takes out the complete ones."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data

    def frames(self) -> list[bytes]:
        out = []
        data, at = self._data, 0
        while len(data) - at >= 4:
            (size,) = _LENGTH.unpack_from(data, at)
            if len(data) - at - 4 < size:
                break
            out.append(bytes(data[at + 4 : at + 4 + size]))
            at += 4 + size
        if at:
            del data[:at]
        return out
