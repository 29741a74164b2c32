"""``balsamd qsub``: a command line as a job of the built-in ``qsub`` app, for the elastic queue.

Balsam's ``balsam qsub`` took a batch system's ``qsub`` options and made a job of the command,
which its elastic queue then packed with others into ensembles.  Here too: the site submits its own
batch jobs, sized to the backlog, so one batch job runs many qsub'd commands; the options that
name where batch jobs go (queue, project) are the elastic queue's and must agree with it.

The command runs as its argv exactly: the app's template is one placeholder, which a list fills
with one shell-quoted word per item (``apps.render_command``), so no argument is ever read as
shell code.
"""

from __future__ import annotations

from pathlib import Path

from balsamd.apps import command_app_source
from balsamd.config import Settings
from balsamd.models import App
from balsamd.modes import replace_file

APP = "qsub"
TEMPLATE = "{{ argv }}"
DESCRIPTION = "Runs a command line given to `balsamd qsub`, argument by argument."
SOURCE = command_app_source(APP, TEMPLATE, DESCRIPTION)
WORKDIRS = "qsub"  # qsub'd jobs work in SITE/data/qsub/ID


def app_problem(existing: App | None) -> str | None:
    """Why the site's app of that name is not the built-in one (None when it is, or is absent)."""
    if existing is None or (existing.command_template == TEMPLATE and not existing.error):
        return None
    return (
        f"the site's app {APP} (apps/{existing.source}) is not balsamd's qsub app; "
        f"rename that app, so that `balsamd qsub` can install its own as apps/{APP}.py"
    )


def install_app(apps_dir: Path, mode: int) -> None:
    """Write the built-in app into the site's apps/ (code a site runs comes from there)."""
    replace_file(apps_dir / f"{APP}.py", SOURCE, mode)


def queue_problems(settings: Settings, queue: str | None, project: str | None) -> list[str]:
    """Why -q / -A disagree with where the elastic queue submits (it, not qsub, submits)."""
    e, s = settings.elastic, settings.scheduler
    problems = []
    for option, field, given in (("-q", "queue", queue), ("-A", "project", project)):
        used = getattr(e, field) or getattr(s, f"default_{field}")
        if given is None or given == used:
            continue
        where = f"{field} {used!r}" if used else f"no {field} (the scheduler's default)"
        problems.append(
            f"{option} {given!r}: this site's elastic queue submits its batch jobs with {where}; leave "
            f"{option} out, or set [elastic] {field} = {given!r} in settings.toml and restart the daemon"
        )
    return problems


def fit_problems(settings: Settings, num_nodes: int, ranks_per_node: int, wall_time_min: float) -> list[str]:
    """Why no batch job of the elastic queue could run the job (it would wait forever)."""
    e = settings.elastic
    problems = []
    if e.job_mode == "serial" and (num_nodes > 1 or ranks_per_node > 1):
        problems.append(
            f"-n {num_nodes} --ranks-per-node {ranks_per_node}: the elastic queue's batch jobs run in serial mode "
            '([elastic] job_mode = "serial"), which runs one-node, one-rank jobs only; ask for -n 1 '
            '--ranks-per-node 1, or set job_mode = "mpi"'
        )
    if num_nodes > e.max_nodes:
        problems.append(
            f"-n {num_nodes}: the elastic queue's batch jobs have at most {e.max_nodes} node(s) "
            "([elastic] max_nodes); ask for fewer nodes or raise max_nodes"
        )
    usable = e.max_wall_time_min - e.wall_time_pad_min
    if wall_time_min > usable:
        problems.append(
            f"-t {wall_time_min:g}: the elastic queue's batch jobs leave {usable} minutes to run "
            "([elastic] max_wall_time_min minus wall_time_pad_min); ask for less time or raise max_wall_time_min"
        )
    return problems


def tags_problems(settings: Settings, tags: dict[str, str]) -> list[str]:
    """Tags that would keep the elastic queue's batch jobs from running the job."""
    wanted = settings.elastic.filter_tags
    return [
        f"--tag {key}={tags[key]}: the elastic queue runs only jobs tagged {key}={value} ([elastic] filter_tags); "
        "leave that tag out (qsub adds the elastic queue's tags itself)"
        for key, value in sorted(wanted.items())
        if key in tags and tags[key] != value
    ]
