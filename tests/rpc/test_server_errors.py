"""A connection handler that meets an error nobody foresaw drops that connection and logs it."""

from __future__ import annotations

import logging

import anyio

from balsamd.rpc import protocol as p
from balsamd.rpc.server import RpcServer


def test_an_unexpected_error_drops_only_its_connection_and_is_logged(monkeypatch, caplog) -> None:
    def broken(_body: bytes) -> p.Message:
        raise RuntimeError("decoder fault")

    monkeypatch.setattr(p, "decode_message", broken)
    server = RpcServer({}, "secret", "site", anyio.CapacityLimiter(1))

    async def main() -> bytes:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, server.serve)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(p.HEADER.pack(1) + b"\x90")
                with anyio.fail_after(5):
                    try:
                        received = await client.receive()
                    except anyio.EndOfStream:
                        received = b""
            tg.cancel_scope.cancel()
        return received

    with caplog.at_level(logging.ERROR, logger="balsamd"):
        assert anyio.run(main) == b""
    assert "after an unexpected error" in caplog.text
    assert "decoder fault" in caplog.text
