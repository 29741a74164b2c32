"""``balsamd job modify`` and ``balsamd job dep``: change jobs that have not started."""

from __future__ import annotations

from typing import Any

import click

from balsamd.cli.common import Finite, parse_pairs
from balsamd.cli.mode import connection, is_central, requested
from balsamd.models import AppKind


@click.command("modify")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--num-nodes", type=click.IntRange(min=1), help="Nodes the run spans.")
@click.option("--ranks-per-node", type=click.IntRange(min=1), help="MPI ranks on each node.")
@click.option("--wall-time-min", type=Finite(min=0), help="Run time estimate in minutes.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Set this app parameter.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Set this tag.")
@click.pass_context
def job_modify(ctx: click.Context, job_ids: tuple[str, ...], params: tuple[str, ...], tags: tuple[str, ...],
               **resources: Any) -> None:  # fmt: skip
    """Change resources, parameters or tags of jobs that have not started (others keep theirs)."""
    from balsamd.cli.jobs import _typed  # how `job create` reads a Python app's values (it imports this module)

    given_params = parse_pairs(params, "-p/--param")
    given_tags = parse_pairs(tags, "-t/--tag")
    asked = {k: v for k, v in resources.items() if v is not None}
    if not (asked or given_params or given_tags):
        raise click.UsageError("give what to change: --num-nodes, --ranks-per-node, --wall-time-min, -p or -t")
    conn = connection(ctx)
    jobs = list({j.id: j for j in (conn.jobs.get(i) for i in job_ids)}.values())
    edits: dict[str, dict[str, Any]] = {}
    for job in jobs:
        changes: dict[str, Any] = dict(asked)
        if given_params:
            python = _app_kinds(ctx, conn, job).get(job.app) == AppKind.PYTHON
            changes["parameters"] = {
                **job.parameters,
                **{k: _typed(v) if python else v for k, v in given_params.items()},
            }
        if given_tags:
            changes["tags"] = {**job.tags, **given_tags}
        edits[job.id] = changes
    if is_central(ctx):  # a request per job, each applied by its site
        requested(jobs, [conn.jobs.update(job, **changes) for job, changes in edits.items()], "change", "job show ID")
        return
    for edited in conn.jobs.update_many(edits):  # all or none
        click.echo(f"{edited.id} modified")


def _app_kinds(ctx: click.Context, conn: Any, job: Any) -> dict[str, AppKind]:
    """The kinds of the apps at the job's site (Python apps' parameters are typed as JSON)."""
    site = job.site if is_central(ctx) else None
    cache = ctx.meta.setdefault("balsamd.app_kinds", {})
    if site not in cache:
        cache[site] = {a.name: a.kind for a in conn.apps.list(site)}
    return cache[site]


@click.command("dep")
@click.argument("child")
@click.argument("parents", nargs=-1, required=True)
@click.pass_context
def job_dep(ctx: click.Context, child: str, parents: tuple[str, ...]) -> None:
    """Make PARENTS parents of CHILD, a job that has not started: it waits until they finish."""
    conn = connection(ctx)
    if is_central(ctx):
        job = conn.jobs.get(child)
        requested([job], [conn.jobs.add_parents(job, parents)], "new parents", "job show ID")
        return
    job = conn.jobs.add_parents(child, parents)
    click.echo(f"{job.id} {job.state} parents: {' '.join(job.parent_ids)}")
