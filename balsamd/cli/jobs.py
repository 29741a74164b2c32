"""``balsamd job ...``: create, list, inspect and change jobs."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import click
from click.core import ParameterSource

from balsamd.cli.common import LIMIT, STATE, ExitCode, json_option, parse_pairs
from balsamd.cli.completion import complete_app_names
from balsamd.cli.job_bulk import create_from
from balsamd.cli.job_edit import job_dep, job_modify
from balsamd.cli.job_wait import job_wait
from balsamd.cli.mode import connection, is_central, not_found_errors, pick_site, requested, site_name_option
from balsamd.dagtree import tree
from balsamd.models import AppKind
from balsamd.render import events_table, job_dict, print_json, table, timestamp
from balsamd.results import describe_result
from balsamd.states import FINAL, RETRYABLE, IllegalTransition, JobState


@click.group("job")
def job_group() -> None:
    """Create, list, inspect, retry, kill and remove jobs."""


def _typed(value: str) -> object:
    """Python apps get JSON values where the text is JSON (5, 2.5, true, [1,2]); else text."""
    try:
        return json.loads(value)
    except ValueError:
        return value


@job_group.command("create")
@click.option("--app", "app_name", help="App to run (see `balsamd app ls`).")
@click.option("--workdir", help="Working directory, relative to SITE/data/.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="App parameter.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag to filter by.")
@click.option("--num-nodes", type=int, default=1, show_default=True, help="Nodes the run spans.")
@click.option("--ranks-per-node", type=int, default=1, show_default=True, help="MPI ranks on each node.")
@click.option("--threads-per-rank", type=int, default=1, show_default=True, help="CPU threads of each rank.")
@click.option(
    "--threads-per-core",
    type=int,
    default=1,
    show_default=True,
    help="Hardware threads used per CPU core.",
)
@click.option("--gpus-per-rank", type=float, default=0.0, show_default=True, help="GPUs of each rank (may be 0.5).")
@click.option(
    "--node-packing-count",
    type=int,
    default=1,
    show_default=True,
    help="How many such jobs may share one node.",
)
@click.option(
    "--wall-time-min",
    type=float,
    default=0.0,
    show_default=True,
    help="Run time estimate; jobs are only claimed by launchers with this much time left.",
)
@click.option(
    "--launch-param",
    "launch_params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Passed through to the MPI launcher as --KEY VALUE.",
)
@click.option(
    "--transfer",
    "transfers",
    multiple=True,
    metavar="SLOT=LOCATION:PATH",
    help="File for one of the app's transfer slots, PATH inside a location of [transfers.locations].",
)
@click.option("--parent", "parents", multiple=True, metavar="ID", help="Job that must finish first.")
@click.option(
    "--from", "source", type=click.File("r", encoding="utf-8"), metavar="FILE",
    help="Create a job per line of FILE (- for stdin): JSON objects of a job's fields, or CSV with columns app, "
    "workdir, tag.KEY, param.KEY and the resource options' names; all or none.  The options above fill in "
    "what lines leave out.",
)  # fmt: skip
@site_name_option
@json_option
@click.pass_context
def job_create(ctx: click.Context, app_name: str | None, workdir: str | None, params: tuple[str, ...],
               tags: tuple[str, ...], launch_params: tuple[str, ...], transfers: tuple[str, ...],
               parents: tuple[str, ...], source: TextIO | None, site_name: str | None, as_json: bool,
               **resources: object) -> None:  # fmt: skip
    """Create one job, or one per line of --from FILE (through central: requests its site
    checks and applies)."""
    if source is not None:
        _create_from(ctx, source, app_name, workdir, params, tags, launch_params, transfers, parents, site_name,
                     as_json, resources)  # fmt: skip
        return
    for name, value in (("app_name", app_name), ("workdir", workdir)):
        if value is None:
            raise click.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == name))
    assert app_name is not None and workdir is not None
    conn = connection(ctx)
    site = pick_site(ctx, site_name, required=True)
    given = parse_pairs(params, "-p/--param")
    app = next((a for a in conn.apps.list(site) if a.name == app_name), None)
    python = app is not None and app.kind == AppKind.PYTHON
    parameters: dict[str, object] = {k: _typed(v) if python else v for k, v in given.items()}
    job = conn.jobs.create(
        app_name, workdir, site=site, parameters=parameters,
        tags=parse_pairs(tags, "-t/--tag"), launch_params=parse_pairs(launch_params, "--launch-param"),
        transfers=parse_pairs(transfers, "--transfer"), parent_ids=[_parent(conn, p) for p in parents], **resources,
    )  # fmt: skip
    if as_json:
        print_json(_job_json(ctx, job))
    else:
        click.echo(f"{job.id} {job.state} {job.app} {job.workdir}")


def _create_from(ctx: click.Context, source: TextIO, app_name: str | None, workdir: str | None,
                 params: tuple[str, ...], tags: tuple[str, ...], launch_params: tuple[str, ...],
                 transfers: tuple[str, ...], parents: tuple[str, ...], site_name: str | None, as_json: bool,
                 resources: dict[str, object]) -> None:  # fmt: skip
    """``job create --from FILE``: the options given are every line's defaults."""
    conn = connection(ctx)
    site = pick_site(ctx, site_name, required=True)
    defaults: dict[str, Any] = {
        "app": app_name, "workdir": workdir, "parameters": parse_pairs(params, "-p/--param"),
        "tags": parse_pairs(tags, "-t/--tag"), "launch_params": parse_pairs(launch_params, "--launch-param"),
        "transfers": parse_pairs(transfers, "--transfer"), "parent_ids": [_parent(conn, p) for p in parents],
        **{k: v for k, v in resources.items() if ctx.get_parameter_source(k) != ParameterSource.DEFAULT},
    }  # fmt: skip
    defaults = {k: v for k, v in defaults.items() if v is not None and v != {} and v != []}
    python = {a.name for a in conn.apps.list(site) if a.kind == AppKind.PYTHON}
    jobs = create_from(conn, site, source.read(), defaults, lambda app, text: _typed(text) if app in python else text)
    if as_json:
        print_json({"created": len(jobs), "ids": [j.id for j in jobs]})
    else:
        click.echo(f"created {len(jobs)} job(s)")


