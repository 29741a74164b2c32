"""``balsamd qsub -n NODES -t MINUTES -- COMMAND ARGS...``: Balsam's drop-in for qsub."""

from __future__ import annotations

import click

from balsamd import ids
from balsamd.apps import AppError
from balsamd.cli.common import Finite, ensure_site, parse_pairs
from balsamd.modes import site_modes
from balsamd.qsub import APP, WORKDIRS, app_problem, fit_problems, install_app, queue_problems, tags_problems
from balsamd.validate import Refused


# options stop at the command: `balsamd qsub -n 1 -t 5 ./a.out -n 3` gives ./a.out its own -n
@click.command("qsub", context_settings={"allow_interspersed_args": False})
@click.option("-n", "--nodes", "num_nodes", type=click.IntRange(min=1), required=True, help="Nodes the command spans.")
@click.option(
    "-t", "--time", "wall_time_min", type=Finite(min=0, min_open=True), required=True,
    help="Minutes the command needs; it runs only in a batch job with that much time left.",
)  # fmt: skip
@click.option("--ranks-per-node", type=click.IntRange(min=1), default=1, show_default=True, help="MPI ranks per node.")
@click.option("-q", "--queue", help="Must be the elastic queue's queue: the site submits the batch jobs.")
@click.option("-A", "--project", help="Must be the elastic queue's project: the site submits the batch jobs.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag of the job (to find it with job ls).")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def qsub_cmd(ctx: click.Context, num_nodes: int, wall_time_min: float, ranks_per_node: int, queue: str | None,
             project: str | None, tags: tuple[str, ...], command: tuple[str, ...]) -> None:  # fmt: skip
    """Run COMMAND as a job that the elastic queue packs with others into batch jobs; prints its id.

    Every argument reaches COMMAND as it was given, never read by a shell; put `--` before COMMAND.
    """
    site = ensure_site(ctx)
    settings = site.settings
    given = parse_pairs(tags, "--tag")
    problems = [
        *queue_problems(settings, queue, project),
        *fit_problems(settings, num_nodes, ranks_per_node, wall_time_min),
        *tags_problems(settings, given),
    ]
    if problems:
        raise Refused("qsub", problems)
    existing = site.apps.sync().get(APP)
    problem = app_problem(existing)
    if problem:
        raise AppError(problem)
    if existing is None:
        install_app(site.layout.apps, site_modes(settings.site.group_readable).file)
    job = site.jobs.create(
        APP, f"{WORKDIRS}/{ids.new_id()}", parameters={"argv": list(command)},
        tags={**given, **settings.elastic.filter_tags}, num_nodes=num_nodes, ranks_per_node=ranks_per_node,
        wall_time_min=wall_time_min,
    )  # fmt: skip
    click.echo(job.id)
    if not settings.elastic.enabled:
        click.echo(
            "note: the elastic queue is off, so no batch job is submitted for this job: set [elastic] "
            "enabled = true in settings.toml and restart the daemon, or submit one with `balsamd queue submit`",
            err=True,
        )
