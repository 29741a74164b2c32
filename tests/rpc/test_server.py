"""The daemon's RPC server against hostile and broken peers, over raw sockets.

The daemon runs in a subprocess (started by `balsamd start`); each test speaks bytes to it and
then checks that a well-behaved client is still served.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from balsamd.rpc import protocol as p
from tests.daemon.conftest import DaemonSite, alive, running

CLOSE_TIMEOUT = 10.0  # the server closes a bad connection at once; this only bounds a failure


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonSite]:
    with running(tmp_path_factory.mktemp("rpc")) as made:
        made.command_app("Hello", "echo hello")
        made.create("Hello", 2)
        yield made


@pytest.fixture
def secret(site: DaemonSite) -> str:
    return (site.root / "secret").read_text().strip()


def connect(site: DaemonSite) -> socket.socket:
    record = site.record()
    assert record is not None
    sock = socket.create_connection(("127.0.0.1", record.port), timeout=CLOSE_TIMEOUT)
    return sock


def receive(sock: socket.socket) -> p.Message | None:
    """The next message, or None when the server closed the connection."""
    header = _exactly(sock, p.HEADER.size)
    if header is None:
        return None
    body = _exactly(sock, p.frame_length(header))
    assert body is not None, "the server closed the connection in the middle of a frame"
    return msgspec.msgpack.decode(body, type=p.Message)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection without sending anything more."""
    return receive(sock) is None


def handshake(sock: socket.socket, secret: str) -> p.Message | None:
    """Hello, the daemon's Challenge, a Proof made with ``secret``: the daemon's last answer."""
    mine = p.nonce()
    sock.sendall(p.frame(p.Hello(p.VERSION, mine)))
    challenge = receive(sock)
    assert isinstance(challenge, p.Challenge), challenge
    sock.sendall(p.frame(p.Proof(p.proof(secret, "client", challenge.site, mine, challenge.nonce))))
    return receive(sock)


def welcome(site: DaemonSite, secret: str) -> socket.socket:
    sock = connect(site)
    assert handshake(sock, secret) == p.Welcome(p.VERSION, "daemontest")
    return sock


def call(sock: socket.socket, call_id: int, method: str, args: object) -> p.Reply:
    sock.sendall(p.frame(p.Call(call_id, method, memoryview(p.encode(args)))))
    reply = receive(sock)
    assert isinstance(reply, p.Reply), reply
    assert reply.id == call_id
    return reply


def assert_serves(site: DaemonSite) -> None:
    """A good client still gets answers, and the daemon is the one that was started."""
    assert alive(site.daemon_pid())
    with site.remote() as remote:
        assert remote.client.call("ping") == "pong"
        assert remote.count() >= 2
        assert remote.client.call("status").healthy


def test_a_good_client_is_welcomed_and_served(site: DaemonSite, secret: str) -> None:
    with welcome(site, secret) as sock:
        reply = call(sock, 7, "ping", {})
        assert reply.ok
        assert msgspec.msgpack.decode(reply.value) == "pong"
        reply = call(sock, 8, "count", {"f": None})
        assert reply.ok and msgspec.msgpack.decode(reply.value) == 2


def test_the_daemon_proves_it_knows_the_secret_for_this_connection_only(site: DaemonSite, secret: str) -> None:
    mine = p.nonce()
    with connect(site) as sock:
        sock.sendall(p.frame(p.Hello(p.VERSION, mine)))
        challenge = receive(sock)
    assert isinstance(challenge, p.Challenge)
    assert challenge.site == "daemontest"
    assert challenge.nonce != mine
    assert p.proven(challenge.proof, secret, "daemon", "daemontest", mine, challenge.nonce)
    assert not p.proven(challenge.proof, secret, "client", "daemontest", mine, challenge.nonce)
    assert not p.proven(challenge.proof, secret, "daemon", "other", mine, challenge.nonce)
    assert not p.proven(challenge.proof, secret, "daemon", "daemontest", p.nonce(), challenge.nonce)
    assert secret not in challenge.proof and secret not in challenge.nonce
    assert_serves(site)