def _parent(conn: Any, given: str) -> str:
    """A --parent's full id; one that names no job is that option's mistake."""
    try:
        return str(conn.jobs.get(given).id)
    except not_found_errors() as exc:
        raise click.BadParameter(str(exc), param_hint="--parent") from None


def _job_json(ctx: click.Context, job: Any) -> dict[str, Any]:
    """A job as --json prints it; through central, with the site it is at."""
    return {**job_dict(job.record), "site": job.site} if is_central(ctx) else job_dict(job.record)


def _site_cells(ctx: click.Context, item: Any) -> list[str]:
    """The SITE cell of a table row through central, where rows come from several sites."""
    return [item.site] if is_central(ctx) else []


def _site_head(ctx: click.Context) -> list[str]:
    return ["SITE"] if is_central(ctx) else []


def site_only(ctx: click.Context, **options: object) -> None:
    """Refuse options that filter what only a site's store keeps, through central."""
    given = [name for name, value in options.items() if value]
    if given and is_central(ctx):
        raise click.UsageError(
            f"--{given[0].replace('_', '-')} works at the site, not through the central database; "
            "filter by --state, --tag, --app or --id there instead"
        )


def _state_filters(states: tuple[str, ...]) -> list[JobState]:
    return [JobState(s.upper()) for s in states]


