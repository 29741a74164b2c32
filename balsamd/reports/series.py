"""Pure functions from rows to series: binning, the utilization sweep, percentiles, runtime
and queue statistics, failure grouping.  No I/O: a live view or a notebook can call them."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from balsamd.models import BatchJob
from balsamd.reports.records import (
    BatchTiming,
    BusyBin,
    CountBin,
    DurationStats,
    FailureEvent,
    FailureGroup,
    RunSpan,
    RuntimeStats,
)

GROUP_SAMPLE = 5  # job ids kept per failure group


def bin_count(since: float, until: float, bin_sec: float) -> int:
    """How many bins of ``bin_sec`` cover [since, until) (the last may be partial)."""
    return max(1, math.ceil((until - since) / bin_sec - 1e-9))


def bin_starts(since: float, until: float, bin_sec: float) -> list[float]:
    return [since + i * bin_sec for i in range(bin_count(since, until, bin_sec))]


def dense_counts(bins: Iterable[CountBin], n: int) -> list[int]:
    """Sparse (index, count) bins as a list of ``n`` counts; indexes outside are dropped."""
    out = [0] * n
    for b in bins:
        if 0 <= b.index < n:
            out[b.index] += b.count
    return out


def bin_events(times: Iterable[float], since: float, bin_sec: float) -> list[CountBin]:
    """The events at ``times`` counted per bin (what the store does in SQL)."""
    counts: dict[int, int] = defaultdict(int)
    for t in times:
        if t >= since:
            counts[int((t - since) // bin_sec)] += 1
    return [CountBin(i, c) for i, c in sorted(counts.items())]


def rate_per_hour(count: float, seconds: float) -> float:
    return count * 3600.0 / seconds if seconds > 0 else 0.0


def rates(counts: Sequence[int], since: float, until: float, bin_sec: float, now: float) -> tuple[float, float]:
    """(average over the window, rate in the last full bin) in events per hour.  A bin is full
    once it has ended, by ``until`` and by ``now`` (the one holding now is still filling)."""
    avg = rate_per_hour(sum(counts), until - since)
    if not counts:
        return avg, 0.0
    end = min(until, now)
    full = min(len(counts), int((end - since) // bin_sec))
    if full < 1:  # no bin has ended yet: what there is so far
        return avg, rate_per_hour(counts[0], max(end - since, 0.0))
    return avg, rate_per_hour(counts[full - 1], bin_sec)


def box_areas(boxes: Iterable[tuple[float, float, float]], since: float, until: float, bin_sec: float) -> list[float]:
    """The area (height x seconds) of a sum of boxes, each ``weight`` high from ``start`` to
    ``end``, in each bin: the utilization sweep.  Areas add up, so each box is spread over the
    bins it spans on its own, with no sorting (a week of a million runs is a million boxes)."""
    n = bin_count(since, until, bin_sec)
    area = [0.0] * n
    for start, end, weight in boxes:
        t0, t1 = max(start, since), min(end, until)
        if t1 <= t0 or weight == 0:
            continue
        i = int((t0 - since) // bin_sec)
        while t0 < t1 and i < n:
            edge = min(t1, since + (i + 1) * bin_sec)
            area[i] += weight * (edge - t0)
            t0, i = edge, i + 1
    return area


def per_second(areas: Sequence[float], since: float, until: float, bin_sec: float) -> list[float]:
    """Areas per bin as time averages (the last bin divides by its own width)."""
    widths = [min(bin_sec, until - (since + i * bin_sec)) for i in range(len(areas))]
    return [a / w if w > 0 else 0.0 for a, w in zip(areas, widths, strict=True)]


def box_average(boxes: Iterable[tuple[float, float, float]], since: float, until: float, bin_sec: float) -> list[float]:
    """The time average over each bin of a sum of boxes (see ``box_areas``)."""
    return per_second(box_areas(boxes, since, until, bin_sec), since, until, bin_sec)


def busy_bins(runs: Sequence[RunSpan], since: float, until: float, bin_sec: float) -> list[BusyBin]:
    """Node-seconds and run-seconds of runs per bin (bins with none left out)."""
    nodes = box_areas(run_boxes(runs, until), since, until, bin_sec)
    slots = box_areas(run_boxes(runs, until, "slots"), since, until, bin_sec)
    return [BusyBin(i, a, b) for i, (a, b) in enumerate(zip(nodes, slots, strict=True)) if a or b]


def dense_busy(bins: Iterable[BusyBin], n: int) -> tuple[list[float], list[float]]:
    """Sparse busy bins as (node-seconds, run-seconds) lists of ``n`` bins."""
    nodes, slots = [0.0] * n, [0.0] * n
    for b in bins:
        if 0 <= b.index < n:
            nodes[b.index] += b.node_sec
            slots[b.index] += b.run_sec
    return nodes, slots


def run_boxes(runs: Iterable[RunSpan], until: float, weight: str = "nodes") -> list[tuple[float, float, float]]:
    """Each run as a box from its start to its end (open runs to ``until``), as high as its
    job's share of nodes ("nodes") or one ("slots": each run fills a slot)."""
    return [
        (run.start, until if run.end is None else run.end, run.footprint if weight == "nodes" else 1.0) for run in runs
    ]


