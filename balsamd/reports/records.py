"""The records of reports, each defined once: what a store (or the central database) hands
over for a time window, and the series a report returns (also its ``--json``)."""

from __future__ import annotations

import math

import msgspec


class ReportFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which history a report reads: events in [since, until), of jobs matching every field
    given (seconds since the epoch; ``site`` only through the central database)."""

    since: float
    until: float
    app: str | None = None
    tags: dict[str, str] = {}
    batch_job_id: str | None = None
    site: str | None = None


class CountBin(msgspec.Struct, array_like=True):
    """How many events fell in bin ``index`` (``since + index * bin_sec`` onwards)."""

    index: int
    count: int


class BusyBin(msgspec.Struct, array_like=True):
    """How busy bin ``index`` was: node-seconds of runs (each its job's share of nodes) and
    run-seconds (each run one slot)."""

    index: int
    node_sec: float
    run_sec: float


class RunSpan(msgspec.Struct, kw_only=True, array_like=True):
    """One run of a job: from its RUNNING to the state that ended it (``end`` None: still
    running, or ended after the window), with the job's share of nodes."""

    job_id: str
    app: str
    start: float
    end: float | None
    end_state: str | None
    num_nodes: int
    node_packing_count: int
    batch_job_id: str | None = None

    @property
    def footprint(self) -> float:
        return self.num_nodes / self.node_packing_count


class FailureEvent(msgspec.Struct, kw_only=True, array_like=True):
    """A run that failed (RUN_ERROR, RUN_TIMEOUT) or a job that failed without a run failing
    (FAILED from elsewhere, e.g. a parent failed), as recorded."""

    job_id: str
    app: str
    state: str
    ts: float
    reason: str
    workdir: str
    site: str = ""


# ----- what reports return ---------------------------------------------------------------------


class Throughput(msgspec.Struct, kw_only=True):
    """Jobs finished (JOB_FINISHED) per bin, and the rates in jobs per hour."""

    since: float
    until: float
    bin_sec: float
    bin_starts: list[float]
    finished: list[int]
    total: int
    rate_avg_per_h: float  # over the whole window
    rate_now_per_h: float  # over the last full bin (the current one is still filling)


class Utilization(msgspec.Struct, kw_only=True):
    """Time-averaged nodes and runs busy per bin, against nodes that batch jobs held."""

    since: float
    until: float
    bin_sec: float
    bin_starts: list[float]
    busy_nodes: list[float]  # sum of running jobs' num_nodes / node_packing_count
    busy_slots: list[float]  # running jobs (each holds a slot of a node)
    allocated_nodes: list[float]  # nodes of batch jobs between their start and end
    mean_busy_nodes: float
    mean_allocated_nodes: float
    utilization: float | None  # busy / allocated node-hours; None without any allocation


class FailureGroup(msgspec.Struct, kw_only=True):
    app: str
    reason: str  # the first line of the recorded reason
    count: int
    last_ts: float
    job_ids: list[str]  # the most recent first (a few)
    tail: str = ""  # the end of the most recent one's output, when the site's files are at hand


class Failures(msgspec.Struct, kw_only=True):
    since: float
    until: float
    total: int
    groups: list[FailureGroup]
    recent: list[FailureEvent]


class RuntimeStats(msgspec.Struct, kw_only=True):
    """Run times (seconds) of one app's runs that ended in the window."""

    app: str
    count: int
    min: float
    median: float
    p90: float
    max: float
    histogram: list[int]  # counts per bin of Runtimes.edges


class Runtimes(msgspec.Struct, kw_only=True):
    since: float
    until: float
    edges: list[float]  # bin edges in seconds, shared by every app's histogram
    apps: list[RuntimeStats]


class BatchTiming(msgspec.Struct, kw_only=True):
    id: str
    num_nodes: int
    state: str
    created_at: float
    wait_sec: float | None  # created -> started (None: not started)
    run_sec: float | None  # started -> ended (so far, when still running)
    site: str = ""


class DurationStats(msgspec.Struct, kw_only=True):
    count: int
    median: float | None
    p90: float | None
    max: float | None


class Queue(msgspec.Struct, kw_only=True):
    """Batch jobs created in the window: how long each waited in the scheduler's queue and ran."""

    since: float
    until: float
    batch_jobs: list[BatchTiming]
    wait: DurationStats
    run: DurationStats


MAX_BINS = 100_000  # of one binned query: a wider request is a mistake, not a chart


def filter_problems(f: ReportFilter, bin_sec: float | None = None) -> list[str]:
    """What makes a report's window or bins unreadable (each saying what to give instead)."""
    problems = []
    if not (math.isfinite(f.since) and math.isfinite(f.until)):
        problems.append("since and until must be finite times (seconds since the epoch)")
    elif f.since >= f.until:
        problems.append(f"since ({f.since:g}) must be before until ({f.until:g}); give a window that is not empty")
    if bin_sec is not None:
        if not math.isfinite(bin_sec) or bin_sec <= 0:
            problems.append(f"bin_sec must be a positive number of seconds (got {bin_sec!r}); give e.g. 3600")
        elif not problems and (f.until - f.since) / bin_sec > MAX_BINS:
            problems.append(
                f"{(f.until - f.since) / bin_sec:.0f} bins of {bin_sec:g} s are more than {MAX_BINS}; give wider bins"
            )
    return problems