@job_group.command("ls")
@click.option("--state", "states", multiple=True, type=STATE, help="Only jobs in this state.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only jobs with this tag.")
@click.option("--app", "app_name", shell_complete=complete_app_names, help="Only jobs of this app.")
@click.option("--workdir", help="Only jobs whose workdir contains this text.")
@click.option("--parent", help="Only children of this job.")
@click.option("--id", "job_ids", multiple=True, metavar="ID", help="Only this job (may be given again).")
@click.option("--limit", type=LIMIT, help="At most this many jobs.")
@click.option("--by-state", is_flag=True, help="Counts per state instead of jobs.")
@click.option("--tree", "as_tree", is_flag=True, help="Children under their parents (a DAG as an indented tree).")
@site_name_option
@json_option
@click.pass_context
def job_ls(ctx: click.Context, states: tuple[str, ...], tags: tuple[str, ...], app_name: str | None,
           workdir: str | None, parent: str | None, job_ids: tuple[str, ...], limit: int | None,
           by_state: bool, as_tree: bool, site_name: str | None, as_json: bool) -> None:  # fmt: skip
    """List jobs, oldest first (through central: of every site you see, or of --site-name)."""
    if by_state and limit is not None:
        raise click.UsageError("--limit lists at most so many jobs; --by-state counts them all: give one of them")
    if by_state and as_tree:
        raise click.UsageError("--by-state counts jobs; --tree lays them out: give one of them")
    site_only(ctx, workdir=workdir, parent=parent, by_state=by_state)
    conn = connection(ctx)
    criteria: dict[str, Any] = {"site": pick_site(ctx, site_name, required=False)}
    if states:
        criteria["state"] = _state_filters(states)
    if tags:
        criteria["tags"] = parse_pairs(tags, "--tag")
    if app_name:
        criteria["app"] = app_name
    if job_ids:
        criteria["ids"] = list(dict.fromkeys(conn.jobs.get(i).id for i in job_ids))
    if workdir:
        criteria["workdir"] = workdir
    if parent:
        criteria["parent"] = conn.jobs.get(parent).id
    if by_state:
        counts = conn.jobs.counts_by_state(**criteria)
        if as_json:
            print_json(counts)
        else:
            click.echo(
                table(sorted(counts.items(), key=lambda kv: list(JobState).index(kv[0])), ("STATE", "COUNT"))
                if counts
                else "no jobs"
            )
        return
    if limit is not None:
        criteria["limit"] = limit
    jobs = conn.jobs.filter(**criteria)
    if as_tree:
        _print_tree(ctx, jobs, as_json)
        return
    if as_json:
        print_json([_job_json(ctx, j) for j in jobs])
        return
    rows = [[j.id, *_site_cells(ctx, j), j.state, j.app, j.workdir, _tags(j.tags)] for j in jobs]
    head = ["ID", *_site_head(ctx), "STATE", "APP", "WORKDIR", "TAGS"]
    click.echo(table(rows, head) if rows else "no jobs")


def _print_tree(ctx: click.Context, jobs: list[Any], as_json: bool) -> None:
    """The jobs as a tree; one with several parents is shown once in full, then as a reference
    (``--json``: nested under ``children``, a reference being ``{"id": ..., "shown_above": true}``)."""
    nodes = tree(jobs)
    if as_json:
        print_json(_nested(ctx, nodes))
        return
    if not nodes:
        click.echo("no jobs")
        return
    rows = [
        [n.prefix + n.job.id, *_site_cells(ctx, n.job), "(shown above)", "", ""] if n.repeated
        else [n.prefix + n.job.id, *_site_cells(ctx, n.job), n.job.state, n.job.app, n.job.workdir]
        for n in nodes
    ]  # fmt: skip
    click.echo(table(rows, ["ID", *_site_head(ctx), "STATE", "APP", "WORKDIR"]))


def _nested(ctx: click.Context, nodes: list[Any]) -> list[dict[str, Any]]:
    roots: list[dict[str, Any]] = []
    path: list[dict[str, Any]] = []  # the node at each depth of the walk
    for node in nodes:
        depth = len(node.prefix) // 3
        item = (
            {"id": node.job.id, "shown_above": True} if node.repeated else {**_job_json(ctx, node.job), "children": []}
        )
        del path[depth:]
        (path[-1]["children"] if path else roots).append(item)
        path.append(item)
    return roots


def _tags(tags: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(tags.items()))


