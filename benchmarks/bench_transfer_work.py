"""The transfer service's look for work in a large campaign: what waiting outbound items cost.

``transfers.work_look`` (looks/s)
    Setup (untimed, once): two site stores, each with the same DUE jobs whose inbound item is
    due (READY).  One also holds N jobs of an app with an outbound slot that have not run yet:
    their items are pending from their creation on, but not due until their jobs have run.  The
    other holds N jobs of an app without slots instead.  Each measurement times LOOKS calls of
    ``transfer_work`` as the service makes them at every step (the default batch size times
    the default number of slots), and checks that each found exactly the DUE items.

    Baseline: the same looks in the store whose N other jobs have no items.  The goal (ratio
    >= 0.5) says a look costs about the same however many outbound items wait for their runs:
    read from all pending items, as before, a million of them took most of every step's second.
"""

from __future__ import annotations

import time
from pathlib import Path
from time import perf_counter

from balsamd.config import TransferSettings
from balsamd.models import App, JobSpec, TransferSlot
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules
from benchmarks.common import Benchmark, Context, rate

DUE = 1000
LOOKS = 20
CREATE_CHUNK = 10_000
LIMIT = TransferSettings().transfer_batch_size * TransferSettings().max_concurrent_transfers
STAGED_IN = App(name="fetch", command_template="true", transfers={"input": TransferSlot(direction="in")})
SENT_OUT = App(name="send", command_template="true", transfers={"result": TransferSlot(direction="out")})
PLAIN = App(name="plain", command_template="true")
RULES = SiteRules(transfer_locations={"far": "rsync"})


def filled(path: Path, others: App, count: int) -> SiteStore:
    store = SiteStore(path, RULES)
    store.put_apps([STAGED_IN, others])
    store.create_jobs([JobSpec(app="fetch", workdir=f"in/{i}", transfers={"input": f"far:/in/{i}.dat"})
                       for i in range(DUE)])  # fmt: skip
    slots = {"result": "far:/out/{}.dat"} if others.transfers else {}
    for start in range(0, count, CREATE_CHUNK):
        store.create_jobs([JobSpec(app=others.name, workdir=f"run/{i}",
                                   transfers={k: v.format(i) for k, v in slots.items()})
                           for i in range(start, min(start + CREATE_CHUNK, count))])  # fmt: skip
    return store


class Sites:
    def __init__(self, ctx: Context, count: int) -> None:
        self.ctx, self.count = ctx, count
        self.stores: dict[str, SiteStore] = {}

    def setup(self) -> None:
        for name, others in (("waiting", SENT_OUT), ("plain", PLAIN)):
            self.stores[name] = filled(self.ctx.scratch(f"{name}-") / "balsamd.db", others, self.count)

    def teardown(self) -> None:
        for store in self.stores.values():
            store.close()

    def looks(self, name: str) -> float:
        store = self.stores[name]
        now = time.time()
        start = perf_counter()
        found = [len(store.transfer_work(LIMIT, now)) for _ in range(LOOKS)]
        seconds = perf_counter() - start
        if found != [DUE] * LOOKS:
            raise RuntimeError(f"looks found {sorted(set(found))} items, not the {DUE} due")
        return rate(LOOKS, seconds)


def benchmarks(ctx: Context) -> list[Benchmark]:
    count = ctx.size(100_000, quick=10_000, minimum=100)
    sites = Sites(ctx, count)
    return [
        Benchmark(
            name="transfers.work_look",
            unit="looks/s",
            description=f"the transfer service's look for its {DUE} due items beside {count} jobs whose outbound "
            f"items wait for their runs vs beside {count} jobs without items",
            measure=lambda: sites.looks("waiting"),
            baseline=lambda: sites.looks("plain"),
            goal_ratio=0.5,
            setup=sites.setup,
            teardown=sites.teardown,
        )
    ]
