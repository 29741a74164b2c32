"""``balsamd app ...``: list and create apps."""

from __future__ import annotations

import click

from balsamd.apps import AppError, command_app_source
from balsamd.cli.common import ensure_site, json_option
from balsamd.cli.mode import at_the_site, connection, is_central, pick_site, site_name_option
from balsamd.models import App
from balsamd.modes import site_modes, write_file
from balsamd.render import print_json, table


@click.group("app")
def app_group() -> None:
    """Create and list the site's apps (Python classes in SITE/apps/; through central, those a site publishes)."""


@app_group.command("create")
@click.argument("name")
@click.option(
    "--command",
    "template",
    required=True,
    help="Command template; {{ name }} placeholders become shell-quoted parameters.",
)
@click.option("--description", default="", help="One line saying what the app does.")
@click.pass_context
def app_create(ctx: click.Context, name: str, template: str, description: str) -> None:
    """Make a command app NAME without writing Python (writes SITE/apps/NAME.py)."""
    if is_central(ctx):
        raise click.UsageError(at_the_site("app create", "; from elsewhere, declare the app in Python: MyApp.sync()"))
    site = ensure_site(ctx)
    source = command_app_source(name, template, description)
    existing = site.apps.sync()
    if name in existing:
        raise AppError(f"app {name} already exists (in apps/{existing[name].source}); pick another name")
    target = site.layout.apps / f"{name}.py"
    if target.exists():
        raise AppError(f"{target} already exists; pick another app name")
    tmp = target.with_suffix(".py.tmp")
    try:
        write_file(tmp, source, site_modes(site.settings.site.group_readable).file)
        tmp.rename(target)
    except BaseException:  # e.g. a full disk: no half-written app is left behind
        tmp.unlink(missing_ok=True)
        raise
    try:
        app = site.apps.sync()[name]
        if app.error:
            raise AppError(app.error)
    except Exception:
        target.unlink()
        site.apps.sync()
        raise
    params = ", ".join(app.parameters) or "none"
    click.echo(f"Created app {name} in {target} (parameters: {params})")


@app_group.command("ls")
@site_name_option
@json_option
@click.pass_context
def app_ls(ctx: click.Context, site_name: str | None, as_json: bool) -> None:
    """List the site's apps (through central: those one site publishes)."""
    site = pick_site(ctx, site_name, required=True)
    apps = connection(ctx).apps.list(site)
    if as_json:
        print_json(apps)
        return
    if not apps and is_central(ctx):
        click.echo(f"site {site} publishes no apps yet; its daemon publishes them when it starts")
        return
    if not apps:
        click.echo("no apps yet; create one with `balsamd app create NAME --command TEMPLATE`")
        return
    rows = []
    for a in apps:
        if a.error:
            rows.append((a.name, "-", "-", "cannot be used (below)"))
            continue
        params = ", ".join(n if p.required else f"{n}={p.default!r}" for n, p in a.parameters.items())
        rows.append((a.name, a.kind, params, a.command_template or f"{a.class_name}.run()"))
    click.echo(table(rows, ("NAME", "KIND", "PARAMETERS", "RUNS")))
    slots = _slots(apps)
    if slots:
        click.echo("")
        click.echo(table(slots, ("APP", "SLOT", "DIR", "LOCAL PATH", "REQUIRED", "RECURSIVE", "DESCRIPTION")))
    # the other apps work: what is wrong with these is said, and the listing still succeeds
    for a in apps:
        if a.error:
            click.echo(f"app {a.name} cannot be used until its file is fixed: {a.error}", err=True)
        for warning in a.warnings:
            click.echo(f"warning: {warning}", err=True)


def _slots(apps: list[App]) -> list[tuple[str, ...]]:
    """A row per transfer slot of each app: what a job of it brings in or sends out (it fills the
    slot with --transfer SLOT=LOCATION:PATH)."""
    yes_no = {True: "yes", False: "no"}
    return [
        (a.name, name, slot.direction, slot.local_path or "(item's name)", yes_no[slot.required],
         yes_no[slot.recursive], slot.description or "-")
        for a in apps if not a.error
        for name, slot in a.transfers.items()
    ]  # fmt: skip
