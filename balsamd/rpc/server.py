"""The daemon's RPC server: anyio TCP, one task per connection, calls answered in order.

A handler is a plain function (run in a worker thread under the store's capacity limiter,
because apsw calls block; a hot one on the event loop when the store is free at once, as a
thread hop costs more than the call) or a coroutine function (awaited in the event loop).  A peer that
fails the handshake, sends garbage or an oversized frame is disconnected; the daemon goes on.
"""

from __future__ import annotations

import hmac
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import msgspec
from anyio.abc import SocketStream

from balsamd.rpc import protocol as p
from balsamd.store.contract import OPERATIONS, Operation
from balsamd.store.errors import REFUSALS

Handler = Callable[[Any], Any]

log = logging.getLogger("balsamd.rpc")

HANDSHAKE_TIMEOUT = 10.0


class FrameReader:
    """Frames from a byte stream; a small frame arrives whole and costs one receive."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            self.buffer += await self.stream.receive()

    async def message(self) -> p.Message:
        await self._fill(p.HEADER.size)
        length = p.frame_length(bytes(self.buffer[: p.HEADER.size]))
        end = p.HEADER.size + length
        await self._fill(end)
        body = bytes(self.buffer[p.HEADER.size : end])
        del self.buffer[:end]
        return p.decode_message(body)


class RpcServer:
    def __init__(
        self,
        handlers: dict[str, Handler],
        secret: str,
        site_name: str,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        unknown = set(handlers) - set(p.METHODS)
        if unknown:
            raise ValueError(f"handlers for undeclared methods: {sorted(unknown)}")
        self.handlers = handlers
        self.secret = secret
        self.site_name = site_name
        self.limiter = limiter
        self.inline: Callable[[Handler, Any], tuple[bool, Any]] | None = None

    async def serve(self, stream: SocketStream) -> None:
        peer = _peer(stream)
        frames = FrameReader(stream)
        async with stream:
            try:
                with anyio.fail_after(HANDSHAKE_TIMEOUT):
                    hello = await frames.message()
                if not self._accept(hello):
                    reason = self._refusal(hello)
                    log.warning("refused connection from %s: %s", peer, reason)
                    await stream.send(p.frame(p.Denied(reason)))
                    return
                await stream.send(p.frame(p.Welcome(p.VERSION, self.site_name)))
                while True:
                    call = await frames.message()
                    if not isinstance(call, p.Call):
                        raise p.ProtocolError(f"expected a Call, got {type(call).__name__}")
                    await stream.send(p.frame(await self.dispatch(call)))
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead, ConnectionError):
                return
            except TimeoutError:
                log.warning("connection from %s sent no handshake in time", peer)
            except p.ProtocolError as exc:
                log.warning("dropped connection from %s: %s", peer, exc)
            except Exception:  # whatever one connection sends, the daemon serves the others
                log.exception("dropped connection from %s after an unexpected error", peer)

    def _accept(self, hello: p.Message) -> bool:
        return (
            isinstance(hello, p.Hello)
            and hello.version == p.VERSION
            and hmac.compare_digest(hello.secret.encode(), self.secret.encode())
        )

    @staticmethod
    def _refusal(hello: p.Message) -> str:
        if not isinstance(hello, p.Hello):
            return "expected a Hello"
        if hello.version != p.VERSION:
            return f"protocol version {hello.version} is not supported (this daemon speaks {p.VERSION})"
        return "wrong secret: use the secret file of this site"

    async def dispatch(self, call: p.Call) -> p.Reply:
        try:
            args = p.decode_args(call.method, call.args)
            handler = self.handlers.get(call.method)
            if handler is None:
                raise p.ProtocolError(f"method {call.method!r} is not served by this daemon")
            if inspect.iscoroutinefunction(handler):
                value = await handler(args)
            else:
                done, value = (False, None)
                if self.inline is not None and call.method in p.HOT_METHODS:
                    done, value = self.inline(handler, args)
                if not done:
                    value = await anyio.to_thread.run_sync(handler, args, limiter=self.limiter)
            return p.Reply(call.id, True, msgspec.Raw(p.encode(value)))
        except Exception as exc:
            return error_reply(call, exc)


def answer(handlers: dict[str, Handler], call: p.Call) -> p.Reply:
    """The reply to ``call``, made by its (synchronous) handler in this thread."""
    try:
        args = p.decode_args(call.method, call.args)
        handler = handlers.get(call.method)
        if handler is None:
            raise p.ProtocolError(f"method {call.method!r} is not served here")
        return p.Reply(call.id, True, msgspec.Raw(p.encode(handler(args))))
    except Exception as exc:
        return error_reply(call, exc)


def handlers_for(target: object, operations: Iterable[Operation] = OPERATIONS.values()) -> dict[str, Handler]:
    """A handler for each operation, answered by ``target`` (e.g. a store)."""
    return {op.name: op.bind(target) for op in operations}


def error_reply(call: p.Call, exc: Exception) -> p.Reply:
    if isinstance(exc, p.ProtocolError):
        return p.Reply(call.id, False, error_type="ProtocolError", error=str(exc))
    if not isinstance(exc, REFUSALS):  # not a caller's doing: a fault of the daemon's
        log.exception("%s failed", call.method)
    return p.Reply(call.id, False, error_type=type(exc).__name__, error=str(exc), error_detail=_detail(exc))


def _detail(exc: Exception) -> dict[str, Any]:
    """The error's plain attributes that travel; anything that does not encode stays behind."""
    detail = {}
    for name, value in vars(exc).items():
        try:
            p.encode(value)
        except Exception:
            continue
        detail[name] = value
    return detail


def _peer(stream: SocketStream) -> str:
    try:
        address = stream.extra(anyio.abc.SocketAttribute.remote_address)
    except Exception:
        return "?"
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
