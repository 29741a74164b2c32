"""The daemon's RPC server: anyio TCP, one task per connection, calls answered in order.

Before a connection is served it passes the handshake (``protocol``), read straight from its
socket, a frame of at most HANDSHAKE_FRAME bytes at a time, and under three limits: the whole
handshake within HANDSHAKE_TIMEOUT; at most ``Limits.waiting`` connections in handshake at once,
and ``Limits.waiting_per_peer`` from one address (a newcomer beyond either closes the one that
has waited longest, so idle connections cannot lock anyone out); at most one log line per
address per ``Limits.log_interval`` about peers that failed it.

A handler is a plain function (run in a worker thread under the store's capacity limiter,
because apsw calls block; a hot one that waits for no fsync on the event loop when the store is
free at once, as a thread hop costs more than the call) or a coroutine function (awaited in the
event loop).  A peer that fails the handshake, sends garbage or an oversized frame is
disconnected; the daemon goes on.
"""

from __future__ import annotations

import inspect
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketStream

from balsamd.diskspace import FullWatch, Notice, Say
from balsamd.rpc import protocol as p
from balsamd.store.contract import OPERATIONS, Operation
from balsamd.store.errors import REFUSALS, DiskFull

Handler = Callable[[Any], Any]

log = logging.getLogger("balsamd.rpc")

WRITES = frozenset(name for name, op in OPERATIONS.items() if op.write)


@dataclass(frozen=True)
class Limits:
    """What a peer that has not proved it knows the secret may cost the daemon."""

    handshake_timeout: float = p.HANDSHAKE_TIMEOUT
    waiting: int = 128  # connections in handshake at once, from all addresses
    waiting_per_peer: int = 32  # ... from one address
    log_interval: float = 60.0  # seconds between log lines about one address
    logged_peers: int = 1024  # addresses remembered for that; beyond, the others share one line


class FrameReader:
    """Frames from a byte stream; a small frame arrives whole and costs one receive."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            self.buffer += await self.stream.receive()

    async def call(self) -> p.Call:
        await self._fill(p.HEADER.size)
        length = p.frame_length(bytes(self.buffer[: p.HEADER.size]))
        end = p.HEADER.size + length
        await self._fill(end)
        body = bytes(self.buffer[p.HEADER.size : end])
        del self.buffer[:end]
        return p.decode(p.CALL, body)


class Admission:
    """The connections in handshake, oldest first; a newcomer over a limit closes the oldest
    from its address, or else the oldest of all."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.waiting: dict[anyio.CancelScope, str] = {}  # in order of arrival

    def enter(self, host: str) -> anyio.CancelScope:
        """The scope to run ``host``'s handshake in; cancelled if it is pushed out."""
        same = [scope for scope, h in self.waiting.items() if h == host]
        if len(same) >= self.limits.waiting_per_peer:
            self._push_out(same[0])
        elif len(self.waiting) >= self.limits.waiting:
            self._push_out(next(iter(self.waiting)))
        scope = anyio.CancelScope()
        self.waiting[scope] = host
        return scope

    def leave(self, scope: anyio.CancelScope) -> None:
        self.waiting.pop(scope, None)

    def _push_out(self, scope: anyio.CancelScope) -> None:
        del self.waiting[scope]
        scope.cancel()


