"""The launcher/CLI <-> daemon protocol: length-prefixed msgpack frames over TCP.

A connection starts with Hello (protocol version and the site's secret) answered by Welcome
or Refused; then each Call gets one Reply with the same id.  Every method's arguments and
result have a declared type, so both sides decode exactly what they expect and anything else
is refused.  Frames above MAX_FRAME are refused before they are read.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from balsamd.models import App, BatchJob, BatchJobState, ClaimLimits, Event, Job, Session, StateUpdate
from balsamd.states import JobState
from balsamd.store.queries import JobFilter
from balsamd.store.store import RemoveOutcome, UpdateOutcome

VERSION = 1
MAX_FRAME = 64 * 1024 * 1024
HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not this protocol; the connection is closed."""


class Hello(msgspec.Struct, tag=True, array_like=True):
    version: int
    secret: str
    client: str = ""


class Welcome(msgspec.Struct, tag=True, array_like=True):
    version: int
    site: str


class Refused(msgspec.Struct, tag=True, array_like=True):
    reason: str


class Call(msgspec.Struct, tag=True, array_like=True):
    id: int
    method: str
    args: msgspec.Raw


class Reply(msgspec.Struct, tag=True, array_like=True):
    id: int
    ok: bool
    value: msgspec.Raw = msgspec.Raw(b"\xc0")
    error_type: str = ""
    error: str = ""
    # the error's attributes (e.g. IllegalTransition's job_id, src, dst), for the client to restore
    error_detail: dict[str, Any] = {}


Message = Hello | Welcome | Refused | Call | Reply

# ----- method signatures -----------------------------------------------------------------


class NoArgs(msgspec.Struct):
    pass


class OpenSession(msgspec.Struct):
    label: str = ""
    batch_job_id: str | None = None
    host: str | None = None
    pid: int | None = None


class SessionArg(msgspec.Struct):
    session_id: str


class Heartbeat(msgspec.Struct):
    session_id: str
    running: list[str] = []


class Expiry(msgspec.Struct):
    expiry_sec: float


class Claim(msgspec.Struct):
    session_id: str
    limits: ClaimLimits


class Report(msgspec.Struct):
    session_id: str
    updates: list[StateUpdate]


class Release(msgspec.Struct):
    session_id: str
    job_ids: list[str]


class Jobs(msgspec.Struct):
    jobs: list[Job]


class JobId(msgspec.Struct):
    job_id: str


class Text(msgspec.Struct):
    text: str


class Filter(msgspec.Struct):
    filter: JobFilter


class EventsArgs(msgspec.Struct):
    job_id: str | None = None
    after: int = 0
    limit: int | None = None


class JobIds(msgspec.Struct):
    job_ids: list[str]


class PutApps(msgspec.Struct):
    apps: list[App]
    replace_all: bool = False


class BatchArgs(msgspec.Struct):
    batch: BatchJob


class BatchStates(msgspec.Struct):
    states: list[BatchJobState] | None = None


class BatchId(msgspec.Struct):
    batch_id: str


class ServiceHealth(msgspec.Struct, kw_only=True):
    name: str
    healthy: bool
    last_tick: float | None = None
    last_error: str = ""
    last_error_at: float | None = None
    restarts: int = 0
    detail: dict[str, Any] = {}


class DaemonStatus(msgspec.Struct, kw_only=True):
    site: str
    host: str
    port: int
    pid: int
    started_at: float
    healthy: bool
    services: list[ServiceHealth]
    job_counts: dict[str, int]
    sessions: list[Session]
    batch_jobs: list[dict[str, Any]] = []
    sync: dict[str, Any] = {}


# method name -> (argument type, result type)
METHODS: dict[str, tuple[type, Any]] = {
    "ping": (NoArgs, str),
    "status": (NoArgs, DaemonStatus),
    "shutdown": (NoArgs, None),
    "open_session": (OpenSession, Session),
    "heartbeat": (Heartbeat, list[str]),
    "close_session": (SessionArg, None),
    "expire_sessions": (Expiry, list[str]),
    "claim": (Claim, str),  # the claimed jobs' JSON document, see store.db.decode_jobs
    "report": (Report, UpdateOutcome),
    "release": (Release, int),
    "create_jobs": (Jobs, list[Job]),
    "get": (JobId, Job),
    "resolve_id": (Text, str),
    "filter": (Filter, list[Job]),
    "count": (Filter, int),
    "counts_by_state": (Filter, dict[str, int]),
    "events": (EventsArgs, list[Event]),
    "kill": (JobIds, dict[str, JobState]),
    "retry": (JobIds, dict[str, JobState]),
    "delete": (JobIds, RemoveOutcome),
    "apps": (NoArgs, dict[str, App]),
    "put_apps": (PutApps, None),
    "create_batch_job": (BatchArgs, BatchJob),
    "batch_jobs": (BatchStates, list[BatchJob]),
    "remove_batch_job": (BatchId, BatchJob),
}

_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(Message)
_arg_decoders = {name: msgspec.msgpack.Decoder(spec[0]) for name, spec in METHODS.items()}
_result_decoders = {name: msgspec.msgpack.Decoder(spec[1] or type(None)) for name, spec in METHODS.items()}


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def frame(message: Message) -> bytes:
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes announced; the limit is {MAX_FRAME}")
    return length


def decode_message(body: bytes) -> Message:
    try:
        return _message_decoder.decode(body)
    except (msgspec.DecodeError, ValueError) as exc:  # a string that is not UTF-8 raises the latter
        raise ProtocolError(f"not a balsamd message: {exc}") from None


def decode_args(method: str, raw: bytes) -> Any:
    if method not in _arg_decoders:
        raise ProtocolError(f"unknown method {method!r}")
    try:
        return _arg_decoders[method].decode(raw)
    except (msgspec.DecodeError, ValueError) as exc:
        raise ProtocolError(f"bad arguments for {method}: {exc}") from None


def decode_result(method: str, raw: bytes) -> Any:
    return _result_decoders[method].decode(raw)
