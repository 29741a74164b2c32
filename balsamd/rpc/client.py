"""A blocking RPC client for launchers and the CLI, and the store contract over it.

One connection, calls in order.  A broken connection is reopened on the next call, with an
exponential backoff between attempts, so a launcher that keeps calling while the daemon
restarts neither spins nor gives up: its calls fail fast until the daemon is back.

The client never sends the secret: it proves it knows it only to a peer that proved it first
(``protocol``), so whatever holds the daemon's port after the daemon died learns nothing.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from balsamd.rpc import protocol as p
from balsamd.states import IllegalTransition, JobState
from balsamd.store.contract import OPERATIONS, Operation, Store
from balsamd.store.errors import REFUSALS
from balsamd.validate import Refused


class RpcUnavailable(ConnectionError):
    """The daemon cannot be reached now; the call was not made (or its reply was lost)."""


class RpcImpostor(RpcUnavailable):
    """What holds the daemon's address is not this site's daemon; nothing secret was sent.

    A client given another secret than the daemon's cannot tell the daemon from an impostor
    either: clients that find the daemon by its record check their secret first
    (``record.check_secret``)."""


class RpcRefused(Exception):
    """The daemon refused this client (wrong secret or protocol version)."""


class RemoteError(Exception):
    """The daemon failed on a call for a reason of its own."""


_ERRORS: dict[str, type[Exception]] = {cls.__name__: cls for cls in REFUSALS}


def _rebuild(error_type: str, message: str, detail: dict[str, Any] | None = None) -> Exception:
    """The same exception class as on the daemon, carrying its message and attributes."""
    cls = _ERRORS.get(error_type)
    if cls is None:
        return RemoteError(f"{error_type}: {message}")
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    for name, value in (detail or {}).items():
        if cls is IllegalTransition and name in ("src", "dst"):
            value = JobState(value)
        setattr(exc, name, value)
    return exc


class RpcClient:
    """``site``, when given, is the name of the site whose daemon this client wants: a daemon
    of another site that holds the same secret (a copy of the site) is refused.  ``locate``,
    when given, is asked for the daemon's (host, port) before each connection, so that a client
    follows a daemon restarted elsewhere (None: keep the last address); ``clock`` times the
    backoff between attempts."""

    def __init__(
        self, host: str, port: int, secret: str, name: str = "", timeout: float = 60.0,
        locate: Callable[[], tuple[str, int] | None] | None = None,
        clock: Callable[[], float] = time.monotonic, site: str = "",
    ) -> None:  # fmt: skip
        self.address: tuple[str, int] | None = (host, port)  # None: a connection made elsewhere
        self.locate = locate
        self.secret = secret
        self.name = name
        self.expected_site = site
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.site = ""
        self._ids = 0
        self._lock = threading.Lock()
        self.clock = clock
        self._backoff = 0.0
        self._next_attempt = 0.0

    @classmethod
    def over(cls, sock: socket.socket, peer: str) -> RpcClient:
        """A client on a connection made already, past any handshake; once it breaks, every
        call fails with RpcUnavailable."""
        client = cls("", 0, secret="", name=peer)
        client.address = None
        client.sock = sock
        return client

    def __repr__(self) -> str:
        if self.address is None:
            return f"RpcClient({self.name})"
        return f"RpcClient({self.address[0]}:{self.address[1]})"

    def _connect(self) -> socket.socket:
        if self.address is None:
            raise RpcUnavailable(f"the connection to the {self.name} was lost")
        now = self.clock()
        if now < self._next_attempt:
            raise RpcUnavailable(f"daemon at {self.address[0]}:{self.address[1]} unreachable; retrying soon")
        if self.locate is not None:
            self.address = self.locate() or self.address
        sock = None
        try:
            sock = socket.create_connection(self.address, timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.site = self._handshake(sock)
        except RpcRefused:
            assert sock is not None
            sock.close()
            raise
        except (OSError, p.ProtocolError) as exc:  # an RpcImpostor too: it is an OSError
            if sock is not None:
                sock.close()
            self._backoff = backoff_after(self._backoff)
            self._next_attempt = now + self._backoff
            if isinstance(exc, RpcImpostor):
                raise
            raise RpcUnavailable(f"cannot reach the daemon at {self.address[0]}:{self.address[1]}: {exc}") from None
        sock.settimeout(self.timeout)
        self._backoff = 0.0
        return sock

    def _handshake(self, sock: socket.socket) -> str:
        """The site of the daemon on ``sock`` once each side proved it knows the secret."""
        assert self.address is not None
        where = f"{self.address[0]}:{self.address[1]}"
        deadline = time.monotonic() + min(self.timeout, p.HANDSHAKE_TIMEOUT)
        mine = p.nonce()
        sock.sendall(p.frame(p.Hello(p.VERSION, mine)))
        try:
            challenge = p.decode(p.CHALLENGE, _receive_handshake(sock, deadline))
        except p.ProtocolError as exc:
            raise _impostor(where, f"it does not answer as a balsamd daemon ({exc})") from None
        if isinstance(challenge, p.Denied):
            raise RpcRefused(f"the daemon refused this client: {_printable(challenge.reason)}")
        if not p.proven(challenge.proof, self.secret, "daemon", challenge.site, mine, challenge.nonce):
            raise _impostor(where, "it could not prove it knows the site's secret")
        if self.expected_site and challenge.site != self.expected_site:
            raise _impostor(
                where, f"it is the daemon of site {challenge.site!r}, not {self.expected_site!r} (a copy of the site?)"
            )
        sock.sendall(p.frame(p.Proof(p.proof(self.secret, "client", challenge.site, mine, challenge.nonce))))
        answer = p.decode(p.WELCOME, _receive_handshake(sock, deadline))
        if isinstance(answer, p.Denied):
            raise RpcRefused(f"the daemon refused this client: {_printable(answer.reason)}")
        return challenge.site

    @staticmethod
    def _receive(sock: socket.socket) -> p.Reply:
        header = _recv_exactly(sock, p.HEADER.size)
        return p.decode(p.REPLY, _recv_exactly(sock, p.frame_length(header)))

    def call(self, method: str, args: msgspec.Struct | None = None) -> Any:
        with self._lock:
            if self.sock is None:
                self.sock = self._connect()
            self._ids += 1
            try:
                encoded = p.encode(args or p.METHODS[method].args())
            except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
                problem = f"they cannot be sent ({exc}); give the types the store contract declares"
                raise Refused(f"bad arguments for {method}", [problem]) from None
            call = p.Call(self._ids, method, memoryview(encoded))
            try:
                self.sock.sendall(p.frame(call))
                reply = self._receive(self.sock)
            except (OSError, p.ProtocolError) as exc:
                self.close()
                raise RpcUnavailable(f"lost the connection to the daemon during {method}: {exc}") from None
        if reply.id != call.id:
            self.close()
            raise RpcUnavailable(f"out-of-order reply to {method}")
        if not reply.ok:
            raise _rebuild(reply.error_type, reply.error, reply.error_detail)
        return p.decode_result(method, reply.value)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None


def backoff_after(last: float) -> float:
    """Seconds until the next attempt after one more failure in a row: 0.2, doubling, at most 5."""
    return min(5.0, max(0.2, last * 2))


def _impostor(where: str, why: str) -> RpcImpostor:
    return RpcImpostor(
        f"{where} is not this site's daemon: {why}; the daemon may have stopped and another program "
        "taken its port (nothing secret was sent to it)"
    )


def _printable(text: str) -> str:
    """A peer's text as it may be shown in a terminal: before the daemon proved itself, anyone
    may have written it."""
    return text if text.isprintable() else repr(text)


def _receive_handshake(sock: socket.socket, deadline: float) -> bytes:
    """One handshake frame, at most HANDSHAKE_FRAME bytes, by ``deadline``."""
    header = _recv_exactly(sock, p.HEADER.size, deadline)
    return _recv_exactly(sock, p.frame_length(header, p.HANDSHAKE_FRAME), deadline)


def _recv_exactly(sock: socket.socket, size: int, deadline: float | None = None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            if (remaining := deadline - time.monotonic()) <= 0:
                raise TimeoutError("the handshake timed out")
            sock.settimeout(remaining)
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the daemon closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class RemoteStore:
    """The store contract over a daemon's RPC, for hosts that must not open the store file.

    Its methods are made from the contract's declaration (``store.contract.OPERATIONS``): each
    sends its arguments as the operation's Struct and decodes the declared result."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client

    def close(self) -> None:
        self.client.close()

    if TYPE_CHECKING:  # the operations, set below from the contract

        def __getattr__(self, name: str) -> Any: ...


def _stub(op: Operation) -> Callable[..., Any]:
    def call(self: RemoteStore, *args: Any, **kwargs: Any) -> Any:
        return self.client.call(op.name, op.args(*args, **kwargs))

    call.__name__ = call.__qualname__ = op.name
    call.__doc__ = getattr(Store, op.name).__doc__
    return call


for _op in OPERATIONS.values():
    setattr(RemoteStore, _op.name, _stub(_op))