def allocation_boxes(batch_jobs: Iterable[BatchJob], now: float) -> list[tuple[float, float, float]]:
    """Nodes batch jobs held: num_nodes from their start to their end (to now, while running)."""
    return [
        (b.start_time, now if b.end_time is None else b.end_time, float(b.num_nodes))
        for b in batch_jobs
        if b.start_time is not None
    ]


def time_mean(values: Sequence[float], since: float, until: float, bin_sec: float) -> float:
    """The mean over the window of per-bin averages (the last bin weighs by its width)."""
    total = sum(v * min(bin_sec, until - (since + i * bin_sec)) for i, v in enumerate(values))
    return total / (until - since) if until > since else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, interpolated between ranks."""
    if not sorted_values:
        raise ValueError("no values to take a percentile of")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def duration_stats(values: Iterable[float | None]) -> DurationStats:
    known = sorted(v for v in values if v is not None)
    if not known:
        return DurationStats(count=0, median=None, p90=None, max=None)
    return DurationStats(count=len(known), median=percentile(known, 50), p90=percentile(known, 90), max=known[-1])


def histogram_edges(values: Sequence[float], bins: int = 12) -> list[float]:
    """Edges for a histogram of run times: logarithmic when they span more than a factor of
    20 (a few seconds next to hours), else even."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [lo, lo + 1.0] if lo == 0 else [lo * 0.9, lo * 1.1]
    if lo > 0 and hi / lo > 20:
        a, b = math.log10(lo), math.log10(hi)
        return [10 ** (a + (b - a) * i / bins) for i in range(bins + 1)]
    return [lo + (hi - lo) * i / bins for i in range(bins + 1)]


def histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Counts per [edge_i, edge_i+1); the last bin includes its upper edge."""
    counts = [0] * max(0, len(edges) - 1)
    if not counts:
        return counts
    for v in values:
        if v < edges[0] or v > edges[-1]:
            continue
        lo, hi = 0, len(edges) - 1
        while hi - lo > 1:  # the bin whose lower edge is the last <= v
            mid = (lo + hi) // 2
            if edges[mid] <= v:
                lo = mid
            else:
                hi = mid
        counts[lo] += 1
    return counts


def runtime_stats(runs: Iterable[RunSpan], since: float, until: float) -> tuple[list[float], list[RuntimeStats]]:
    """Per app, the run times of runs that ended in [since, until), with a histogram over
    edges shared by every app."""
    by_app: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        if run.end is not None and since <= run.end < until:
            by_app[run.app].append(max(0.0, run.end - run.start))
    edges = histogram_edges([v for vs in by_app.values() for v in vs])
    stats = []
    for app in sorted(by_app):
        vs = sorted(by_app[app])
        stats.append(
            RuntimeStats(
                app=app,
                count=len(vs),
                min=vs[0],
                median=percentile(vs, 50),
                p90=percentile(vs, 90),
                max=vs[-1],
                histogram=histogram(vs, edges),
            )
        )
    return edges, stats


def reason_key(reason: str) -> str:
    """What failures are grouped by: the first line of the reason (exit code, timeout, the
    parent that failed), without the job-specific rest."""
    first = reason.strip().splitlines()[0].strip() if reason.strip() else "(no reason recorded)"
    if first.startswith("parent ") and " " in first[7:]:
        return "parent " + first[7:].split(" ", 1)[1]  # "parent ID failed": grouped over parents
    return first[:120]


def group_failures(events: Iterable[FailureEvent]) -> list[FailureGroup]:
    """Failures by (app, reason), the most frequent first, each with its most recent jobs."""
    groups: dict[tuple[str, str], list[FailureEvent]] = defaultdict(list)
    for e in events:
        groups[e.app, reason_key(e.reason)].append(e)
    out = []
    for (app, reason), members in groups.items():
        members.sort(key=lambda e: e.ts, reverse=True)
        out.append(
            FailureGroup(
                app=app,
                reason=reason,
                count=len(members),
                last_ts=members[0].ts,
                job_ids=[e.job_id for e in members[:GROUP_SAMPLE]],
            )
        )
    out.sort(key=lambda g: (-g.count, -g.last_ts, g.app, g.reason))
    return out


def batch_timings(batch_jobs: Iterable[BatchJob], now: float, site: str = "") -> list[BatchTiming]:
    """Each batch job's wait (created -> start) and run (start -> end, or -> now while it runs)."""
    out = []
    for b in sorted(batch_jobs, key=lambda b: b.created_at):
        wait = None if b.start_time is None else max(0.0, b.start_time - b.created_at)
        run = None
        if b.start_time is not None:
            run = max(0.0, (now if b.end_time is None else b.end_time) - b.start_time)
        out.append(
            BatchTiming(
                id=b.id,
                num_nodes=b.num_nodes,
                state=str(b.state),
                created_at=b.created_at,
                wait_sec=wait,
                run_sec=run,
                site=site,
            )
        )
    return out
