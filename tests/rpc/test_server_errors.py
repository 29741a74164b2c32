"""A connection that meets an error nobody foresaw, before or after its handshake, is dropped and
logged; the server goes on serving the others."""

from __future__ import annotations

import logging
import socket

import anyio
import msgspec
import pytest

from balsamd.rpc import protocol as p
from balsamd.rpc.server import RpcServer

SECRET = "secret"


def _receive(sock: socket.socket) -> bytes:
    header = sock.recv(p.HEADER.size, socket.MSG_WAITALL)
    return sock.recv(p.frame_length(header), socket.MSG_WAITALL) if header else b""


def _handshake(sock: socket.socket) -> None:
    mine = p.nonce()
    sock.sendall(p.frame(p.Hello(p.VERSION, mine)))
    challenge = msgspec.msgpack.decode(_receive(sock), type=p.Challenge)
    sock.sendall(p.frame(p.Proof(p.proof(SECRET, "client", challenge.site, mine, challenge.nonce))))
    assert isinstance(msgspec.msgpack.decode(_receive(sock), type=p.Message), p.Welcome)


def _ping(sock: socket.socket) -> bytes:
    sock.sendall(p.frame(p.Call(1, "ping", memoryview(p.encode({})))))
    return _receive(sock)


@pytest.mark.parametrize("when", ["before the handshake", "after it"])
def test_an_unexpected_error_drops_only_its_connection_and_is_logged(monkeypatch, caplog, when: str) -> None:
    decode = p.decode
    broken = p.HELLO if when == "before the handshake" else p.CALL
    faults = []

    def decode_once_broken(expected: p.Expected, body: bytes) -> object:
        if expected is broken and not faults:
            faults.append(expected)
            raise RuntimeError("decoder fault")
        return decode(expected, body)

    monkeypatch.setattr(p, "decode", decode_once_broken)
    server = RpcServer({"ping": lambda _args: "pong"}, SECRET, "site", anyio.CapacityLimiter(1))

    def client(port: int) -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as faulty:
            if when == "after it":
                _handshake(faulty)
                dropped = _ping(faulty)
            else:
                faulty.sendall(p.frame(p.Hello(p.VERSION, p.nonce())))
                dropped = _receive(faulty)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as next_one:
            _handshake(next_one)
            return dropped, _ping(next_one)

    async def main() -> tuple[bytes, bytes]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, listener)
            answers = await anyio.to_thread.run_sync(client, port)
            tg.cancel_scope.cancel()
        return answers

    with caplog.at_level(logging.WARNING, logger="balsamd"):
        dropped, served = anyio.run(main)
    assert dropped == b""
    assert msgspec.msgpack.decode(msgspec.msgpack.decode(served, type=p.Reply).value) == "pong"
    assert "after an unexpected error" in caplog.text
    assert "decoder fault" in caplog.text
