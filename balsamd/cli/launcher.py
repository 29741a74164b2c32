"""``balsamd launcher``: the pilot that runs jobs inside an allocation."""

from __future__ import annotations

import os
import sys

import click

from balsamd.cli.common import ExitCode, Finite, ensure_site, parse_pairs
from balsamd.launch.leader.main import run_launcher
from balsamd.launch.leader.nodes import node_share as share_of
from balsamd.launch.leader.nodes import resolve_nodes
from balsamd.launch.leader.summary import ExitReason
from balsamd.models import JobMode

# A launcher that lost its session had its runs killed: an error.  Every other way to stop is
# how launchers end: out of work, out of time, told to, out of nodes.
EXIT_CODES = {
    ExitReason.DONE: ExitCode.OK,
    ExitReason.IDLE: ExitCode.OK,
    ExitReason.WALL_TIME: ExitCode.OK,
    ExitReason.SIGNAL: ExitCode.OK,
    ExitReason.NODES_LOST: ExitCode.OK,
    ExitReason.SESSION_LOST: ExitCode.ERROR,
}


@click.command("launcher")
@click.option(
    "--job-mode",
    type=click.Choice([m.value for m in JobMode]),
    required=True,
    help="mpi: one MPI launch per job; serial: many single-rank runs packed on nodes.",
)
@click.option(
    "--wall-time-min", type=Finite(min=0, min_open=True), help="Minutes this launcher may run (default: no limit)."
)
@click.option("--idle-ttl", type=Finite(min=0), help="Exit after this many seconds with nothing to run.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only run jobs with this tag.")
@click.option("--nodes", help="Comma-separated hosts to use instead of the allocation's.")
@click.option("--batch-job", "batch_job_id", hidden=True, help="Batch job this launcher runs in.")
@click.option(
    "--node-share", metavar="FIRST:COUNT", callback=lambda _c, _p, v: _share(v),
    help="Use COUNT of the hosts from position FIRST (a partition of a batch job).",
)  # fmt: skip
@click.pass_context
def launcher_cmd(ctx: click.Context, job_mode: str, wall_time_min: float | None, idle_ttl: float | None,
                 tags: tuple[str, ...], nodes: str | None, batch_job_id: str | None,
                 node_share: tuple[int, int] | None) -> None:  # fmt: skip
    """Claim and run jobs until the wall time ends or nothing is left for --idle-ttl."""
    site = ensure_site(ctx)
    node_list = [n for n in nodes.split(",")] if nodes is not None else None
    try:
        if node_share is not None:
            node_list = share_of(resolve_nodes(node_list, os.environ), *node_share)
        summary = run_launcher(
            site.layout,
            site.settings,
            site.store,
            site.apps.sync(),
            JobMode(job_mode),
            wall_time_min,
            idle_ttl,
            parse_pairs(tags, "--tag"),
            node_list,
            batch_job_id,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    rate = summary.started / summary.elapsed if summary.elapsed else 0.0
    click.echo(
        f"launcher finished ({summary.exit.detail}): {summary.started} started, {summary.done} done, "
        f"{summary.errors} errors, {summary.timeouts} timed out, {summary.killed} killed "
        f"in {summary.elapsed:.1f} s ({rate:.0f} jobs/s)",
        err=True,
    )
    code = EXIT_CODES[summary.exit.reason]
    if code != ExitCode.OK:
        sys.exit(code)


def _share(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    first, sep, count = value.partition(":")
    if not (sep and first.isdigit() and count.isdigit()):
        raise click.BadParameter(f"{value!r} is not FIRST:COUNT (e.g. 0:2)", param_hint="--node-share")
    return int(first), int(count)
