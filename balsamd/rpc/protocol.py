"""The launcher/CLI <-> daemon protocol: length-prefixed msgpack frames over TCP.

A connection starts with a handshake in which each side proves it knows the site's secret
without sending it: the client's Hello carries a fresh nonce; the daemon answers with a
Challenge (its nonce and its proof); the client sends its Proof; the daemon answers Welcome or
Denied.  A proof is an HMAC of the transcript (protocol version, role, site name, both nonces)
keyed with the secret, so a proof answers one connection of one site in one direction only.
Handshake frames are at most HANDSHAKE_FRAME bytes, read into the one message type expected.

Then each Call gets one Reply with the same id.  The methods are the store contract's
operations (``store.contract``) and the daemon's own (``DaemonControl``): each has declared
argument and result types, so both sides decode exactly what they expect and anything else is
refused.  A call's arguments and a reply's value travel as opaque bytes inside their message,
so that reading the envelope costs the same whatever they hold.  Frames above MAX_FRAME are
refused before they are read.
"""

from __future__ import annotations

import hmac
import os
import struct
from typing import Annotated, Any, Protocol

import msgspec

from balsamd.explain import explain
from balsamd.models import Session
from balsamd.store.contract import OPERATIONS, Operation, declare, operation
from balsamd.validate import Refused

VERSION = 3
MAX_FRAME = 64 * 1024 * 1024
# a handshake message is about a hundred bytes (the Challenge adds the site's name)
HANDSHAKE_FRAME = 4096
HANDSHAKE_TIMEOUT = 10.0  # seconds for the whole handshake, on either side
HEADER = struct.Struct(">I")

# 32 random bytes or an HMAC-SHA256, in hex
Hex = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class ProtocolError(Exception):
    """The peer sent something that is not this protocol; the connection is closed."""


class Hello(msgspec.Struct, tag=True, array_like=True):
    """The client's first frame.  A client of version 2 sent its secret where the nonce is: its
    Hello still decodes, and it is told that its version is not spoken."""

    version: int
    nonce: Hex


class Challenge(msgspec.Struct, tag=True, array_like=True):
    """The daemon's answer to Hello: its nonce and its proof of the secret."""

    site: str
    nonce: Hex
    proof: Hex


class Proof(msgspec.Struct, tag=True, array_like=True):
    """The client's proof of the secret, sent only to a daemon that proved it first."""

    proof: Hex


class Welcome(msgspec.Struct, tag=True, array_like=True):
    version: int
    site: str


class Denied(msgspec.Struct, tag=True, array_like=True):
    """The handshake failed: wrong secret or protocol version."""

    reason: str


class Call(msgspec.Struct, tag=True, array_like=True):
    id: int
    method: str
    args: memoryview  # the method's argument Struct, encoded


class Reply(msgspec.Struct, tag=True, array_like=True):
    id: int
    ok: bool
    value: memoryview = memoryview(b"\xc0")  # the method's result, encoded (nil when not ok)
    error_type: str = ""
    error: str = ""
    # the error's attributes (e.g. IllegalTransition's job_id, src, dst), for the client to restore
    error_detail: dict[str, Any] = {}


Message = Hello | Challenge | Proof | Welcome | Denied | Call | Reply


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

    @operation(write=False, hot=True)
    def services(self) -> list[ServiceHealth]:
        """The services of ``status`` alone: it reads no store (a live view asks it often)."""
        ...

    @operation(write=False)
    def shutdown(self) -> None:
        """Stop the daemon: its services finish their current step."""
        ...


# every method a client may call: the store's operations and the daemon's own
METHODS: dict[str, Operation] = {**OPERATIONS, **declare(DaemonControl)}
# the calls a server may answer on its event loop: short, and waiting for no disk (a durable
# commit waits for an fsync, which on a busy or network filesystem may take milliseconds)
HOT_METHODS = frozenset(name for name, op in METHODS.items() if op.hot and not op.durable)

_encoder = msgspec.msgpack.Encoder()
_arg_decoders = {name: msgspec.msgpack.Decoder(op.args) for name, op in METHODS.items()}
_result_decoders = {name: msgspec.msgpack.Decoder(op.result) for name, op in METHODS.items()}


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def frame(message: Message) -> bytes:
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes, limit: int = MAX_FRAME) -> int:
    (length,) = HEADER.unpack(header)
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes announced; the limit is {limit}: send less in one call")
    return length


class Expected(msgspec.Struct):
    """The messages one side may receive at one step, and how to name them in an error."""

    what: str
    decoder: Any


def _expect(what: str, kind: Any) -> Expected:
    return Expected(what, msgspec.msgpack.Decoder(kind))


HELLO = _expect("a Hello", Hello)
CHALLENGE = _expect("a Challenge or Denied", Challenge | Denied)
PROOF = _expect("a Proof", Proof)
WELCOME = _expect("a Welcome or Denied", Welcome | Denied)
CALL = _expect("a Call", Call)
REPLY = _expect("a Reply", Reply)


def decode(expected: Expected, body: bytes) -> Any:
    """``body`` as one of the messages ``expected``; anything else is a ProtocolError."""
    try:
        return expected.decoder.decode(body)
    except (msgspec.DecodeError, ValueError) as exc:  # a string that is not UTF-8 raises the latter
        raise ProtocolError(f"expected {expected.what}: {exc}; use balsamd's RPC client (protocol {VERSION})") from None


def nonce() -> str:
    return os.urandom(32).hex()


def proof(secret: str, role: str, site: str, client_nonce: str, daemon_nonce: str) -> str:
    """What ``role`` ("daemon" or "client") sends to prove it knows ``secret`` on the connection
    whose nonces are given, to a peer of ``site`` speaking this VERSION."""
    transcript = encode(("balsamd rpc handshake", VERSION, role, site, client_nonce, daemon_nonce))
    return hmac.new(secret.encode(), transcript, "sha256").hexdigest()


def proven(received: str, secret: str, role: str, site: str, client_nonce: str, daemon_nonce: str) -> bool:
    """Whether ``received`` is ``role``'s proof for this connection (compared in constant time)."""
    expected = proof(secret, role, site, client_nonce, daemon_nonce)
    return hmac.compare_digest(received.encode(), expected.encode())


def decode_args(method: str, raw: memoryview | bytes) -> Any:
    """The call's arguments as its method declares them; arguments of other types are the
    caller's mistake, refused like any other bad request (naming the field)."""
    if method not in _arg_decoders:
        raise ProtocolError(f"unknown method {method[:80]!r}; use one this daemon serves: {', '.join(sorted(METHODS))}")
    try:
        return _arg_decoders[method].decode(raw)
    except msgspec.ValidationError as exc:
        told = explain(str(exc))
        where = f"argument {told.field}" if told.path else "the arguments"
        raise Refused(f"bad arguments for {method}", [
            f"{where}: {told.problem}; {told.fix} (see {method} in balsamd.store.contract)"
        ]) from None  # fmt: skip
    except RecursionError:
        raise Refused(f"bad arguments for {method}", ["they are nested too deeply to decode; flatten them"]) from None
    except (msgspec.DecodeError, ValueError) as exc:
        raise ProtocolError(
            f"bad arguments for {method}: {exc}; use balsamd's RPC client (protocol {VERSION})"
        ) from None


def decode_result(method: str, raw: memoryview | bytes) -> Any:
    return _result_decoders[method].decode(raw)
