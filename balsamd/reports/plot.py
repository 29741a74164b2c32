"""Reports as PNG images, drawn with matplotlib (the optional extra ``balsamd[plots]``).

matplotlib is imported only here, when a plot is asked for, and drawn through its object API
on a canvas of its own (no pyplot: no global figures, no display needed on a login node)."""

from __future__ import annotations

import datetime
import io
from pathlib import Path
from typing import Any

from balsamd.reports.chart import duration
from balsamd.reports.records import Failures, Queue, Runtimes, Throughput, Utilization

INSTALL_HINT = "pip install 'balsamd[plots]' (or: pip install matplotlib)"
WIDTH_IN, HEIGHT_IN, DPI = 10.0, 5.0, 110
# where a run-time axis puts its marks: a millisecond, a second, ten seconds, a minute...
NICE_DURATIONS = {
    0.001: "1ms",
    0.01: "10ms",
    0.1: "100ms",
    1: "1s",
    10: "10s",
    60: "1min",
    600: "10min",
    3600: "1h",
    6 * 3600: "6h",
    86400: "1d",
}


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to install it."""


def _figure() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(f"--png needs matplotlib, which is not installed here: {INSTALL_HINT}") from None
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _times(starts: list[float], width: float) -> list[datetime.datetime]:
    """Bin centres as local datetimes (what the time axis shows)."""
    return [datetime.datetime.fromtimestamp(t + width / 2) for t in starts]


def _time_axis(ax: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (local)")
    ax.grid(True, alpha=0.3)


def _window(since: float, until: float) -> str:
    fmt = "%Y-%m-%d %H:%M"
    return f"from {datetime.datetime.fromtimestamp(since):{fmt}} to {datetime.datetime.fromtimestamp(until):{fmt}}"


def _save(fig: Any, path: Path) -> None:
    """Draw the whole image first, then write it in one go (a failed drawing leaves no file)."""
    image = io.BytesIO()
    fig.savefig(image, format="png")
    path.write_bytes(image.getvalue())


def throughput(r: Throughput, path: Path) -> None:
    fig, ax = _figure()
    times = _times(r.bin_starts, r.bin_sec)
    ax.bar(
        times,
        r.finished,
        width=r.bin_sec / 86400 * 0.9,
        color="tab:blue",
        label=f"jobs finished in each {duration(r.bin_sec)} bin",
    )
    per_bin_avg = r.rate_avg_per_h * r.bin_sec / 3600
    ax.axhline(per_bin_avg, color="tab:orange", linestyle="--", label=f"average: {r.rate_avg_per_h:.1f} jobs/h")
    ax.set_ylabel(f"jobs finished per {duration(r.bin_sec)} bin")
    ax.set_ylim(bottom=0)
    total = ax.twinx()  # so far: the curve a person extrapolates to "when will it be done"
    so_far = [sum(r.finished[: i + 1]) for i in range(len(r.finished))]
    ends = [datetime.datetime.fromtimestamp(min(t + r.bin_sec, r.until)) for t in r.bin_starts]
    total.plot(ends, so_far, color="tab:green", linewidth=2, label="jobs finished since the window began")
    total.set_ylabel("jobs finished since the window began")
    total.set_ylim(bottom=0)
    ax.set_title(
        f"Throughput: {r.total} jobs finished, {_window(r.since, r.until)}\n"
        f"{r.rate_avg_per_h:.1f} jobs/h on average, {r.rate_now_per_h:.1f} jobs/h in the last full bin"
    )
    _time_axis(ax)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = total.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc="upper left")
    _save(fig, path)


def utilization(r: Utilization, path: Path) -> None:
    fig, _ = _figure()
    fig.clear()
    nodes, runs = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    times = _times(r.bin_starts, r.bin_sec)
    nodes.fill_between(
        times, r.allocated_nodes, step="mid", color="tab:gray", alpha=0.35, label="allocated (batch jobs running)"
    )
    nodes.step(times, r.busy_nodes, where="mid", color="tab:green", linewidth=2, label="busy (jobs running)")
    share = (
        "no allocation in the window" if r.utilization is None else f"{r.utilization:.0%} of allocated node-hours busy"
    )
    nodes.set_title(f"Utilization: {share}, {_window(r.since, r.until)}")
    nodes.set_ylabel("nodes")
    nodes.set_ylim(bottom=0)
    nodes.grid(True, alpha=0.3)
    nodes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    runs.step(times, r.busy_slots, where="mid", color="tab:purple", label="runs in progress")
    runs.set_ylabel("runs")
    runs.set_ylim(bottom=0)
    runs.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    runs.text(
        0.0,
        -0.55,
        f"each point: the average over a {duration(r.bin_sec)} bin",
        transform=runs.transAxes,
        fontsize="small",
        color="dimgray",
    )
    _time_axis(runs)
    _save(fig, path)


def failures(r: Failures, path: Path, top: int = 12) -> None:
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure()
    groups = list(reversed(r.groups[:top]))
    labels = [f"{g.app}: {g.reason[:60]}" for g in groups]
    ax.barh(range(len(groups)), [g.count for g in groups], color="tab:red")
    ax.set_yticks(range(len(groups)), labels)
    ax.set_xlabel("failures (failed runs, and jobs failed without a run)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    shown = "" if len(r.groups) <= top else f" (the {top} largest of {len(r.groups)} groups)"
    ax.set_title(f"{r.total} failures by app and reason, {_window(r.since, r.until)}{shown}")
    if not groups:
        ax.text(0.5, 0.5, "no failures in this window", ha="center", va="center", transform=ax.transAxes)
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)


def runtimes(r: Runtimes, path: Path) -> None:
    fig, ax = _figure()
    if r.apps and len(r.edges) > 1:
        lefts, widths = r.edges[:-1], [b - a for a, b in zip(r.edges, r.edges[1:], strict=False)]
        bottom = [0] * len(lefts)
        for stats in r.apps:
            ax.bar(
                lefts,
                stats.histogram,
                width=widths,
                align="edge",
                bottom=bottom,
                edgecolor="white",
                label=f"{stats.app} ({stats.count}, {duration(stats.median)})",
            )
            bottom = [b + h for b, h in zip(bottom, stats.histogram, strict=True)]
        if r.edges[0] > 0 and r.edges[-1] / r.edges[0] > 20:
            ax.set_xscale("log")
            marks = [t for t in NICE_DURATIONS if r.edges[0] <= t <= r.edges[-1]]
            ax.set_xticks(marks, [NICE_DURATIONS[t] for t in marks])
            ax.minorticks_off()
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="app (runs, median)")
    else:
        ax.text(0.5, 0.5, "no run ended in this window", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("run time (log scale)" if ax.get_xscale() == "log" else "run time (seconds)")
    ax.set_ylabel("runs (stacked by app)")
    ax.set_title(f"Run times per app (runs that ended {_window(r.since, r.until)})")
    ax.grid(True, alpha=0.3)
    _save(fig, path)


def queue(r: Queue, path: Path) -> None:
    fig, ax = _figure()
    rows = list(enumerate(r.batch_jobs))
    first = next((i for i, t in rows if t.wait_sec is not None), None)  # the one that labels the legend
    for i, t in rows:
        created = datetime.datetime.fromtimestamp(t.created_at)
        if t.wait_sec is None:
            ax.plot([created], [i], marker="o", color="tab:orange")
            continue
        started = created + datetime.timedelta(seconds=t.wait_sec)
        ax.barh(
            i,
            datetime.timedelta(seconds=t.wait_sec),
            left=created,
            color="tab:orange",
            height=0.6,
            label="waiting in the queue" if i == first else None,
        )
        ax.barh(
            i,
            datetime.timedelta(seconds=t.run_sec or 0.0),
            left=started,
            color="tab:blue",
            height=0.6,
            label="running" if i == first else None,
        )
    ax.set_yticks(range(len(rows)), [f"{t.id[-8:]} ({t.num_nodes} nodes)" for _, t in rows])
    ax.set_ylabel("batch job")
    wait, run = duration(r.wait.median), duration(r.run.median)
    ax.set_title(f"{len(rows)} batch jobs alive {_window(r.since, r.until)}\nmedian wait {wait}, median run {run}")
    _time_axis(ax)
    if any(t.wait_sec is not None for _, t in rows):
        ax.legend(loc="upper left")
    _save(fig, path)
