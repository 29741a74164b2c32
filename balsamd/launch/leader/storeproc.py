"""The site store served to a launcher by a fork of the launcher.

A claim or a report is SQLite's work (done without the GIL) inside Python's (done with it).
Made from the launcher's courier thread, the Python part competes for the one interpreter
lock with the loop that feeds the runs: at thousands of short runs a second each waits on the
other.  A fork has a lock of its own.  It answers in the daemon's RPC protocol over a socket
pair, so the launcher sees a RemoteStore; every call stays one store transaction.

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
from typing import TypeVar

from balsamd.daemon.handlers import store_handlers
from balsamd.launch.forks import ForkedProcess, Forks
from balsamd.models import ClaimLimits, Job, Session, StateUpdate
from balsamd.rpc import protocol as p
from balsamd.rpc.client import RemoteStore, RpcClient, RpcUnavailable
from balsamd.rpc.server import answer
from balsamd.store.store import SiteStore, UpdateOutcome

log = logging.getLogger("balsamd.launcher")
T = TypeVar("T")


class ForkedStore:
    """The store calls a launcher makes, answered by a forked server while it lives."""

    def __init__(self, store: SiteStore, process: ForkedProcess, sock: socket.socket) -> None:
        self.store = store
        self.process = process
        self.remote: RemoteStore | None = RemoteStore(RpcClient.over(sock, "launcher's store process"))

    @classmethod
    def fork(cls, store: SiteStore, forks: Forks) -> ForkedStore | None:
        """A forked server for ``store``, made in ``forks``' window (ForkOrderError outside it),
        or None where the system refuses the fork: the launcher then uses the store itself."""
        path = store.db.path
        try:
            started = forks.fork(lambda fd: serve(socket.socket(fileno=fd), path), {}, "the store process")
        except OSError as exc:
            log.warning("could not fork the store process (%s); using the store directly", exc)
            return None
        return cls(store, *started)

    def _call(self, call: Callable[[SiteStore | RemoteStore], T]) -> T:
        if self.remote is not None:
            try:
                return call(self.remote)
            except RpcUnavailable as exc:
                log.warning("the store process was lost (%s); using the store directly", exc)
                self.close()
        return call(self.store)

    def open_session(self, label: str = "", batch_job_id: str | None = None) -> Session:
        return self._call(lambda s: s.open_session(label=label, batch_job_id=batch_job_id))

    def heartbeat(self, session_id: str, running: list[str]) -> list[str]:
        return self._call(lambda s: s.heartbeat(session_id, running))

    def expire_sessions(self, expiry_sec: float) -> list[str]:
        return self._call(lambda s: s.expire_sessions(expiry_sec))

    def claim(self, session_id: str, limits: ClaimLimits) -> list[Job]:
        return self._call(lambda s: s.claim(session_id, limits))

    def update_states(self, session_id: str, updates: list[StateUpdate]) -> UpdateOutcome:
        return self._call(lambda s: s.update_states(session_id, updates))

    def release(self, session_id: str, job_ids: list[str]) -> int:
        return self._call(lambda s: s.release(session_id, job_ids))

    def close_session(self, session_id: str) -> None:
        self._call(lambda s: s.close_session(session_id))

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


def serve(sock: socket.socket, path: Path) -> None:
    """Answer calls on ``sock`` from a store of our own at ``path`` until the launcher goes."""
    store = SiteStore(path)
    handlers = store_handlers(store)
    stream = sock.makefile("rb")
    try:
        while len(header := stream.read(p.HEADER.size)) == p.HEADER.size:
            body = stream.read(p.frame_length(header))
            call = p.decode_message(body)
            if not isinstance(call, p.Call):
                raise p.ProtocolError(f"expected a Call, got {type(call).__name__}")
            sock.sendall(p.frame(answer(handlers, call)))
    except (ConnectionError, p.ProtocolError) as exc:
        with contextlib.suppress(OSError):
            print(f"balsamd store process: {exc}", file=sys.stderr)
    finally:
        store.close()
