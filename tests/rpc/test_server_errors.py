"""A connection handler that meets an error nobody foresaw drops that connection and logs it."""

from __future__ import annotations

import logging
import socket

import anyio
import msgspec

from balsamd.rpc import protocol as p
from balsamd.rpc.server import RpcServer

SECRET = "secret"


def _handshake(sock: socket.socket) -> None:
    def receive() -> bytes:
        header = sock.recv(p.HEADER.size, socket.MSG_WAITALL)
        return sock.recv(p.frame_length(header), socket.MSG_WAITALL)

    mine = p.nonce()
    sock.sendall(p.frame(p.Hello(p.VERSION, mine)))
    challenge = msgspec.msgpack.decode(receive(), type=p.Challenge)
    sock.sendall(p.frame(p.Proof(p.proof(SECRET, "client", challenge.site, mine, challenge.nonce))))
    assert isinstance(msgspec.msgpack.decode(receive(), type=p.Message), p.Welcome)


def test_an_unexpected_error_drops_only_its_connection_and_is_logged(monkeypatch, caplog) -> None:
    decode = p.decode

    def broken(expected: p.Expected, body: bytes) -> object:
        if expected is p.CALL:
            raise RuntimeError("decoder fault")
        return decode(expected, body)

    monkeypatch.setattr(p, "decode", broken)
    server = RpcServer({}, SECRET, "site", anyio.CapacityLimiter(1))

    async def main() -> bytes:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, listener)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                await anyio.to_thread.run_sync(_handshake, sock)
                sock.sendall(p.frame(p.Call(1, "ping", memoryview(p.encode({})))))
                received = await anyio.to_thread.run_sync(sock.recv, 1024)
            tg.cancel_scope.cancel()
        return received

    with caplog.at_level(logging.ERROR, logger="balsamd"):
        assert anyio.run(main) == b""
    assert "after an unexpected error" in caplog.text
    assert "decoder fault" in caplog.text
