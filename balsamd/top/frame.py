"""A frame of the live view: what the campaign is doing now, read from the store contract.

``build_frame`` is the one function that reads (a handful of indexed store operations); the
rest is pure.  Jobs by state are counted whole on the first frame, then kept up to date from
the moves since the previous one (``Tally``); they are counted whole again when the filter
changes, when jobs were removed (their moves go with them), and every ``RECOUNT_SEC``, which
also catches a tag edited on a job that has not started.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from balsamd.models import BatchJobState
from balsamd.rpc.protocol import ServiceHealth
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.store.queries import JobFilter
from balsamd.store.watch import Activity, Failure
from balsamd.transfers.records import TransferBacklog

RECOUNT_SEC = 300.0
HOUR_MIN = 60
NOW_MIN = (1, 5)  # throughput "now": the last minute and the last five
FAILURES = 10


class View(msgspec.Struct, kw_only=True, frozen=True):
    """What the view narrows to: one app, and tags every job shown has."""

    app: str | None = None
    tags: dict[str, str] = {}

    def job_filter(self) -> JobFilter:
        return JobFilter(app=self.app, tags=dict(self.tags))

    def describe(self) -> str:
        parts = ([f"app={self.app}"] if self.app else []) + [f"{k}={v}" for k, v in sorted(self.tags.items())]
        return " ".join(parts)


class Tally(msgspec.Struct, kw_only=True):
    """What one frame hands the next: the counts it showed and where its reading stopped."""

    view: View
    counts: dict[str, int]
    finished: dict[int, int]  # runs that reached JOB_FINISHED, by minute
    last_move: int
    removals: int
    counted_at: float  # when the counts were last read whole


class StateCount(msgspec.Struct, kw_only=True):
    state: str
    count: int
    change: int  # since the previous frame


class Rate(msgspec.Struct, kw_only=True):
    """Runs that reached JOB_FINISHED in the last ``minutes`` (whole minutes, the current one
    included) and what that is per second over the time those minutes span so far."""

    minutes: int
    finished: int
    per_sec: float


class BatchLoad(msgspec.Struct, kw_only=True):
    """A running batch job ("" for launchers outside one) and how much of it is busy."""

    id: str
    scheduler_id: str | None
    num_nodes: int | None  # None: not a batch job of the store (launchers outside one)
    running_jobs: int
    busy_nodes: float
    idle_nodes: float | None


class ServiceLag(msgspec.Struct, kw_only=True):
    """A daemon service as ``balsamd status`` reports it, and how far behind it is."""

    name: str
    healthy: bool | None  # None: the service is off
    lag: str  # what the service is behind by, in words
    last_error: str = ""


class Frame(msgspec.Struct, kw_only=True):
    site: str
    at: float
    view: View
    first: bool  # the first frame of its view: no frame before it to show changes since
    states: list[StateCount]
    total: int
    throughput: list[Rate]
    batch_jobs: list[BatchLoad]
    failures: list[Failure]
    transfers: dict[str, TransferBacklog]
    daemon: str  # "running", or why the services cannot be shown
    services: list[ServiceLag]


def fold(tally: Tally | None, view: View, activity: Activity, now: float) -> Tally:
    """The tally after ``activity``: read whole, or a change applied to ``tally``."""
    if activity.whole or tally is None:
        return Tally(
            view=view, counts=dict(activity.counts), finished=dict(activity.finished),
            last_move=activity.last_move, removals=activity.removals, counted_at=now,
        )  # fmt: skip
    counts = dict(tally.counts)
    for state, change in activity.counts.items():
        counts[state] = counts.get(state, 0) + change
    finished = {m: n for m, n in tally.finished.items() if m > now // 60 - HOUR_MIN}
    for minute, n in activity.finished.items():
        finished[minute] = finished.get(minute, 0) + n
    return Tally(
        view=view, counts={s: n for s, n in counts.items() if n}, finished=finished,
        last_move=activity.last_move, removals=activity.removals, counted_at=tally.counted_at,
    )  # fmt: skip


def needs_whole(tally: Tally | None, view: View, now: float) -> bool:
    return tally is None or tally.view != view or now - tally.counted_at >= RECOUNT_SEC


def rates(finished: dict[int, int], now: float) -> list[Rate]:
    """Throughput over the last minute, five and hour, from finished runs by minute."""
    current = int(now // 60)
    out = []
    for minutes in (*NOW_MIN, HOUR_MIN):
        first = current - minutes + 1
        count = sum(n for m, n in finished.items() if first <= m <= current)
        span = max(now - first * 60, 1.0)
        out.append(Rate(minutes=minutes, finished=count, per_sec=count / span))
    return out


def state_counts(counts: dict[str, int], before: dict[str, int] | None) -> list[StateCount]:
    """Every state that has jobs now or had them before, in the lifecycle's order."""
    then = counts if before is None else before  # a first frame shows no change
    return [
        StateCount(state=str(s), count=counts.get(s, 0), change=counts.get(s, 0) - then.get(s, 0))
        for s in JobState
        if counts.get(s) or then.get(s)
    ]


