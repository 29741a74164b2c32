"""What a peer that has not passed the handshake may cost the daemon: a few KiB read, a place
among a bounded number of waiting connections, and a log line a minute for its address.

The first tests drive the server in this process, over a socket pair that counts what the
server reads; the others flood a daemon started with `balsamd start`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from balsamd.rpc import protocol as p
from balsamd.rpc.server import Admission, Limits, QuietLog, RpcServer
from tests.daemon.conftest import DaemonSite, running, wait_until

MiB = 1024 * 1024
HELLO = p.frame(p.Hello(p.VERSION, p.nonce()))
WAITING_PER_PEER = Limits().waiting_per_peer


class Counting(socket.socket):
    """A socket that counts the bytes read from it."""

    received = 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        self.received += len(data)
        return data


def serve_one(send: Callable[[socket.socket], None], limits: Limits | None = None) -> Counting:
    """The server's side of one connection on which ``send`` speaks, once the server is done."""
    ours, theirs = socket.socketpair()
    counted = Counting(theirs.family, theirs.type, fileno=theirs.detach())
    counted.setblocking(False)
    server = RpcServer({}, "secret", "site", anyio.CapacityLimiter(1), limits or Limits())

    def speak() -> None:
        with contextlib.suppress(OSError):  # the server hangs up before it is all sent
            send(ours)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, speak)
            await server.connection(counted, "peer")
            ours.shutdown(socket.SHUT_RDWR)

    with ours:
        anyio.run(main)
    return counted


def bytes_read_by_the_server(sent: bytes) -> int:
    """How much of ``sent`` the server reads before it drops the connection."""
    return serve_one(lambda sock: sock.sendall(sent)).received


CAP = p.HEADER.size + p.HANDSHAKE_FRAME
FLOODS = {
    # (what is sent, what the server reads of it)
    "8 MiB of empty arrays announced and sent": (p.HEADER.pack(8 * MiB) + b"\x90" * (8 * MiB), p.HEADER.size),
    "64 MiB announced": (p.HEADER.pack(64 * MiB) + os.urandom(MiB), p.HEADER.size),
    "a frame at the limit, then 8 MiB more": (
        p.HEADER.pack(p.HANDSHAKE_FRAME) + b"\x90" * (8 * MiB),
        CAP,
    ),
    "a Hello, then 64 MiB announced": (HELLO + p.HEADER.pack(64 * MiB) + b"\x00" * MiB, len(HELLO) + p.HEADER.size),
}


@pytest.mark.parametrize("flood", list(FLOODS))
def test_the_handshake_reads_no_more_than_one_small_frame_at_a_time(flood: str) -> None:
    sent, read = FLOODS[flood]
    assert bytes_read_by_the_server(sent) == read <= 2 * CAP


def test_a_handshake_that_takes_too_long_is_dropped_however_it_trickles(caplog: pytest.LogCaptureFixture) -> None:
    def trickle(sock: socket.socket) -> None:
        for byte in HELLO * 1000:  # a byte at a time, for far longer than the limit
            sock.send(bytes([byte]))
            time.sleep(0.01)

    with caplog.at_level(logging.WARNING, logger="balsamd.rpc"):
        serve_one(trickle, Limits(handshake_timeout=0.5))
        serve_one(lambda sock: None, Limits(handshake_timeout=0.5))  # silent
    assert caplog.messages == ["connection from peer did not finish the handshake in time"] * 2


# ----- the limits, on their own ------------------------------------------------------------


def test_a_newcomer_over_the_limit_of_its_address_closes_the_oldest_of_that_address() -> None:
    async def main() -> None:
        admission = Admission(Limits(waiting=10, waiting_per_peer=2))
        a1, b1, a2 = admission.enter("a"), admission.enter("b"), admission.enter("a")
        a3 = admission.enter("a")
        assert a1.cancel_called and not (b1.cancel_called or a2.cancel_called or a3.cancel_called)
        assert list(admission.waiting.values()) == ["b", "a", "a"]
        admission.leave(a2)
        admission.enter("a")
        assert not a3.cancel_called

    anyio.run(main)