def test_a_wrong_secret_is_refused_and_nothing_is_served(site: DaemonSite, secret: str) -> None:
    with connect(site) as sock:
        assert handshake(sock, "0" * len(secret)) == p.Denied("wrong secret: use the secret file of this site")
        # whatever follows is not read, let alone served
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(p.frame(p.Call(1, "shutdown", memoryview(p.encode({})))))
        assert closed_by_server(sock)
    assert_serves(site)


def test_a_proof_replayed_from_another_connection_is_refused(site: DaemonSite, secret: str) -> None:
    mine = p.nonce()
    with connect(site) as first:
        first.sendall(p.frame(p.Hello(p.VERSION, mine)))
        seen = receive(first)
        assert isinstance(seen, p.Challenge)
        replayed = p.Proof(p.proof(secret, "client", seen.site, mine, seen.nonce))
    with connect(site) as second:
        second.sendall(p.frame(p.Hello(p.VERSION, mine)))  # the same nonce: the daemon's is new
        assert isinstance(receive(second), p.Challenge)
        second.sendall(p.frame(replayed))
        assert receive(second) == p.Denied("wrong secret: use the secret file of this site")
    assert_serves(site)


def test_an_unsupported_protocol_version_is_refused(site: DaemonSite) -> None:
    with connect(site) as sock:
        sock.sendall(p.frame(p.Hello(p.VERSION + 1, p.nonce())))
        assert receive(sock) == p.Denied(
            f"protocol version {p.VERSION + 1} is not supported (this daemon speaks {p.VERSION}); use the balsamd "
            "the daemon runs"
        )
        assert closed_by_server(sock)
    assert_serves(site)


def test_a_client_of_version_2_is_told_its_version_is_not_spoken(site: DaemonSite, secret: str) -> None:
    # it opened with ["Hello", 2, secret, name]
    with connect(site) as sock:
        old = p.encode(("Hello", 2, secret, "cli@old"))
        sock.sendall(p.HEADER.pack(len(old)) + old)
        assert receive(sock) == p.Denied(
            f"protocol version 2 is not supported (this daemon speaks {p.VERSION}); use the balsamd the daemon runs"
        )
        assert closed_by_server(sock)


def test_a_call_before_the_handshake_is_dropped_unserved(site: DaemonSite) -> None:
    with connect(site) as sock:
        sock.sendall(p.frame(p.Call(1, "shutdown", memoryview(p.encode({})))))
        assert closed_by_server(sock)
    assert_serves(site)


def test_a_handshake_frame_over_its_limit_is_dropped_before_it_is_read(site: DaemonSite) -> None:
    with connect(site) as sock:
        sock.sendall(p.HEADER.pack(p.HANDSHAKE_FRAME + 1))
        assert closed_by_server(sock)
    assert_serves(site)


def test_a_proof_before_hello_is_dropped(site: DaemonSite, secret: str) -> None:
    with connect(site) as sock:
        sock.sendall(p.frame(p.Proof(p.proof(secret, "client", "daemontest", p.nonce(), p.nonce()))))
        assert closed_by_server(sock)
    assert_serves(site)


def _garbage_cases() -> dict[str, bytes]:
    return {
        "http": b"GET / HTTP/1.1\r\nHost: balsamd\r\n\r\n",
        "oversized header": p.HEADER.pack(p.MAX_FRAME + 1),
        "largest header": b"\xff\xff\xff\xff",
        "not msgpack": p.HEADER.pack(3) + b"\xc1\xc1\xc1",
        "msgpack but no message": p.HEADER.pack(len(p.encode({"a": 1}))) + p.encode({"a": 1}),
        "empty frame": p.HEADER.pack(0),
        "random bytes": p.HEADER.pack(64) + os.urandom(64),
        # a message whose tag is not UTF-8: msgspec raises UnicodeDecodeError, not DecodeError
        "a tag that is not utf-8": p.HEADER.pack(4) + b"\x91\xa2\xff\xfe",
    }


