"""``balsamd queue ...``: batch jobs on the site's scheduler."""

from __future__ import annotations

import click

from balsamd.cli.common import ensure_site, json_option, parse_pairs
from balsamd.models import BATCH_ACTIVE, JobMode
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
@json_option
@click.pass_context
def queue_submit(ctx: click.Context, num_nodes: int, wall_time_min: int, queue: str | None, project: str | None,
                 job_mode: str, tags: tuple[str, ...], partitions: tuple[str, ...], params: tuple[str, ...],
                 as_json: bool) -> None:  # fmt: skip
    """Ask for a batch job; the daemon submits it to the scheduler."""
    site = ensure_site(ctx)
    batch = site.batch_jobs.create(
        num_nodes, wall_time_min, queue=queue, project=project, job_mode=job_mode,
        filter_tags=parse_pairs(tags, "--tag"), partitions=[_partition(p) for p in partitions],
        optional_params=parse_pairs(params, "--optional-param"),
    )  # fmt: skip
    if as_json:
        print_json(batch)
    else:
        click.echo(f"{batch.id} {batch.state}: {batch.num_nodes} node(s) x {batch.wall_time_min} min, "
                   f"queue {batch.queue or '-'}, project {batch.project or '-'}, {batch.job_mode} mode")  # fmt: skip
    record = read_record(site.path)
    if record is None or (record.host == this_host() and not pid_is_daemon(record.pid)):
        click.echo("note: the daemon is not running, so nothing will submit this batch job; "
                   "start it with `balsamd start`", err=True)  # fmt: skip


@queue_group.command("ls")
@click.option("--all", "show_all", is_flag=True, help="Include batch jobs that have ended.")
@json_option
@click.pass_context
def queue_ls(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List batch jobs."""
    site = ensure_site(ctx)
    batches = site.store.batch_jobs(None if show_all else sorted(BATCH_ACTIVE))
    if as_json:
        print_json(batches)
        return
    if not batches:
        click.echo("no batch jobs" if show_all else "no active batch jobs (--all shows ended ones)")
        return
    rows = [
        (b.id, b.state, b.scheduler_id or "-", b.num_nodes, b.wall_time_min, b.job_mode, b.queue or "-",
         timestamp(b.start_time), (b.status_info.splitlines() or ["-"])[0][:60])
        for b in batches
    ]  # fmt: skip
    click.echo(table(rows, ("ID", "STATE", "SCHED ID", "NODES", "MIN", "MODE", "QUEUE", "STARTED", "STATUS")))


@queue_group.command("rm")
@click.argument("batch_ids", nargs=-1, required=True)
@click.pass_context
def queue_rm(ctx: click.Context, batch_ids: tuple[str, ...]) -> None:
    """Remove batch jobs: cancel queued or running ones, withdraw those not yet submitted."""
    site = ensure_site(ctx)
    for batch_id in batch_ids:
        batch = site.store.remove_batch_job(batch_id)
        click.echo(f"{batch.id} {batch.state}")


def _partition(text: str) -> dict[str, object]:
    """``MODE:NODES[:KEY=VALUE,...]`` as a partition's fields."""
    mode, _, rest = text.partition(":")
    nodes, _, tags = rest.partition(":")
    if not nodes.isdigit():
        raise click.BadParameter(f"{text!r} is not MODE:NODES[:KEY=VALUE,...] (e.g. serial:2:size=small)",
                                 param_hint="--partition")  # fmt: skip
    pairs = tuple(t for t in tags.split(",") if t)
    return {"job_mode": mode, "num_nodes": int(nodes), "filter_tags": parse_pairs(pairs, "--partition")}
