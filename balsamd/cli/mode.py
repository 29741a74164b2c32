"""Which of the two places a command works on: a site's directory (``--site``) or the central
database (``--central DSN``), opened once through the one API, and which site it is about."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from balsamd.cli.common import ensure_site
from balsamd.connection import CENTRAL_ENV, Connection
from balsamd.store.errors import JobNotFound

# top-level commands that mean something through the central database; every other one runs
# at the site, but for `central`, which takes its DSN as an argument and ignores this choice
REMOTE_COMMANDS = frozenset({"job", "queue", "app", "events", "transfer", "report"})
OWN_DSN = frozenset({"central"})
SITE_ENV = "BALSAMD_SITE"


def central_dsn(given: str | None, from_env: bool, site_path: str | None, command: str | None) -> str | None:
    """The DSN the command works on, or None for a site; UsageError when the choice is unclear.

    ``--site`` and ``--central`` together are a mistake; ``$BALSAMD_CENTRAL`` is a default that
    an explicit ``--site`` overrides, and that commands without a remote meaning never take."""
    if not given or command in OWN_DSN:
        return None
    if from_env:
        if site_path is not None or command not in REMOTE_COMMANDS:
            return None
        if os.environ.get(SITE_ENV):
            raise click.UsageError(
                f"both ${SITE_ENV} and ${CENTRAL_ENV} are set; choose one with --site PATH or --central DSN"
            )
    elif site_path is not None:
        raise click.UsageError(
            "--site (a site's directory) and --central (the central database) were both given; give one of them"
        )
    if command is not None and command not in REMOTE_COMMANDS:
        raise click.UsageError(at_the_site(command))
    return given


def at_the_site(command: str, instead: str = "") -> str:
    """Why a command is refused under --central."""
    return (
        f"`balsamd {command}` runs at the site, not through the central database: run it on the site's "
        f"machine with --site PATH{instead}"
    )


def central_label(dsn: str, user: str | None = None) -> str:
    """How errors name the central database: its user, host and database, never a password."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except ProgrammingError:
        return "central"
    who = user or info.get("user")
    host = str(info.get("host") or "local socket")
    if info.get("port"):
        host += f":{info['port']}"
    if info.get("dbname"):
        host += f"/{info['dbname']}"
    return f"central (user {who} at {host})" if who else f"central ({host})"


def is_central(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj.get("central"))


def connection(ctx: click.Context) -> Any:
    """The site or the central database this command works on, opened once."""
    root = ctx.find_root().obj
    dsn = root.get("central")
    if not dsn:
        return ensure_site(ctx)
    if root.get("conn") is None:
        # the class itself rather than balsamd.connect: it takes both forms of a DSN
        from balsamd.sync.remote import CentralConnection

        root["conn"] = CentralConnection(dsn)
        root["label"] = central_label(dsn, root["conn"].user)
    conn: Connection = root["conn"]
    return conn


def pick_site(ctx: click.Context, given: str | None, required: bool) -> str | None:
    """The site a command is about: ``--site-name`` (the command's, else the group's); through
    central, the only site when there is one and ``required``.  A site's own directory checks
    a name given against its own (the API does)."""
    name = given or ctx.find_root().obj.get("site_name")
    if not is_central(ctx):
        return name
    sites = connection(ctx).sites()
    return choose_site(name, sites, required)


def choose_site(name: str | None, sites: list[str], required: bool) -> str | None:
    """``name`` if it is one of ``sites``; else the one site, or None when none is ``required``."""
    known = ", ".join(sites) or "none"
    if name is not None:
        if name not in sites:
            raise click.BadParameter(
                f"no site {name!r:.60} in the central database (known: {known}); give one of them",
                param_hint="--site-name",
            )
        return name
    if not required:
        return None
    if len(sites) == 1:
        return sites[0]
    if not sites:
        raise click.ClickException(
            "no site is registered in the central database yet; its administrator adds one with "
            "`balsamd central add-site DSN NAME`"
        )
    raise click.UsageError(f"you see {len(sites)} sites ({known}); pick one with --site-name NAME")


def requested(items: list[Any], intents: list[str], action: str, follow: str) -> None:
    """What central answers for an action: a request per job or batch job, applied by its site
    when it next syncs."""
    for item, intent in zip(items, intents, strict=True):
        click.echo(f"{item.id} {action} requested of site {item.site} (request {intent})")
    click.echo(f"note: a site applies requests when it next syncs; `balsamd {follow}` shows what it did", err=True)


def not_found_errors() -> tuple[type[Exception], ...]:
    """What each side raises for an id that names nothing it may show."""
    schema = sys.modules.get("balsamd.sync.schema")  # loaded only once central is used
    return (JobNotFound,) + ((schema.CentralError,) if schema is not None else ())


def site_name_option(f: Any) -> Any:
    return click.option(
        "--site-name", metavar="NAME", help="The site this is about (through central; default: the group's)."
    )(f)