class QuietLog:
    """Warnings about unauthenticated peers, at most one line per address per ``interval``.
    The lines held back are counted; the count is logged when the interval is over (with the
    next warning about anyone).  Beyond ``max_peers`` addresses, the others share one line."""

    OTHERS = "other addresses"

    def __init__(
        self, logger: logging.Logger, interval: float, max_peers: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.max_peers = max_peers
        self.clock = clock
        self.last: dict[str, tuple[float, int]] = {}  # address -> (its last line, lines held since); oldest first

    def warning(self, host: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = self.clock()
        self._forget(now)
        if host not in self.last and len(self.last) >= self.max_peers:
            host = self.OTHERS
        if host in self.last:
            when, held = self.last[host]
            self.last[host] = (when, held + 1)
            return
        self.last[host] = (now, 0)
        self.logger.warning(message, *args, exc_info=exc_info)

    def _forget(self, now: float) -> None:
        """Forget the addresses whose last line is an interval old, telling what was held back."""
        while self.last:
            host, (when, held) = next(iter(self.last.items()))
            if now - when < self.interval:
                return
            del self.last[host]
            if held:
                self.logger.warning("%d more lines about %s were held back in %.0f s", held, host, now - when)


class RpcServer:
    def __init__(
        self,
        handlers: dict[str, Handler],
        secret: str,
        site_name: str,
        limiter: anyio.CapacityLimiter,
        limits: Limits = Limits(),
    ) -> None:
        unknown = set(handlers) - set(p.METHODS)
        if unknown:
            raise ValueError(f"handlers for undeclared methods: {sorted(unknown)}")
        self.handlers = handlers
        self.secret = secret
        self.site_name = site_name
        self.limiter = limiter
        self.limits = limits
        self.inline: Callable[[Handler, Any], tuple[bool, Any]] | None = None
        self.admission = Admission(limits)
        self.quiet = QuietLog(log, limits.log_interval, limits.logged_peers)
        self.full = FullWatch()  # calls finding the store's disk full

    async def serve(self, listener: anyio.abc.Listener[Any]) -> None:
        """Serve every connection to ``listener`` until cancelled; closes it at the end.

        Connections are accepted from its sockets here, not by ``listener.accept()``: a stream
        made by anyio reads whatever the peer sends, 256 KiB at a time, before the handshake
        could bound it."""
        listeners = getattr(listener, "listeners", [listener])
        async with listener, anyio.create_task_group() as tg:
            for one in listeners:
                tg.start_soon(self._accept, one.extra(anyio.abc.SocketAttribute.raw_socket), tg)

    async def _accept(self, listening: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        while True:
            await anyio.wait_readable(listening)
            try:
                sock, address = listening.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue
            except OSError as exc:  # out of file descriptors: wait rather than spin
                log.error("cannot accept a connection: %s", exc)
                await anyio.sleep(0.5)
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tg.start_soon(self.connection, sock, address)

    async def connection(self, sock: socket.socket, address: Any) -> None:
        """Serve one accepted connection: the handshake, then its calls until it closes.  Whatever
        happens on it, it alone is dropped: the daemon serves the others."""
        host, peer = _peer(address)
        stream = None
        try:
            if await self._admit(sock, host, peer):
                stream = await SocketStream.from_socket(sock)
        except Exception as exc:
            self.quiet.warning(
                host, "dropped connection from %s after an unexpected error: %.200r", peer, str(exc), exc_info=True
            )
        finally:
            if stream is None:
                sock.close()
        if stream is not None:
            await self._serve_calls(stream, peer)

    async def _serve_calls(self, stream: SocketStream, peer: str) -> None:
        async with stream:
            frames = FrameReader(stream)
            try:
                while True:
                    call = await frames.call()
                    await stream.send(p.frame(await self.dispatch(call)))
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                return
            except p.ProtocolError as exc:
                log.warning("dropped connection from %s: %s", peer, exc)
            except Exception:
                log.exception("dropped connection from %s after an unexpected error", peer)

    async def _admit(self, sock: socket.socket, host: str, peer: str) -> bool:
        """Whether the peer proved it knows the secret, within the limits; failures are logged
        at most once an interval per address."""
        welcomed = False
        scope = self.admission.enter(host)
        try:
            with scope, anyio.fail_after(self.limits.handshake_timeout):
                welcomed = await self._handshake(sock, host, peer)
        except TimeoutError:
            self.quiet.warning(host, "connection from %s did not finish the handshake in time", peer)
        except (anyio.EndOfStream, OSError):  # the peer hung up
            pass
        except p.ProtocolError as exc:
            self.quiet.warning(host, "dropped connection from %s in handshake: %.200r", peer, str(exc))
        finally:
            self.admission.leave(scope)
        if scope.cancel_called:
            self.quiet.warning(
                host, "closed connection from %s in handshake: newer ones came (at most %d wait, %d from one address)",
                peer, self.limits.waiting, self.limits.waiting_per_peer,
            )  # fmt: skip
        return welcomed

    async def _handshake(self, sock: socket.socket, host: str, peer: str) -> bool:
        hello = await _receive_handshake(sock, p.HELLO)
        if hello.version != p.VERSION:
            reason = (
                f"protocol version {hello.version} is not supported (this daemon speaks {p.VERSION}); use the "
                "balsamd the daemon runs"
            )
            await self._deny(sock, host, peer, reason)
            return False
        mine = p.nonce()
        proof = p.proof(self.secret, "daemon", self.site_name, hello.nonce, mine)
        await _send_all(sock, p.frame(p.Challenge(self.site_name, mine, proof)))
        answer = await _receive_handshake(sock, p.PROOF)
        if not p.proven(answer.proof, self.secret, "client", self.site_name, hello.nonce, mine):
            await self._deny(sock, host, peer, "wrong secret: use the secret file of this site")
            return False
        await _send_all(sock, p.frame(p.Welcome(p.VERSION, self.site_name)))
        return True

    async def _deny(self, sock: socket.socket, host: str, peer: str, reason: str) -> None:
        self.quiet.warning(host, "refused connection from %s: %s", peer, reason)
        await _send_all(sock, p.frame(p.Denied(reason)))

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
            if self.full.full and call.method in WRITES:
                self._say_full(self.full.succeeded(time.monotonic()), None)
            return p.Reply(call.id, True, memoryview(p.encode(value)))
        except Exception as exc:
            if isinstance(exc, DiskFull):
                self._say_full(self.full.failed(time.monotonic()), exc)
            return error_reply(call, exc)

    @staticmethod
    def _say_full(say: Say | None, error: DiskFull | None) -> None:
        """Calls that found the store's disk full are the callers' to handle (launchers keep
        what they could not record); the daemon says it once, then once a minute."""
        if say is None:
            return
        if say.notice is Notice.SPACE_AGAIN:
            log.info("the store takes writes again")
        elif say.notice is Notice.FULL:
            log.warning("calls that write the store fail: %s", error)
        else:
            log.warning("calls that write the store still fail: %s (%d more since the last line)", error, say.held)


async def _receive_handshake(sock: socket.socket, expected: p.Expected) -> Any:
    """The next frame, read from the socket itself so that no more than it is ever read."""
    header = await _receive_exactly(sock, p.HEADER.size)
    return p.decode(expected, await _receive_exactly(sock, p.frame_length(header, p.HANDSHAKE_FRAME)))


async def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        await anyio.wait_readable(sock)
        try:
            chunk = sock.recv(size - len(data))
        except BlockingIOError:
            continue
        if not chunk:
            raise anyio.EndOfStream
        data += chunk
    return bytes(data)


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        await anyio.wait_writable(sock)
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            continue


def answer(handlers: dict[str, Handler], call: p.Call) -> p.Reply:
    """The reply to ``call``, made by its (synchronous) handler in this thread."""
    try:
        args = p.decode_args(call.method, call.args)
        handler = handlers.get(call.method)
        if handler is None:
            raise p.ProtocolError(f"method {call.method!r} is not served here")
        return p.Reply(call.id, True, memoryview(p.encode(handler(args))))
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


def _peer(address: Any) -> tuple[str, str]:
    """The peer's host (what the limits count by) and host:port (what the log names)."""
    if isinstance(address, tuple):
        return str(address[0]), f"{address[0]}:{address[1]}"
    return str(address), str(address)
