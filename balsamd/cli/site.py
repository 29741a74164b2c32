"""``balsamd site ...``: make and inspect site directories."""

from __future__ import annotations

import re
from pathlib import Path

import click
import msgspec

from balsamd.cli.common import Dsn, ensure_site, json_option, site_layout
from balsamd.render import print_json
from balsamd.sched import BACKENDS, detect_scheduler
from balsamd.site import init_site
from balsamd.transfers.globus_auth import REGISTER_URL, NativeLogin, login_collections


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


@site_group.command("globus-login")
@click.option(
    "--without-data-access", "without", metavar="COLLECTION", multiple=True,
    help="A collection's UUID to ask no data_access consent for: one that is not a GCS v5 mapped collection "
    "(a guest collection, Globus Connect Personal), where Globus refuses the scope as unknown.",
)  # fmt: skip
@click.pass_context
def site_globus_login(ctx: click.Context, without: tuple[str, ...]) -> None:
    """Log this site in to Globus for its transfers: open the URL shown, log in, consent, and paste
    back the code Globus shows.  The tokens are saved in the site directory, readable by you alone."""
    layout = site_layout(ctx)
    settings = layout.load_settings()
    client_id = settings.transfers.globus.client_id
    if not client_id:
        raise click.ClickException(
            f"[transfers.globus] client_id is empty in {layout.settings}: register a native app at {REGISTER_URL} "
            '("Register a thick client or script that will be installed and run by users on their devices"), '
            "give its client id there, and run this again"
        )
    skip = {c.lower() for c in without}
    collections = [c for c in login_collections(settings.transfers) if c not in skip]
    login = NativeLogin(client_id, collections, grant_name=f"balsamd site {layout.name(settings)}")
    if not settings.transfers.globus.endpoint:
        click.echo("note: [transfers.globus] endpoint is empty: give this site's collection there, then log in again")
    click.echo(
        "Open this URL, log in to Globus and consent (data_access for: " + (", ".join(collections) or "none") + "):"
    )
    click.echo(f"\n  {login.url}\n")
    code = click.prompt("Then paste the code Globus shows here", prompt_suffix=": ")
    path = login.finish(code, layout.root)
    click.echo(f"Saved the site's Globus login to {path} (readable by you alone)")


def redact_dsn(dsn: str) -> str:
    """A database address without its password, safe to print or paste."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1***", dsn)
