"""The elastic queue's decision, as a pure function of the backlog and the batch jobs.

Balsam's algorithm: every period, if fewer than max_queued batch jobs are queued or running
and the runnable footprint (num_nodes / node_packing_count summed) exceeds the nodes that
queued and running batch jobs hold idle, submit one batch job of
clamp(footprint - idle, min_nodes, max_nodes) nodes for max_wall_time_min (or a backfill
window) minus a pad; withdraw its queued batch jobs that waited longer than
max_queue_wait_min.  Added here: jobs that can never fit the limits are counted and reported,
not chased; repeated submission failures pause it for a while instead of retrying
every period; a batch job is never narrower than the widest runnable job, so a narrower
backfill window is not used; nothing is submitted while nothing is runnable.
"""

from __future__ import annotations

import math

import msgspec

from balsamd.config import ElasticSettings
from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import BackfillWindow
from balsamd.store.batch import BacklogStats

B = BatchJobState
WAITING = (B.PENDING_SUBMISSION, B.QUEUED)


class ElasticPlan(msgspec.Struct, kw_only=True):
    num_nodes: int = 0  # 0: submit nothing
    wall_time_min: int = 0
    withdraw: list[str] = []
    reason: str = ""
    paused_until: float | None = None
    unfit: int = 0


def paused_until(batch_jobs: list[BatchJob], settings: ElasticSettings, now: float) -> float | None:
    """When the last max_failures elastic submissions all failed, pause until pause_min after
    the latest of them."""
    mine = sorted((b for b in batch_jobs if b.origin == "elastic"), key=lambda b: b.created_at)
    recent = mine[-settings.max_failures :]
    if len(recent) < settings.max_failures or any(b.state != B.SUBMIT_FAILED for b in recent):
        return None
    until = recent[-1].created_at + settings.pause_min * 60
    return until if until > now else None


def choose_window(windows: list[BackfillWindow], settings: ElasticSettings, widest: int = 1) -> BackfillWindow | None:
    """The largest (nodes x time) window the limits allow that fits the widest runnable job and
    leaves time after the pad; 0 minutes means no known limit."""
    usable = []
    for w in windows:
        wall = w.wall_time_min or settings.max_wall_time_min
        enough_time = wall >= max(settings.min_wall_time_min, settings.wall_time_pad_min + 1)
        if w.num_nodes >= max(settings.min_nodes, widest) and enough_time:
            usable.append((min(w.num_nodes, settings.max_nodes) * min(wall, settings.max_wall_time_min), w))
    return max(usable, key=lambda pair: pair[0])[1] if usable else None


def plan(
    stats: BacklogStats,
    batch_jobs: list[BatchJob],
    settings: ElasticSettings,
    now: float,
    windows: list[BackfillWindow] | None = None,
) -> ElasticPlan:
    out = ElasticPlan(unfit=stats.unfit)
    out.withdraw = [
        b.id for b in batch_jobs
        if b.origin == "elastic" and b.state == B.QUEUED and now - b.created_at > settings.max_queue_wait_min * 60
    ]  # fmt: skip
    active = [b for b in batch_jobs if b.state in (*WAITING, B.RUNNING) and b.id not in out.withdraw]
    out.paused_until = paused_until(batch_jobs, settings, now)
    if out.paused_until is not None:
        out.reason = f"paused after {settings.max_failures} failed submissions in a row"
        return out
    if len(active) >= settings.max_queued:
        out.reason = f"{len(active)} batch jobs queued or running (max_queued={settings.max_queued})"
        return out
    held = sum(b.num_nodes for b in active)
    # jobs may run outside batch jobs (a launcher started by hand): never fewer than 0 idle
    idle = max(0.0, held - stats.running_footprint)
    if stats.runnable == 0 or stats.runnable_footprint <= idle + 1e-9:
        out.reason = (
            "nothing to run" if stats.runnable == 0
            else f"backlog of {stats.runnable_footprint:g} nodes is covered by {idle:g} idle or coming nodes"
        )  # fmt: skip
        return out
    nodes = math.ceil(stats.runnable_footprint - idle - 1e-9)
    nodes = max(settings.min_nodes, min(settings.max_nodes, max(nodes, stats.largest_nodes)))
    wall = settings.max_wall_time_min
    window = choose_window(windows or [], settings, stats.largest_nodes) if settings.use_backfill else None
    if window is not None:
        nodes = max(settings.min_nodes, min(nodes, window.num_nodes))
        wall = min(window.wall_time_min or wall, wall)
    if wall - settings.wall_time_pad_min < 1:
        out.reason = f"wall_time_pad_min={settings.wall_time_pad_min} leaves no time in {wall}-minute batch jobs"
        return out
    out.num_nodes = nodes
    out.wall_time_min = max(1, wall - settings.wall_time_pad_min)
    out.reason = f"backlog of {stats.runnable_footprint:g} nodes exceeds {idle:g} idle or coming nodes"
    return out
