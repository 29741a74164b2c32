"""``balsamd queue ...``: batch jobs on the site's scheduler."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from balsamd.cli.common import json_option, parse_pairs
from balsamd.cli.mode import connection, is_central, pick_site, requested, site_name_option
from balsamd.models import BATCH_ACTIVE, BatchJob, JobMode
from balsamd.render import print_json, table, timestamp
from balsamd.rpc.record import pid_is_daemon, read_record, this_host


@click.group("queue")
def queue_group() -> None:
    """Submit, list and remove batch jobs (allocations that run launchers)."""


@queue_group.command("submit")
@click.option("--num-nodes", type=int, required=True, help="Nodes of the allocation.")
@click.option("--wall-time-min", type=int, required=True, help="Minutes of the allocation.")
@click.option("--queue", help="Scheduler queue / partition (default: [scheduler] default_queue).")
@click.option("--project", help="Project / account charged (default: [scheduler] default_project).")
@click.option("--job-mode", type=click.Choice([m.value for m in JobMode]), default="mpi", show_default=True,
              help="How its launcher runs jobs.")  # fmt: skip
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Its launcher only runs jobs with this tag.")
@click.option(
    "--partition",
    "partitions",
    multiple=True,
    metavar="MODE:NODES[:KEY=VALUE,...]",
    help="A share of the nodes run by a launcher of its own, in its mode, on jobs with these tags.",
)
@click.option(
    "--optional-param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A scheduler option the site allows in [scheduler] optional_params.",
)
@site_name_option
@json_option
@click.pass_context
def queue_submit(ctx: click.Context, num_nodes: int, wall_time_min: int, queue: str | None, project: str | None,
                 job_mode: str, tags: tuple[str, ...], partitions: tuple[str, ...], params: tuple[str, ...],
                 site_name: str | None, as_json: bool) -> None:  # fmt: skip
    """Ask for a batch job; the site's daemon submits it to the scheduler."""
    conn = connection(ctx)
    made = conn.batch_jobs.create(
        num_nodes, wall_time_min, site=pick_site(ctx, site_name, required=True),
        queue=queue, project=project, job_mode=job_mode,
        filter_tags=parse_pairs(tags, "--tag"), partitions=[_partition(p) for p in partitions],
        optional_params=parse_pairs(params, "--optional-param"),
    )  # fmt: skip
    batch = _record(made)
    if as_json:
        print_json(_batch_json(ctx, made))
    else:
        click.echo(f"{batch.id} {batch.state}: {batch.num_nodes} node(s) x {batch.wall_time_min} min, "
                   f"queue {batch.queue or '-'}, project {batch.project or '-'}, {batch.job_mode} mode")  # fmt: skip
    if is_central(ctx):
        click.echo(f"note: site {made.site} checks the request when it next syncs; `balsamd queue ls` follows it",
                   err=True)  # fmt: skip
        return
    record = read_record(conn.path)
    if record is None or (record.host == this_host() and not pid_is_daemon(record.pid)):
        click.echo("note: the daemon is not running, so nothing will submit this batch job; "
                   "start it with `balsamd start`", err=True)  # fmt: skip


@queue_group.command("ls")
@click.option("--all", "show_all", is_flag=True, help="Include batch jobs that have ended.")
@site_name_option
@json_option
@click.pass_context
def queue_ls(ctx: click.Context, show_all: bool, site_name: str | None, as_json: bool) -> None:
    """List batch jobs (through central: of every site you see, or of --site-name)."""
    found = connection(ctx).batch_jobs.filter(
        site=pick_site(ctx, site_name, required=False), state=None if show_all else sorted(BATCH_ACTIVE)
    )
    if as_json:
        print_json([_batch_json(ctx, b) for b in found])
        return
    batches = [_record(b) for b in found]
    if not batches:
        click.echo("no batch jobs" if show_all else "no active batch jobs (--all shows ended ones)")
        return
    sites = [[item.site] if is_central(ctx) else [] for item in found]
    rows = [
        (b.id, *at, b.state, b.scheduler_id or "-", b.num_nodes, b.wall_time_min, b.job_mode, b.queue or "-",
         timestamp(b.start_time), (b.status_info.splitlines() or ["-"])[0][:60])
        for b, at in zip(batches, sites, strict=True)
    ]  # fmt: skip
    head = ("ID", *(["SITE"] if is_central(ctx) else []), "STATE", "SCHED ID", "NODES", "MIN", "MODE", "QUEUE",
            "STARTED", "STATUS")  # fmt: skip
    click.echo(table(rows, head))


@queue_group.command("rm")
@click.argument("batch_ids", nargs=-1, required=True)
@click.pass_context
def queue_rm(ctx: click.Context, batch_ids: tuple[str, ...]) -> None:
    """Remove batch jobs: cancel queued or running ones, withdraw those not yet submitted."""
    conn = connection(ctx)
    targets = [conn.batch_jobs.get(batch_id) for batch_id in dict.fromkeys(batch_ids)]
    outcome = conn.batch_jobs.delete(targets)
    if is_central(ctx):
        requested(targets, outcome, "removal", "queue ls --all")
        return
    for batch in outcome:
        click.echo(f"{batch.id} {batch.state}")


def _record(batch: Any) -> BatchJob:
    """The batch job's fields: a site hands out the record, central a view of it."""
    return batch if isinstance(batch, BatchJob) else batch.record


def _batch_json(ctx: click.Context, batch: Any) -> Any:
    return {**msgspec.to_builtins(batch.record), "site": batch.site} if is_central(ctx) else batch


def _partition(text: str) -> dict[str, object]:
    """``MODE:NODES[:KEY=VALUE,...]`` as a partition's fields."""
    mode, _, rest = text.partition(":")
    nodes, _, tags = rest.partition(":")
    if not nodes.isdigit():
        raise click.BadParameter(f"{text!r} is not MODE:NODES[:KEY=VALUE,...] (e.g. serial:2:size=small)",
                                 param_hint="--partition")  # fmt: skip
    pairs = tuple(t for t in tags.split(",") if t)
    return {"job_mode": mode, "num_nodes": int(nodes), "filter_tags": parse_pairs(pairs, "--partition")}
