"""The store contract's transports: every test that takes ``store`` runs over each of them.

- local: the SiteStore on a file, called in this process;
- rpc: the daemon's RPC server over that store (its handlers, its hot-call path, its error
  replies) on a real TCP port, called through the RPC client;
- forked: the launcher's store process, a fork of this process answering over a socket pair.

Tests of the store's own machinery (its database, its schema, its SQL) take ``site_store``,
the local SiteStore, instead.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator

import anyio
import anyio.from_thread
import pytest

from balsamd.daemon.main import store_server
from balsamd.launch.forks import Forks
from balsamd.launch.leader.storeproc import ForkedStore
from balsamd.rpc.client import RemoteStore, RpcClient
from balsamd.store.contract import Store
from balsamd.store.store import SiteStore
from tests.conftest import open_store

TRANSPORTS = ("local", "rpc", "forked")
SECRET = "contract-suite"


@contextlib.contextmanager
def listening(store: SiteStore, secret: str = SECRET, site: str = "contract") -> Iterator[int]:
    """``store`` behind the daemon's RPC server, listening on a loopback port (yielded)."""
    with anyio.from_thread.start_blocking_portal() as portal:

        async def listen() -> tuple[anyio.abc.SocketListener, int]:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
            return listener, listener.extra(anyio.abc.SocketAttribute.local_port)

        async def limiter() -> anyio.CapacityLimiter:
            return anyio.CapacityLimiter(1)

        server = store_server(store, secret, site, portal.call(limiter))
        listener, port = portal.call(listen)
        serving = portal.start_task_soon(server.serve, listener)  # closes the listener when cancelled
        try:
            yield port
        finally:
            serving.cancel()
            with contextlib.suppress(concurrent.futures.CancelledError):
                serving.result()


@contextlib.contextmanager
def served(store: SiteStore) -> Iterator[RemoteStore]:
    """``store`` behind the daemon's RPC server on a loopback port, and a client of it."""
    with listening(store) as port:
        remote = RemoteStore(RpcClient("127.0.0.1", port, SECRET, "contract suite", timeout=30, site="contract"))
        try:
            yield remote
        finally:
            remote.close()


@contextlib.contextmanager
def forked(store: SiteStore) -> Iterator[ForkedStore]:
    with Forks().window(release=[store.db]) as forks:
        made = ForkedStore.fork(store, forks)
    assert made is not None, "the store process could not be forked"
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def over(transport: str, local: SiteStore) -> Iterator[Store]:
    """``local`` as one transport of the contract reaches it; closes ``local`` afterwards."""
    try:
        if transport == "local":
            yield local
        elif transport == "rpc":
            with served(local) as remote:
                yield remote
        else:
            with forked(local) as fork:
                yield fork
    finally:
        local.close()


@pytest.fixture(params=TRANSPORTS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    with over(request.param, open_store(tmp_path / "store.db")) as reached:
        yield reached


@pytest.fixture
def site_store(tmp_path) -> Iterator[SiteStore]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()
