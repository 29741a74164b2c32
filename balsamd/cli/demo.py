"""``balsamd demo``: a complete campaign on a fresh local site, as a first look."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from balsamd.cli.common import ExitCode
from balsamd.demo import format_report, run_demo


@click.command("demo")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to make the demo site (default: a new temporary directory).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="How many no-op command jobs to run.",
)
def demo_cmd(parent: Path | None, jobs: int) -> None:
    """Run a demo campaign: no-op jobs, Python jobs, a DAG and a 2-rank MPI job."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    report = run_demo(parent, jobs)
    click.echo(format_report(report))
    if not report.ok:
        sys.exit(ExitCode.ERROR)
