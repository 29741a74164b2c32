"""The launcher/CLI <-> daemon protocol: length-prefixed msgpack frames over TCP.

A connection starts with Hello (protocol version and the site's secret) answered by Welcome
or Denied; then each Call gets one Reply with the same id.  The methods are the store
contract's operations (``store.contract``) and the daemon's own (``DaemonControl``): each has
declared argument and result types, so both sides decode exactly what they expect and anything
else is refused.  Frames above MAX_FRAME are refused before they are read.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import msgspec

from balsamd.models import Session
from balsamd.store.contract import OPERATIONS, Operation, declare, operation
from balsamd.validate import Refused

VERSION = 2
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


class Denied(msgspec.Struct, tag=True, array_like=True):
    """The handshake failed: wrong secret or protocol version."""

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


Message = Hello | Welcome | Denied | Call | Reply


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


class DaemonControl(Protocol):
    """What the daemon answers besides the store's operations."""

    @operation(write=False, hot=True)
    def ping(self) -> str:
        """``"pong"``: the daemon is there and serves this client."""
        ...

    @operation(write=False)
    def status(self) -> DaemonStatus: ...

    @operation(write=False)
    def shutdown(self) -> None:
        """Stop the daemon: its services finish their current step."""
        ...


# every method a client may call: the store's operations and the daemon's own
METHODS: dict[str, Operation] = {**OPERATIONS, **declare(DaemonControl)}
HOT_METHODS = frozenset(name for name, op in METHODS.items() if op.hot)

_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(Message)
_arg_decoders = {name: msgspec.msgpack.Decoder(op.args) for name, op in METHODS.items()}
_result_decoders = {name: msgspec.msgpack.Decoder(op.result) for name, op in METHODS.items()}


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
    """The call's arguments as its method declares them; arguments of other types are the
    caller's mistake, refused like any other bad request (naming the field)."""
    if method not in _arg_decoders:
        raise ProtocolError(f"unknown method {method!r}")
    try:
        return _arg_decoders[method].decode(raw)
    except msgspec.ValidationError as exc:
        raise Refused(f"bad arguments for {method}", [str(exc)]) from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise ProtocolError(f"bad arguments for {method}: {exc}") from None


def decode_result(method: str, raw: bytes) -> Any:
    return _result_decoders[method].decode(raw)
