"""``balsamd report ...``: throughput, utilization, failures, run times and batch-job queueing
over a time window, as a table with a text chart, as JSON, or as a PNG."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from balsamd.cli.common import json_option, parse_pairs
from balsamd.cli.mode import connection, is_central, pick_site, site_name_option
from balsamd.render import print_json, table, timestamp
from balsamd.reports.chart import axis, bar, can_draw_blocks, clock, duration, sparkline
from balsamd.reports.records import Failures, Queue, Runtimes, Throughput, Utilization
from balsamd.reports.window import WindowError, parse_duration, window


@click.group("report")
def report_group() -> None:
    """Campaign reports over a time window (default: the last day), from the site's store or,
    with --central, from the central database."""


def _window_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--until", metavar="TIME", help="End of the window (default: now); same forms as --since.")(f)
    return click.option(
        "--since",
        metavar="TIME",
        help="Start of the window: an ISO time (2026-12-07T09:00, local), or a duration back from now (2h, 1d). "
        "Default: a day before --until.",
    )(f)


def _job_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--batch-job", metavar="ID", help="Only jobs run by this batch job.")(f)
    f = click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only jobs with this tag.")(f)
    return click.option("--app", "app_name", metavar="NAME", help="Only jobs of this app.")(f)


def _out_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--png",
        "png",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="FILE",
        help="Also draw the report into this PNG file (needs matplotlib: balsamd[plots]).",
    )(f)
    return json_option(site_name_option(f))


_BIN = click.option("--bin", "bin_text", metavar="DURATION", help="Width of a time bin (5m, 1h; default: ~48 bins).")


def _args(ctx: click.Context, since: str | None, until: str | None, site_name: str | None) -> dict[str, Any]:
    """The window (parsed here, so that a mistake names its option) and the site."""
    import time

    try:
        start, end = window(since, until, time.time())
    except WindowError as exc:
        raise click.BadParameter(exc.detail, param_hint=exc.field) from None
    return {"since": start, "until": end, "site": pick_site(ctx, site_name, required=False)}


def _bin(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text, "--bin")
    except WindowError as exc:
        raise click.BadParameter(exc.detail, param_hint=exc.field) from None


def _emit(report: Any, as_json: bool, png: Path | None, draw: str, text: Callable[[bool], str]) -> None:
    if png is not None:
        from balsamd.reports import plot

        try:
            getattr(plot, draw)(report, png)
        except plot.PlotUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise click.BadParameter(
                f"cannot write {png}: {exc.strerror}; give a file in a directory you may write to", param_hint="--png"
            ) from None
    if as_json:
        print_json(report)
    else:
        click.echo(text(can_draw_blocks(sys.stdout.encoding)))
    if png is not None:
        click.echo(f"wrote {png}", err=True)


def _head(title: str, since: float, until: float) -> str:
    return f"{title} from {timestamp(since)} to {timestamp(until)}"


@report_group.command("throughput")
@_window_options
@_job_options
@_BIN
@_out_options
@click.pass_context
def throughput_cmd(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    app_name: str | None,
    tags: tuple[str, ...],
    batch_job: str | None,
    bin_text: str | None,
    site_name: str | None,
    as_json: bool,
    png: Path | None,
) -> None:
    """Jobs finished per time bin, and the rate (jobs/h): on average and in the last full bin."""
    args = _args(ctx, since, until, site_name)
    width = _bin(bin_text)
    r = connection(ctx).reports.throughput(
        **args, bin=width, app=app_name, tags=parse_pairs(tags, "--tag"), batch_job=batch_job
    )
    _emit(r, as_json, png, "throughput", lambda blocks: throughput_text(r, blocks))


def throughput_text(r: Throughput, blocks: bool) -> str:
    top = max(r.finished, default=0)
    span = r.until - r.since
    rows = [[clock(t, span), n, bar(n, top, 40, blocks)] for t, n in zip(r.bin_starts, r.finished, strict=True)]
    return "\n".join(
        [
            _head(f"{r.total} job(s) finished", r.since, r.until) + f" (bins of {duration(r.bin_sec)})",
            f"rate: {r.rate_avg_per_h:.1f} jobs/h on average, {r.rate_now_per_h:.1f} jobs/h in the last full bin "
            f"({r.rate_avg_per_h / 60:.2f} and {r.rate_now_per_h / 60:.2f} jobs/min)",
            "",
            "  " + sparkline(r.finished, blocks),
            "  " + axis(r.bin_starts, r.until),
            "",
            table(rows, ("BIN START", "FINISHED", "")),
        ]
    )


@report_group.command("utilization")
@_window_options
@_job_options
@_BIN
@_out_options
@click.pass_context
def utilization_cmd(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    app_name: str | None,
    tags: tuple[str, ...],
    batch_job: str | None,
    bin_text: str | None,
    site_name: str | None,
    as_json: bool,
    png: Path | None,
) -> None:
    """Nodes and runs busy over time, against the nodes batch jobs held (time averages per bin)."""
    args = _args(ctx, since, until, site_name)
    r = connection(ctx).reports.utilization(
        **args, bin=_bin(bin_text), app=app_name, tags=parse_pairs(tags, "--tag"), batch_job=batch_job
    )
    _emit(r, as_json, png, "utilization", lambda blocks: utilization_text(r, blocks))


def utilization_text(r: Utilization, blocks: bool) -> str:
    top = max([*r.allocated_nodes, *r.busy_nodes, 0.0])
    span = r.until - r.since
    share = (
        "no batch job held nodes in the window"
        if r.utilization is None
        else (f"{r.utilization:.0%} of the allocated node-hours were busy")
    )
    rows = [
        [clock(t, span), f"{busy:.2f}", f"{slots:.1f}", f"{held:.2f}", bar(busy, top, 30, blocks)]
        for t, busy, slots, held in zip(r.bin_starts, r.busy_nodes, r.busy_slots, r.allocated_nodes, strict=True)
    ]
    return "\n".join(
        [
            _head("utilization", r.since, r.until) + f" (bins of {duration(r.bin_sec)})",
            f"busy nodes: {r.mean_busy_nodes:.2f} on average; allocated: {r.mean_allocated_nodes:.2f}; {share}",
            "",
            "  busy      " + sparkline(r.busy_nodes, blocks),
            "  allocated " + sparkline(r.allocated_nodes, blocks),
            "            " + axis(r.bin_starts, r.until),
            "",
            table(rows, ("BIN START", "BUSY NODES", "RUNS", "ALLOCATED", "")),
        ]
    )


@report_group.command("failures")
@_window_options
@_job_options
@click.option(
    "--tail",
    "tail_lines",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Lines of output shown for each group's latest job (at the site).",
)
@_out_options
@click.pass_context
def failures_cmd(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    app_name: str | None,
    tags: tuple[str, ...],
    batch_job: str | None,
    tail_lines: int,
    site_name: str | None,
    as_json: bool,
    png: Path | None,
) -> None:
    """Failed runs and jobs grouped by app and reason, with the end of the latest one's output."""
    args = _args(ctx, since, until, site_name)
    r = connection(ctx).reports.failures(
        **args, app=app_name, tags=parse_pairs(tags, "--tag"), batch_job=batch_job, tail_lines=tail_lines
    )
    _emit(r, as_json, png, "failures", lambda blocks: failures_text(r, blocks, is_central(ctx)))


