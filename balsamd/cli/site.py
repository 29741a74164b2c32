"""``balsamd site ...``: make and inspect site directories."""

from __future__ import annotations

import re
from pathlib import Path

import click
import msgspec

from balsamd.cli.common import Dsn, ensure_site, json_option
from balsamd.render import print_json
from balsamd.sched import BACKENDS, detect_scheduler
from balsamd.site import init_site


@click.group("site")
def site_group() -> None:
    """Create and inspect site directories."""


@site_group.command("init")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="The site's name (default: the directory name).")
@click.option(
    "--scheduler",
    type=click.Choice(list(BACKENDS)),
    help="Batch scheduler of this cluster (default: detected from the commands on PATH).",
)
@click.option("--central", type=Dsn(empty=True), help="PostgreSQL DSN of the central database to sync with.")
@click.option(
    "--group-readable",
    is_flag=True,
    help="Let the site directory's group read the site (never write it); by default it is yours alone.",
)
def site_init(path: Path, name: str | None, scheduler: str | None, central: str | None, group_readable: bool) -> None:
    """Create a site directory at PATH: settings.toml, job-template.sh, data/, log/, apps/ and the store."""
    how = "chosen"
    if scheduler is None:
        scheduler = detect_scheduler()
        how = "detected from the commands on PATH" if scheduler != "local" else "no batch scheduler found on PATH"
    layout = init_site(path, name=name, scheduler=scheduler, central=central or "", group_readable=group_readable)
    click.echo(f"Created site {name or layout.root.name} at {layout.root}")
    click.echo(f"  scheduler: {scheduler} ({how}); batch job script template: {layout.root / 'job-template.sh'}")
    click.echo(f"  settings: {layout.settings}  (node shape, scheduler, launcher)")
    click.echo(f"  next: balsamd --site {layout.root} app create NAME --command 'TEMPLATE'")


@site_group.command("info")
@json_option
@click.pass_context
def site_info(ctx: click.Context, as_json: bool) -> None:
    """Show where the site is and its settings."""
    site = ensure_site(ctx)
    settings = msgspec.to_builtins(site.settings)
    settings["sync"]["central"] = redact_dsn(site.settings.sync.central)
    info = {"name": site.name, "path": str(site.path), "settings": settings}
    if as_json:
        print_json(info)
        return
    s = site.settings
    click.echo(f"site {site.name} at {site.path}")
    click.echo(
        f"nodes: {s.nodes.cpus_per_node} CPUs, {s.nodes.gpus_per_node} GPUs, at most {s.nodes.max_nodes} per job"
    )
    click.echo(f"scheduler: {s.scheduler.kind}; MPI launch: {s.launcher.mpi}")
    click.echo(f"central: {redact_dsn(s.sync.central) or '(standalone)'}")


def redact_dsn(dsn: str) -> str:
    """A database address without its password, safe to print or paste."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1***", dsn)