@job_group.command("show")
@click.argument("job_id")
@json_option
@click.pass_context
def job_show(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show one job with its event history (ID may be a unique prefix)."""
    job = connection(ctx).jobs.get(job_id)
    events = job.events()
    result = describe_result(job.record)
    if as_json:
        print_json({**_job_json(ctx, job), "result": result, "events": events})
        return
    r = job.record
    # multi-line texts (output tails, tracebacks) go below the table, where they stay readable
    blocks = [(name, text) for name, text in (("reason", r.state_reason), ("result", result)) if text and "\n" in text]
    long = {name for name, _ in blocks}
    lines = [
        ("id", r.id), *[("site", s) for s in _site_cells(ctx, job)], ("app", r.app), ("workdir", r.workdir),
        ("state", r.state),
        ("reason", "(below)" if "reason" in long else r.state_reason or "-"),
        ("parameters", json.dumps(r.parameters)),
        ("tags", _tags(r.tags) or "-"), ("parents", " ".join(r.parent_ids) or "-"),
        ("resources", f"{r.num_nodes} node(s) x {r.ranks_per_node} ranks x {r.threads_per_rank} "
                      f"threads, {r.gpus_per_rank:g} GPUs/rank, packing {r.node_packing_count}, "
                      f"{r.wall_time_min:g} min"),
        ("return code", "-" if r.return_code is None else r.return_code),
        ("result", "(below)" if "result" in long else "-" if result is None else result),
        ("attempts", r.attempts), ("created", timestamp(r.created_at)),
        ("updated", timestamp(r.updated_at)),
    ]  # fmt: skip
    click.echo(table(lines, ("FIELD", "VALUE")).split("\n", 1)[1])
    for name, text in blocks:
        click.echo(f"\n{name}:")
        click.echo("  " + text.rstrip().replace("\n", "\n  "))
    click.echo("")
    click.echo(events_table(events, with_job=False))


def _refusal(action: str, exc: IllegalTransition) -> str | None:
    """What to tell a user whose retry or kill the transition table refused."""
    if action == "retry" and exc.src not in RETRYABLE:
        return "only FAILED, RUN_ERROR or RUN_TIMEOUT jobs can be retried"
    if action == "kill" and exc.src in FINAL:
        return f"a finished or killed job cannot be killed (remove it with `balsamd job rm {exc.job_id}`)"
    return None


def _change(ctx: click.Context, job_ids: tuple[str, ...], action: str) -> None:
    conn = connection(ctx)
    jobs = list({j.id: j for j in (conn.jobs.get(i) for i in job_ids)}.values())
    try:
        result = getattr(conn.jobs, action)(jobs)
    except IllegalTransition as exc:
        hint = _refusal(action, exc)
        if hint is None:
            raise
        raise click.ClickException(f"job {exc.job_id} is {exc.src}: {hint}; no job was changed") from None
    if is_central(ctx):
        requested(jobs, result, action, "job show ID")
        return
    for job in jobs:
        click.echo(f"{job.id} {result[job.id]}")


@job_group.command("retry")
@click.argument("job_ids", nargs=-1, required=True)
@click.pass_context
def job_retry(ctx: click.Context, job_ids: tuple[str, ...]) -> None:
    """Run FAILED / RUN_ERROR / RUN_TIMEOUT jobs again (-> RESTART_READY)."""
    _change(ctx, job_ids, "retry")


@job_group.command("kill")
@click.argument("job_ids", nargs=-1, required=True)
@click.pass_context
def job_kill(ctx: click.Context, job_ids: tuple[str, ...]) -> None:
    """Kill jobs (-> KILLED); running ones are stopped by their launcher."""
    _change(ctx, job_ids, "kill")


@job_group.command("rm")
@click.argument("job_ids", nargs=-1)
@click.option("--state", "states", multiple=True, type=STATE, help="Remove every job in this state.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Remove every job with this tag (asks first).")
@click.option("--all", "everything", is_flag=True, help="Remove every job of the site (asks first).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal).")
@click.pass_context
def job_rm(ctx: click.Context, job_ids: tuple[str, ...], states: tuple[str, ...], tags: tuple[str, ...],
           everything: bool, yes: bool) -> None:  # fmt: skip
    """Remove jobs and their history; says which could not be removed and why."""
    chosen = [name for name, given in (("job IDs", job_ids), ("--all", everything), ("--state/--tag", states or tags))
              if given]  # fmt: skip
    if len(chosen) != 1:
        raise click.UsageError("give job IDs, --state STATE / --tag KEY=VALUE, or --all (one of them)")
    conn = connection(ctx)
    if job_ids:
        jobs = list({j.id: j for j in (conn.jobs.get(i) for i in job_ids)}.values())
    else:
        criteria: dict[str, Any] = {}
        if states:
            criteria["state"] = _state_filters(states)
        if tags:
            criteria["tags"] = parse_pairs(tags, "--tag")
        jobs = conn.jobs.filter(**criteria)
    if (everything or tags) and jobs:
        _confirm_removal(len(jobs), "every job" if everything else f"jobs tagged {_tags(criteria['tags'])}", yes)
    outcome = conn.jobs.delete(jobs)
    if is_central(ctx):
        requested(jobs, outcome, "removal", "job ls")
        return
    click.echo(f"removed {len(outcome.removed)} job(s)")
    for job_id, why in outcome.refused.items():
        click.echo(f"not removed {job_id}: {why}", err=True)
    if outcome.refused:
        sys.exit(ExitCode.ERROR)


def _confirm_removal(count: int, what: str, yes: bool) -> None:
    """Ask before a removal that a selection made (it may be many more jobs than meant)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"this removes {count} job(s) ({what}) and nobody can be asked (stdin is not a terminal); "
            "add --yes to remove them"
        )
    if not click.confirm(f"Remove {count} job(s) ({what}) and their history?", default=False):
        raise click.ClickException("nothing was removed")


# subcommands that live in modules of their own
job_group.add_command(job_wait)
job_group.add_command(job_modify)
job_group.add_command(job_dep)
