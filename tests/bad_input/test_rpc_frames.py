"""Raw frames a broken or hostile client sends to the daemon's RPC server: each call is answered
with an error naming the argument and what to give, or the connection is dropped with a logged
reason; the store is unchanged and the server serves the next client.

The server is the daemon's own (``store_server``) over a site store, on a loopback port.
A case is a method and its raw arguments (answered on a welcomed connection), or raw bytes sent
as the first frame or after the handshake.
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from balsamd.rpc import protocol as p
from balsamd.store.store import SiteStore
from balsamd.validate import JobSpecError, Refused
from tests.bad_input.table import Case, Snapshot, assert_told, case, params
from tests.conftest import open_store
from tests.store.conftest import listening

SECRET = "bad-input"
SITE = "frames"
HUGE = p.HEADER.pack(p.MAX_FRAME + 1)


class Call(msgspec.Struct, frozen=True):
    """``method`` called with ``args`` encoded as they are (not as its Struct)."""

    method: str
    args: Any


class Raw(msgspec.Struct, frozen=True):
    """Bytes sent as they are, ``first`` (instead of a Hello) or after the handshake."""

    data: bytes
    first: bool = False


SPEC = {"app": "noop", "workdir": "w"}
DEEP: Any = 1
for _ in range(100):
    DEEP = [DEEP]

CASES = [
    # arguments of the wrong type, unknown or missing
    case("get-id-a-number", Call("get", {"job_id": 5}), Refused, "argument job_id", "a string", "give"),
    case("get-missing-id", Call("get", {}), Refused, "argument job_id", "missing", "add it"),
    case("get-unknown-field", Call("get", {"job_id": "x", "now": 1}), Refused, "argument now", "unknown", "remove"),
    case("args-a-list", Call("claim", [1, 2, 3]), Refused, "the arguments", "a dict"),
    case("args-a-string", Call("count", "all"), Refused, "the arguments", "a dict"),
    case("specs-a-string", Call("create_jobs", {"specs": "x"}), Refused, "argument specs", "a list"),
    case(
        "spec-app-a-number",
        Call("create_jobs", {"specs": [{**SPEC, "app": 1}]}),
        Refused,
        "argument specs[0].app",
        "a string",
    ),
    case(
        "spec-unknown-field",
        Call("create_jobs", {"specs": [{**SPEC, "nodes": 2}]}),
        Refused,
        "argument specs[0].nodes",
        "unknown",
    ),
    case(
        "spec-parameters-a-list",
        Call("create_jobs", {"specs": [{**SPEC, "parameters": [1]}]}),
        Refused,
        "argument specs[0].parameters",
        "a dict",
    ),
    case(
        "spec-workdir-nul", Call("create_jobs", {"specs": [{**SPEC, "workdir": "a\0"}]}), JobSpecError, "workdir", "NUL"
    ),
    case(
        "spec-tag-nul",
        Call("create_jobs", {"specs": [{**SPEC, "tags": {"k": "\0"}}]}),
        JobSpecError,
        "tags['k']",
        "NUL",
    ),
    case("spec-shared-workdir", Call("create_jobs", {"specs": [SPEC, SPEC]}), JobSpecError, "same workdir", "its own"),
    case(
        "spec-nested-deep",
        Call("create_jobs", {"specs": [{**SPEC, "data": {"x": DEEP}}]}),
        JobSpecError,
        "nested",
        "flatten",
    ),
    case(
        "update-state-unknown",
        Call("update_states", {"session_id": "x", "updates": [["id", "DONE", 1.0]]}),
        Refused,
        "argument updates[0][1]",
        "'DONE'",
        "use one",
    ),
    case("events-limit-negative", Call("events", {"limit": -1}), Refused, "limit", "-1", "give"),
    case("filter-limit-negative", Call("filter", {"f": {"limit": -5}}), Refused, "limit", "give"),
    case("unknown-method", Call("drop_tables", {}), p.ProtocolError, "unknown method 'drop_tables'", "use one"),
    case("private-method", Call("_insert_jobs", {}), p.ProtocolError, "unknown method", "use one"),
    case("args-not-msgpack", Call("get", b"\xc1"), p.ProtocolError, "bad arguments for get", "RPC client"),
    # frames that are not this protocol: the connection is dropped, and the reason logged
    case(
        "hello-old-version",
        Raw(p.frame(p.Hello(2, p.nonce())), first=True),
        p.ProtocolError,
        "protocol version 2",
        "use the balsamd",
    ),
    case(
        "hello-a-call",
        Raw(p.frame(p.Call(1, "ping", memoryview(b"\x80"))), first=True),
        p.ProtocolError,
        "expected a Hello",
        "RPC client",
    ),
    case(
        "hello-not-msgpack",
        Raw(p.HEADER.pack(3) + b"\xc1\xc1\xc1", first=True),
        p.ProtocolError,
        "expected a Hello",
        "RPC client",
    ),
    case("hello-oversized", Raw(HUGE, first=True), p.ProtocolError, "bytes announced", "send less"),
    case("call-oversized", Raw(HUGE), p.ProtocolError, "bytes announced", "send less"),
    case("call-a-hello", Raw(p.frame(p.Hello(p.VERSION, p.nonce()))), p.ProtocolError, "expected a Call", "RPC client"),
    case("call-not-msgpack", Raw(p.HEADER.pack(2) + b"\xc1\xc1"), p.ProtocolError, "expected a Call", "RPC client"),
    case(
        "call-id-a-string",
        Raw(p.HEADER.pack(len(b := msgspec.msgpack.encode(["Call", "one", "ping", b"\x80"]))) + b),
        p.ProtocolError,
        "expected a Call",
        "RPC client",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SiteStore, Path, int]]:
    path = tmp_path_factory.mktemp("frames") / "balsamd.db"
    store = open_store(path)
    with listening(store, SECRET, SITE) as port:
        yield store, path.parent, port
    store.close()


_peers = itertools.count()


def receive(sock: socket.socket) -> bytes:
    header = sock.recv(p.HEADER.size, socket.MSG_WAITALL)
    return sock.recv(p.frame_length(header), socket.MSG_WAITALL) if header else b""


def welcomed(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    mine = p.nonce()
    sock.sendall(p.frame(p.Hello(p.VERSION, mine)))
    challenge = msgspec.msgpack.decode(receive(sock), type=p.Challenge)
    sock.sendall(p.frame(p.Proof(p.proof(SECRET, "client", challenge.site, mine, challenge.nonce))))
    assert isinstance(msgspec.msgpack.decode(receive(sock), type=p.Message), p.Welcome)
    return sock


def answer(port: int, given: Call | Raw) -> str:
    """The error the server gave: its reply's, its Denied reason, or (the connection dropped)
    what it logged."""
    if isinstance(given, Call):
        with welcomed(port) as sock:
            args = given.args if isinstance(given.args, bytes) else p.encode(given.args)
            sock.sendall(p.frame(p.Call(1, given.method, memoryview(args))))
            reply = msgspec.msgpack.decode(receive(sock), type=p.Reply)
            assert not reply.ok
            return f"{reply.error_type}: {reply.error}"
    # the log tells of handshakes dropped once a minute per address: each case comes from its own
    address = (f"127.0.0.{2 + next(_peers)}", 0)
    sock = socket.create_connection(("127.0.0.1", port), 10, address) if given.first else welcomed(port)
    with sock:
        sock.sendall(given.data)
        body = receive(sock)
        if body:
            denied = msgspec.msgpack.decode(body, type=p.Denied)
            return f"ProtocolError: {denied.reason}"
        return ""


@pytest.mark.parametrize("bad", params(CASES))
def test_a_bad_frame_is_refused_and_the_server_goes_on(
    server: tuple[SiteStore, Path, int], bad: Case, caplog: pytest.LogCaptureFixture
) -> None:
    _, root, port = server
    before = Snapshot.of(root)
    with caplog.at_level(logging.WARNING, logger="balsamd"):
        told = answer(port, bad.given)
    assert isinstance(bad.error, type)
    if told:
        assert told.startswith(f"{bad.error.__name__}: "), told
    else:  # dropped: the reason is in the daemon's log
        told = caplog.text
        assert "dropped connection" in told
    assert_told(told, bad.words)
    assert Snapshot.of(root) == before
    with welcomed(port) as sock:
        sock.sendall(p.frame(p.Call(2, "ping", memoryview(p.encode({})))))
        assert msgspec.msgpack.decode(msgspec.msgpack.decode(receive(sock), type=p.Reply).value) == "pong"
