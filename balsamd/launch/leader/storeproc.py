"""The site store served to a launcher by a fork of the launcher.

A claim or a report is SQLite's work (done without the GIL) inside Python's (done with it).
Made from the launcher's courier thread, the Python part competes for the one interpreter
lock with the loop that feeds the runs: at thousands of short runs a second each waits on the
other.  A fork has a lock of its own.  It answers in the daemon's RPC protocol over a socket
pair, so the launcher sees the store contract; every call stays one store transaction.

Should the fork be lost, the launcher goes on with the store itself: a claim or report whose
reply was lost is resent, and the store recognises both.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balsamd.launch.forks import ForkedProcess, Forks
from balsamd.rpc import protocol as p
from balsamd.rpc.client import RemoteStore, RpcClient, RpcUnavailable
from balsamd.rpc.server import answer, handlers_for
from balsamd.store.contract import OPERATIONS
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules

log = logging.getLogger("balsamd.launcher")


class ForkedStore:
    """The store contract answered by a forked server while it lives, by the store itself after.

    Its methods are made from the contract's declaration, like the RPC client's."""

    def __init__(self, store: SiteStore, process: ForkedProcess, sock: socket.socket) -> None:
        self.store = store
        self.process = process
        self.remote: RemoteStore | None = RemoteStore(RpcClient.over(sock, "launcher's store process"))

    @classmethod
    def fork(cls, store: SiteStore, forks: Forks) -> ForkedStore | None:
        """A forked server for ``store``, made in ``forks``' window (ForkOrderError outside it),
        or None where the system refuses the fork: the launcher then uses the store itself."""
        path, rules = store.db.path, store.rules
        try:
            started = forks.fork(lambda fd: serve(socket.socket(fileno=fd), path, rules), {}, "the store process")
        except OSError as exc:
            log.warning("could not fork the store process (%s); using the store directly", exc)
            return None
        return cls(store, *started)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.remote is not None:
            try:
                return getattr(self.remote, name)(*args, **kwargs)
            except RpcUnavailable as exc:
                log.warning("the store process was lost (%s); using the store directly", exc)
                self.close()
        return getattr(self.store, name)(*args, **kwargs)

    def close(self) -> None:
        """End the server (it exits when its socket closes) and wait for it."""
        if self.remote is not None:
            self.remote.close()
            self.remote = None
            try:
                self.process.wait(timeout=10)
            except Exception:
                self.process.kill()
                self.process.wait()

    if TYPE_CHECKING:  # the operations, set below from the contract

        def __getattr__(self, name: str) -> Any: ...


def _stub(name: str) -> Callable[..., Any]:
    def call(self: ForkedStore, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


for _name in OPERATIONS:
    setattr(ForkedStore, _name, _stub(_name))


def serve(sock: socket.socket, path: Path, rules: SiteRules) -> None:
    """Answer calls on ``sock`` from a store of our own at ``path`` until the launcher goes."""
    store = SiteStore(path, rules)
    handlers = handlers_for(store)
    stream = sock.makefile("rb")
    try:
        while len(header := stream.read(p.HEADER.size)) == p.HEADER.size:
            body = stream.read(p.frame_length(header))
            call = p.decode(p.CALL, body)
            sock.sendall(p.frame(answer(handlers, call)))
    except (ConnectionError, p.ProtocolError) as exc:
        with contextlib.suppress(OSError):
            print(f"balsamd store process: {exc}", file=sys.stderr)
    finally:
        store.close()
