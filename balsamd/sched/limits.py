"""Checks of a batch-job request against the site's limits, before anything is written."""

from __future__ import annotations

from balsamd.config import Settings
from balsamd.models import BatchJob


def batch_problems(batch: BatchJob, settings: Settings, active: int) -> list[str]:
    """Everything that keeps this batch job from being submitted, each saying what to change."""
    s = settings.scheduler
    problems = []
    if batch.num_nodes < 1:
        problems.append(f"--num-nodes must be at least 1 (got {batch.num_nodes})")
    elif batch.num_nodes > settings.nodes.max_nodes:
        problems.append(
            f"--num-nodes {batch.num_nodes} exceeds the site's max_nodes={settings.nodes.max_nodes} "
            "(lower it, or raise [nodes] max_nodes in settings.toml)"
        )
    if batch.wall_time_min < 1:
        problems.append(f"--wall-time-min must be at least 1 (got {batch.wall_time_min})")
    elif batch.wall_time_min > s.max_wall_time_min:
        problems.append(
            f"--wall-time-min {batch.wall_time_min} exceeds [scheduler] max_wall_time_min={s.max_wall_time_min}"
        )
    if s.allowed_queues and batch.queue not in s.allowed_queues:
        problems.append(f"queue {batch.queue!r} is not allowed here; use one of: {', '.join(s.allowed_queues)}")
    if s.allowed_projects and batch.project not in s.allowed_projects:
        problems.append(f"project {batch.project!r} is not allowed here; use one of: {', '.join(s.allowed_projects)}")
    if active >= s.max_queued:
        problems.append(
            f"{active} batch jobs are already pending, queued or running ([scheduler] max_queued={s.max_queued}); "
            "wait for one to finish or remove one with `balsamd queue rm ID`"
        )
    return problems