def batch_loads(store: Store) -> list[BatchLoad]:
    loads = store.running_load()
    rows = []
    for batch in store.batch_jobs([BatchJobState.RUNNING]):
        load = loads.pop(batch.id, None)
        jobs, busy = (load.jobs, load.nodes) if load else (0, 0.0)
        rows.append(
            BatchLoad(
                id=batch.id, scheduler_id=batch.scheduler_id, num_nodes=batch.num_nodes, running_jobs=jobs,
                busy_nodes=busy, idle_nodes=max(batch.num_nodes - busy, 0.0),
            )
        )  # fmt: skip
    # jobs still running in batch jobs that ended, or in launchers outside any batch job
    for batch_id, load in sorted(loads.items()):
        rows.append(
            BatchLoad(
                id=batch_id, scheduler_id=None, num_nodes=None, running_jobs=load.jobs, busy_nodes=load.nodes,
                idle_nodes=None,
            )
        )  # fmt: skip
    return rows


def service_lags(services: list[ServiceHealth] | None, now: float) -> list[ServiceLag]:
    """The sync and transfer services as ``balsamd status`` has them, with their lag in words."""
    if services is None:
        return []
    out = []
    for s in services:
        if s.name not in ("sync", "transfers"):
            continue
        lag = sync_lag(s.detail, now) if s.name == "sync" else transfer_lag(s.detail)
        error = (s.last_error.splitlines() or [""])[0]
        out.append(ServiceLag(name=s.name, healthy=s.healthy, lag=lag, last_error=error))
    if not any(s.name == "sync" for s in out):
        out.insert(0, ServiceLag(name="sync", healthy=None, lag="the site has no central database"))
    return out


def sync_lag(detail: dict[str, Any], now: float) -> str:
    changes = detail.get("lag_changes")
    last_ok = detail.get("last_ok")
    if changes is None:
        return "no round yet"
    ago = f", last round {max(now - last_ok, 0):.0f} s ago" if last_ok else ""
    return f"{changes} change(s) not yet central{ago}"


def transfer_lag(detail: dict[str, Any]) -> str:
    return f"{detail.get('tasks_running', 0)} task(s) running, {detail.get('items_retrying', 0)} item(s) to retry"


def build_frame(
    store: Store,
    site: str,
    view: View,
    tally: Tally | None,
    services: list[ServiceHealth] | str,
    now: float | None = None,
) -> tuple[Frame, Tally]:
    """The next frame from ``store`` (and the daemon's services, or why there are none), and
    the tally the frame after it starts from."""
    now = time.time() if now is None else now
    f = view.job_filter()
    since = (now // 60 - HOUR_MIN + 1) * 60
    whole = needs_whole(tally, view, now)
    if not whole:
        assert tally is not None
        activity = store.activity(f, tally.last_move, since)
        if activity.removals != tally.removals:
            whole = True
    if whole:
        activity = store.activity(f, 0, since)
    after = fold(None if whole else tally, view, activity, now)
    before = tally.counts if tally is not None and tally.view == view else None
    daemon = services if isinstance(services, str) else "running"
    frame = Frame(
        site=site, at=now, view=view, first=before is None, states=state_counts(after.counts, before),
        total=sum(after.counts.values()), throughput=rates(after.finished, now), batch_jobs=batch_loads(store),
        failures=store.recent_failures(f, FAILURES), transfers=store.transfer_backlog(), daemon=daemon,
        services=service_lags(None if isinstance(services, str) else services, now),
    )  # fmt: skip
    return frame, after
