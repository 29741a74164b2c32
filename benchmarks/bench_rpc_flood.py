"""The daemon's RPC under a flood of unauthenticated connections, against the same daemon at rest.

Setup (once per benchmark, untimed): a fresh site and its daemon started with ``balsamd start``;
a client connected with the site's secret (``control.client_for``).

balsamd side (the flood)
    a forked process holds C connections (200) to the daemon's port, each sending one of:
    nothing, random bytes, an 8 MiB frame of empty msgpack arrays, a 64 MiB frame announced,
    half a Hello, an HTTP request; whatever the daemon closes is reopened at once.  Once all C
    are open, the client makes P pings (2,000), each timed, while the daemon's VmRSS is read
    every 50 pings.

baseline side
    the same P pings on the same daemon with no flood.

Metrics (lower is better): ``rpc_flood.ping_median`` and ``rpc_flood.ping_p99`` in ms, and
``rpc_flood.rss_growth``, the daemon's highest VmRSS during the pings less its VmRSS before
them, in MiB (goal: at most 64 MiB under the flood).  The flood's own counts (connections
made, bytes sent) go to stderr.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import selectors
import socket
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from time import perf_counter

from balsamd.daemon import control
from balsamd.rpc import protocol as p
from balsamd.rpc.client import RpcClient
from balsamd.rpc.record import read_record
from balsamd.site import init_site
from benchmarks.bench_scale import proc_status, running_daemon
from benchmarks.common import Benchmark, Context

MiB = 1024 * 1024
RSS_EVERY = 50  # pings between two readings of the daemon's memory
READY_TIMEOUT = 60.0


def payloads() -> list[bytes]:
    """What the flood's connections send, one kind each in turn."""
    return [
        b"",
        os.urandom(64),
        p.HEADER.pack(8 * MiB) + b"\x90" * (8 * MiB),
        p.HEADER.pack(64 * MiB) + os.urandom(MiB),
        p.frame(p.Hello(p.VERSION, p.nonce()))[:10],
        b"GET / HTTP/1.1\r\nHost: balsamd\r\n\r\n",
    ]


def flood(port: int, connections: int, ready: Event, stop: Event, counts: multiprocessing.Queue) -> None:
    """Keep ``connections`` connections to ``port`` sending garbage until ``stop``."""
    kinds = payloads()
    selector = selectors.DefaultSelector()
    left: dict[socket.socket, memoryview] = {}
    made = sent = 0

    def open_one(slot: int) -> None:
        nonlocal made
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        left[sock] = memoryview(kinds[slot % len(kinds)])
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, slot)
        made += 1

    for slot in range(connections):
        open_one(slot)
    ready.set()
    while not stop.is_set():
        for key, events in selector.select(timeout=0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if events & selectors.EVENT_READ and not sock.recv(1 << 16):
                    raise ConnectionError("closed by the daemon")
                if events & selectors.EVENT_WRITE:
                    if left[sock]:
                        n = sock.send(left[sock][: 1 << 16])
                        left[sock], sent = left[sock][n:], sent + n
                    else:
                        selector.modify(sock, selectors.EVENT_READ, key.data)
            except BlockingIOError:
                continue
            except OSError:
                selector.unregister(sock)
                del left[sock]
                sock.close()
                open_one(key.data)
    counts.put((made, sent))


@dataclass
class Run:
    latencies_ms: list[float]
    rss_growth_mib: float


class FloodSite:
    """A site whose daemon runs for one benchmark's rounds, and a client of it."""

    def __init__(self, ctx: Context, connections: int, pings: int) -> None:
        self.ctx = ctx
        self.connections = connections
        self.pings = pings
        self.stack = contextlib.ExitStack()
        self.client: RpcClient | None = None
        self.pid = self.port = 0

    def setup(self) -> None:
        layout = init_site(self.ctx.scratch("rpc-flood-") / "site", name="bench")
        self.pid = self.stack.enter_context(running_daemon(layout))
        record = read_record(layout.root)
        assert record is not None
        self.port = record.port
        self.client = self.stack.enter_context(contextlib.closing(control.client_for(layout, record)))

    def teardown(self) -> None:
        self.stack.close()

    def pinged(self) -> Run:
        assert self.client is not None
        before = proc_status(self.pid)["VmRSS"]
        peak = before
        latencies = []
        for n in range(self.pings):
            t0 = perf_counter()
            if self.client.call("ping") != "pong":
                raise RuntimeError("the daemon did not answer pong")
            latencies.append((perf_counter() - t0) * 1000)
            if n % RSS_EVERY == 0:
                peak = max(peak, proc_status(self.pid)["VmRSS"])
        peak = max(peak, proc_status(self.pid)["VmRSS"])
        return Run(latencies, (peak - before) / 1024)

    def flooded(self) -> Run:
        context = multiprocessing.get_context("fork")
        ready, stop, counts = context.Event(), context.Event(), context.Queue()
        flooder = context.Process(target=flood, args=(self.port, self.connections, ready, stop, counts))
        flooder.start()
        try:
            if not ready.wait(READY_TIMEOUT):
                raise RuntimeError(f"the flood did not open its {self.connections} connections")
            run = self.pinged()
        finally:
            stop.set()
            made, sent = counts.get(timeout=READY_TIMEOUT)
            flooder.join()
        print(
            f"[rpc_flood] {made} connections made, {sent / MiB:.0f} MiB sent by the flood; pings median "
            f"{statistics.median(run.latencies_ms):.3f} ms, daemon grew {run.rss_growth_mib:.1f} MiB",
            file=sys.stderr,
        )
        return run


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def benchmarks(ctx: Context) -> list[Benchmark]:
    connections = ctx.size(200, minimum=12)
    pings = ctx.size(2_000, quick=500, minimum=20)
    metrics: list[tuple[str, str, Callable[[Run], float], float | None]] = [
        ("ping_median", "ms", lambda run: statistics.median(run.latencies_ms), None),
        ("ping_p99", "ms", lambda run: p99(run.latencies_ms), None),
        ("rss_growth", "MiB", lambda run: run.rss_growth_mib, 64.0),
    ]
    made = []
    for name, unit, metric, ceiling in metrics:
        site = FloodSite(ctx, connections, pings)
        made.append(
            Benchmark(
                name=f"rpc_flood.{name}",
                unit=unit,
                description=f"{pings} pings while {connections} unauthenticated connections flood the daemon, vs none",
                measure=lambda site=site, metric=metric: metric(site.flooded()),
                baseline=lambda site=site, metric=metric: metric(site.pinged()),
                goal_value=ceiling,
                lower_is_better=True,
                setup=site.setup,
                teardown=site.teardown,
            )
        )
    return made