def failures_text(r: Failures, blocks: bool, central: bool = False) -> str:
    lines = [_head(f"{r.total} failure(s)", r.since, r.until)]
    if not r.groups:
        return lines[0]
    top = max(g.count for g in r.groups)
    rows = [[g.count, g.app, g.reason, timestamp(g.last_ts), bar(g.count, top, 20, blocks)] for g in r.groups]
    lines += ["", table(rows, ("COUNT", "APP", "REASON", "LAST", ""))]
    for g in r.groups:
        lines += ["", f"{g.app}: {g.reason} ({g.count}x); latest jobs: {' '.join(g.job_ids)}"]
        if g.tail:
            lines.append("  output of " + g.job_ids[0] + ":")
            lines += ["    " + line for line in g.tail.splitlines()]
        elif not central:
            lines.append("  (no output file in its workdir)")
    return "\n".join(lines)


@report_group.command("runtimes")
@_window_options
@_job_options
@_out_options
@click.pass_context
def runtimes_cmd(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    app_name: str | None,
    tags: tuple[str, ...],
    batch_job: str | None,
    site_name: str | None,
    as_json: bool,
    png: Path | None,
) -> None:
    """Run times per app of runs that ended in the window: count, min, median, p90, max, histogram."""
    args = _args(ctx, since, until, site_name)
    r = connection(ctx).reports.runtimes(**args, app=app_name, tags=parse_pairs(tags, "--tag"), batch_job=batch_job)
    _emit(r, as_json, png, "runtimes", lambda blocks: runtimes_text(r, blocks))


def runtimes_text(r: Runtimes, blocks: bool) -> str:
    head = _head(f"run times of {sum(a.count for a in r.apps)} run(s)", r.since, r.until)
    if not r.apps:
        return head
    rows = [
        [
            a.app,
            a.count,
            duration(a.min),
            duration(a.median),
            duration(a.p90),
            duration(a.max),
            sparkline(a.histogram, blocks),
        ]
        for a in r.apps
    ]
    edges = f"histogram bins from {duration(r.edges[0])} to {duration(r.edges[-1])}"
    scale = " (log scale)" if r.edges[0] > 0 and r.edges[-1] / r.edges[0] > 20 else ""
    return "\n".join(
        [head, "", table(rows, ("APP", "RUNS", "MIN", "MEDIAN", "P90", "MAX", "HISTOGRAM")), "", edges + scale]
    )


@report_group.command("queue")
@_window_options
@_out_options
@click.pass_context
def queue_cmd(
    ctx: click.Context, since: str | None, until: str | None, site_name: str | None, as_json: bool, png: Path | None
) -> None:
    """Batch jobs alive in the window: how long each waited in the scheduler's queue, and ran."""
    args = _args(ctx, since, until, site_name)
    r = connection(ctx).reports.queue(**args)
    _emit(r, as_json, png, "queue", lambda blocks: queue_text(r, blocks, is_central(ctx)))


def queue_text(r: Queue, blocks: bool, central: bool = False) -> str:
    head = _head(f"{len(r.batch_jobs)} batch job(s)", r.since, r.until)
    if not r.batch_jobs:
        return head
    top = max((t.wait_sec or 0.0) for t in r.batch_jobs)
    rows = [
        [
            t.id,
            *([t.site] if central else []),
            t.num_nodes,
            t.state,
            timestamp(t.created_at),
            duration(t.wait_sec),
            duration(t.run_sec),
            bar(t.wait_sec or 0.0, top, 20, blocks),
        ]
        for t in r.batch_jobs
    ]
    head_row = ("ID", *(["SITE"] if central else []), "NODES", "STATE", "CREATED", "WAIT", "RUN", "")
    stats = (
        f"wait: median {duration(r.wait.median)}, p90 {duration(r.wait.p90)}, max {duration(r.wait.max)}; "
        f"run: median {duration(r.run.median)}, p90 {duration(r.run.p90)}, max {duration(r.run.max)}"
    )
    return "\n".join([head, stats, "", table(rows, head_row)])