def test_a_newcomer_over_the_limit_of_all_closes_the_oldest_of_all() -> None:
    async def main() -> None:
        admission = Admission(Limits(waiting=3, waiting_per_peer=3))
        first, *others = [admission.enter(host) for host in "abc"]
        admission.enter("d")
        assert first.cancel_called and not any(scope.cancel_called for scope in others)
        assert list(admission.waiting.values()) == ["b", "c", "d"]

    anyio.run(main)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_address_per_interval_and_the_count_of_the_others(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = QuietLog(logging.getLogger("balsamd.test"), interval=60, max_peers=100, clock=clock)
    with caplog.at_level(logging.WARNING, logger="balsamd.test"):
        for n in range(500):
            quiet.warning("10.0.0.1", "dropped connection %d from 10.0.0.1", n)
        quiet.warning("10.0.0.2", "dropped connection from 10.0.0.2")
        clock.now += 59
        quiet.warning("10.0.0.1", "dropped connection 500 from 10.0.0.1")
        assert caplog.messages == ["dropped connection 0 from 10.0.0.1", "dropped connection from 10.0.0.2"]
        clock.now += 1
        quiet.warning("10.0.0.1", "dropped connection 501 from 10.0.0.1")
    assert caplog.messages[2:] == [
        "500 more lines about 10.0.0.1 were held back in 60 s",
        "dropped connection 501 from 10.0.0.1",
    ]


def test_beyond_the_addresses_remembered_the_others_share_one_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = QuietLog(logging.getLogger("balsamd.test"), interval=60, max_peers=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="balsamd.test"):
        for n in range(1000):
            quiet.warning(f"127.0.{n // 256}.{n % 256}", "line %d", n)
        clock.now += 60
        quiet.warning("10.0.0.1", "after")
    held = "996 more lines about other addresses were held back in 60 s"
    assert caplog.messages == ["line 0", "line 1", "line 2", "line 3", held, "after"]
    assert len(quiet.last) == 1


# ----- a daemon under a flood --------------------------------------------------------------


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match is not None
    return int(match.group(1))


def rpc_warnings(site: DaemonSite) -> list[str]:
    text = (site.root / "log" / "daemon.log").read_text()
    return [line for line in text.splitlines() if " WARNING balsamd.rpc: " in line]


def hung_up(sock: socket.socket) -> bool:
    """Whether the daemon closed ``sock`` (non-blocking)."""
    try:
        return sock.recv(1 << 16) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@contextlib.contextmanager
def flooding(port: int, payloads: list[bytes], count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections, each sending the next of ``payloads`` (as much as fits at once)."""
    socks = []
    try:
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(sock)
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.send(payloads[n % len(payloads)])
        yield socks
    finally:
        for sock in socks:
            sock.close()


PAYLOADS = [
    b"",  # silent
    os.urandom(64),
    p.HEADER.pack(8 * MiB) + b"\x90" * (8 * MiB),
    p.HEADER.pack(64 * MiB) + os.urandom(MiB),
    HELLO[:10],  # half a Hello
    b"GET / HTTP/1.1\r\nHost: balsamd\r\n\r\n",
]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[DaemonSite]:
    with running(tmp_path) as made:
        yield made


def test_two_hundred_unauthenticated_connections_are_limited_and_clients_are_still_served(site: DaemonSite) -> None:
    record = site.record()
    assert record is not None
    started = time.monotonic()
    with contextlib.closing(site.client()) as before:
        assert before.call("ping") == "pong"
        rss = rss_kib(record.pid)
        with flooding(record.port, [b""], 200) as silent, flooding(record.port, PAYLOADS, 200) as mixed:
            # 400 connections open: a client connected before and one connecting now are served
            assert before.call("ping") == "pong"
            with contextlib.closing(site.client()) as newcomer:
                assert newcomer.call("ping") == "pong"
            # the oldest of the silent ones were closed to let newer ones wait
            wait_until(lambda: sum(map(hung_up, silent[:168])) == 168, "168 of the silent connections are closed")
            wait_until(lambda: all(hung_up(s) for s in mixed[1::6] + mixed[2::6] + mixed[3::6]), "garbage is dropped")
        assert before.call("ping") == "pong"
        assert rss_kib(record.pid) - rss < 32 * 1024, "the daemon grew by more than 32 MiB"
    warnings = rpc_warnings(site)
    assert "newer ones came (at most 128 wait, 32 from one address)" in warnings[0]
    minutes = int((time.monotonic() - started) // 60) + 1
    assert 1 <= len(warnings) <= 2 * minutes, warnings


@pytest.mark.parametrize("size", [8 * MiB, 64 * MiB], ids=["8 MiB", "64 MiB"])
def test_an_oversized_first_frame_is_refused_unread(site: DaemonSite, size: int) -> None:
    record = site.record()
    assert record is not None
    rss = rss_kib(record.pid)
    # the daemon closes the connection with the frame unread, so the kernel resets it
    with (
        socket.create_connection(("127.0.0.1", record.port), timeout=10) as sock,
        pytest.raises((ConnectionResetError, BrokenPipeError)),
    ):
        sock.sendall(p.HEADER.pack(size) + b"\x90" * size)
        sock.recv(1)
    assert rss_kib(record.pid) - rss < 16 * 1024
    with contextlib.closing(site.client()) as client:
        assert client.call("ping") == "pong"
