"""Pure decisions of the launcher: what to claim, and how a finished run is reported."""

from __future__ import annotations

import math

from balsamd.config import LauncherSettings
from balsamd.launch.leader.resources import FreeCapacity
from balsamd.models import ClaimLimits, JobMode, StateUpdate
from balsamd.states import JobState

CLAIM_AHEAD_SEC = 0.2  # of runs a serial launcher keeps in hand, beyond a batch


def claim_limits(
    mode: JobMode,
    free: FreeCapacity,
    backlog: int,
    remaining_min: float | None,
    settings: LauncherSettings,
    filter_tags: dict[str, str],
    run_rate: float = 0.0,
) -> ClaimLimits | None:
    """What to ask the job source for now, or None when claiming would not help.

    serial mode prefetches single-rank jobs for all its nodes, a batch at a time, and keeps
    at least a batch and CLAIM_AHEAD_SEC of runs at ``run_rate`` (runs ending per second) in
    its backlog: a claim may wait behind a report, and short runs must not run dry meanwhile.
    mpi mode claims only what fits the free nodes now, so that jobs it cannot start stay
    available to other launchers.
    """
    if remaining_min is not None and remaining_min <= settings.stop_claiming_min:
        return None
    max_wall = None if remaining_min is None else remaining_min
    if mode == JobMode.SERIAL:
        batch = settings.claim_batch
        short = max(batch, math.ceil(run_rate * CLAIM_AHEAD_SEC)) - backlog
        if short <= 0 or (backlog and short < batch // 2):
            return None
        want = short
        return ClaimLimits(max_jobs=want, serial_only=True, max_wall_time_min=max_wall, filter_tags=filter_tags)
    if backlog or free.aggregate_free < 1e-9:
        return None
    return ClaimLimits(
        max_jobs=settings.claim_batch,
        max_nodes_per_job=max(1, free.idle_nodes),
        max_aggregate_nodes=free.aggregate_free,
        max_wall_time_min=max_wall,
        filter_tags=filter_tags,
    )


def finished_update(
    job_id: str, return_code: int | None, reason: str, result: bytes | None, timed_out: bool, ts: float
) -> StateUpdate:
    """RUN_DONE for exit 0, RUN_TIMEOUT for a run the launcher stopped for time or lost with
    its node (the app's handle_timeout decides), else RUN_ERROR."""
    if timed_out:
        state, reason = JobState.RUN_TIMEOUT, reason or "stopped: the launcher's wall time ran out"
    elif return_code == 0:
        state, reason = JobState.RUN_DONE, ""
    else:
        state = JobState.RUN_ERROR
        reason = f"exit code {return_code}\n{reason}" if return_code is not None else reason
    return StateUpdate(job_id=job_id, state=state, ts=ts, return_code=return_code, reason=reason, result=result)


QUEUED_WORK_SEC = 0.05  # how much work a worker may hold beyond the run it is doing
MAX_FOLLOWERS = 256
MEAN_WEIGHT = 0.2  # of the newest run in the moving mean of an app's run time


def short_runs(mean_run_sec: float | None) -> bool:
    """Whether an app's runs are known to be short: they get queued on workers and make
    their working directory and output file only if they use them.  Nobody watches a run of
    a few milliseconds; its bookkeeping would cost more than the run."""
    return mean_run_sec is not None and mean_run_sec < QUEUED_WORK_SEC / 2


def followers(mean_run_sec: float | None) -> int:
    """How many jobs may wait in a warm worker's queue behind the run it is doing.

    Queued jobs start without waiting for the launcher, which is what makes short runs fast;
    but a job queued behind a long run waits while other workers may be free.  So only apps
    whose runs are known to be short get queues, sized to about QUEUED_WORK_SEC of work.
    """
    if mean_run_sec is None or not short_runs(mean_run_sec):
        return 0
    return min(MAX_FOLLOWERS, math.floor(QUEUED_WORK_SEC / max(mean_run_sec, 1e-9)))


def updated_mean(mean: float | None, elapsed: float) -> float:
    """The moving mean of an app's run time after one more run."""
    return elapsed if mean is None else mean + MEAN_WEIGHT * (elapsed - mean)