@pytest.mark.parametrize("handshake", [False, True], ids=["before the handshake", "after it"])
@pytest.mark.parametrize("name", list(_garbage_cases()))
def test_garbage_drops_the_connection_and_the_daemon_goes_on(
    site: DaemonSite, secret: str, name: str, handshake: bool
) -> None:
    sock = welcome(site, secret) if handshake else connect(site)
    with sock:
        sock.sendall(_garbage_cases()[name])
        # the server closes without waiting for more (an oversized frame is never read)
        assert closed_by_server(sock)
    assert_serves(site)


@pytest.mark.parametrize("handshake", [False, True], ids=["before the handshake", "after it"])
def test_a_truncated_frame_drops_the_connection(site: DaemonSite, secret: str, handshake: bool) -> None:
    sock = welcome(site, secret) if handshake else connect(site)
    with sock:
        whole = p.frame(p.Call(1, "ping", memoryview(p.encode({}))))
        sock.sendall(whole[: len(whole) - 3])
        sock.shutdown(socket.SHUT_WR)
        assert closed_by_server(sock)
    assert_serves(site)


def test_a_message_other_than_a_call_after_the_handshake_drops_the_connection(site: DaemonSite, secret: str) -> None:
    with welcome(site, secret) as sock:
        sock.sendall(p.frame(p.Hello(p.VERSION, p.nonce())))
        assert closed_by_server(sock)
    assert_serves(site)


def test_unknown_methods_and_bad_arguments_get_an_error_reply(site: DaemonSite, secret: str) -> None:
    with welcome(site, secret) as sock:
        reply = call(sock, 1, "drop_tables", {})
        assert (reply.ok, reply.error_type) == (False, "ProtocolError")
        assert reply.error.startswith("unknown method 'drop_tables'; use one this daemon serves: activity, ")
        assert "apply_intents, " in reply.error
        # arguments of the wrong types are refused like any bad request, naming the field
        reply = call(sock, 2, "get", {"job_id": 5})
        assert (reply.ok, reply.error_type) == (False, "Refused")
        assert reply.error == (
            "bad arguments for get: argument job_id: expected a string, got a whole number; give a string "
            "(see get in balsamd.store.contract)"
        )
        reply = call(sock, 3, "get", {})
        assert (
            reply.error == "bad arguments for get: argument job_id: missing; add it (see get in balsamd.store.contract)"
        )
        reply = call(sock, 4, "claim", [1, 2, 3])
        assert reply.error.startswith(
            "bad arguments for claim: the arguments: expected a dict, got a list; give a dict"
        )
        reply = call(sock, 5, "update_states", {"session_id": "x", "updates": [["id", "NOT_A_STATE", 1.0]]})
        assert reply.error.startswith(
            "bad arguments for update_states: argument updates[0][1]: 'NOT_A_STATE' is not a value"
        )
        reply = call(sock, 6, "get", {"job_id": "x", "now": 1})
        assert reply.error.startswith("bad arguments for get: argument now: unknown field; remove it")
        # the connection survives a refused call
        reply = call(sock, 7, "ping", {})
        assert reply.ok and msgspec.msgpack.decode(reply.value) == "pong"
    assert_serves(site)


def test_a_silent_or_half_sent_client_blocks_no_one(site: DaemonSite, secret: str) -> None:
    with connect(site), welcome(site, secret) as half:
        half.sendall(p.HEADER.pack(100) + b"\x00" * 10)
        assert_serves(site)


def test_a_store_error_is_a_reply_not_a_disconnect(site: DaemonSite, secret: str) -> None:
    with welcome(site, secret) as sock:
        reply = call(sock, 1, "get", {"job_id": "NOPE"})
        assert (reply.ok, reply.error_type) == (False, "JobNotFound")
        assert reply.error == "no job with id NOPE (list jobs with `balsamd job ls`)"
        assert call(sock, 2, "ping", {}).ok
    assert_serves(site)


def test_the_site_secret_is_created_private(tmp_path: Path) -> None:
    from balsamd.site import init_site

    layout = init_site(tmp_path / "site")
    assert os.stat(layout.secret).st_mode & 0o777 == 0o600
    assert len(layout.secret.read_text().strip()) == 64
