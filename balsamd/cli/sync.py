"""``balsamd sync`` and ``balsamd central ...``: the central PostgreSQL database."""

from __future__ import annotations

import contextlib
import time

import click
import psycopg

from balsamd.cli.common import Dsn, ensure_site
from balsamd.cli.progress import Bar, progress
from balsamd.store.store import SiteStore
from balsamd.sync import schema
from balsamd.sync.engine import RoundReport, SyncEngine
from balsamd.sync.schema import CentralError


class RoundBars:
    """A bar for each part of a round that moves more than one batch (applying the central
    database's requests, then pushing the store's changes), on a terminal only."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.shown: tuple[str, contextlib.ExitStack, Bar] | None = None

    def __call__(self, r: RoundReport) -> None:
        for part, done, total, info in (
            ("pushing", r.pushed_changes, r.to_push, f"{r.pushed_jobs} jobs, {r.pushed_events} events"),
            ("applying", r.applied + r.rejected, r.to_apply, f"{r.rejected} rejected"),
        ):
            if total > self.batch and done:
                self._bar(part, total).show(done, info, total)
                return

    def _bar(self, part: str, total: int) -> Bar:
        if self.shown is None or self.shown[0] != part:
            self.close()
            stack = contextlib.ExitStack()
            self.shown = (part, stack, stack.enter_context(progress(total, part)))
        return self.shown[2]

    def close(self) -> None:
        if self.shown is not None:
            self.shown[1].close()
            self.shown = None


def _summary(r: RoundReport) -> str:
    text = (
        f"sync: pushed {r.pushed_jobs} jobs, {r.pushed_events} events, {r.pushed_batch_jobs} batch jobs, "
        f"{r.pushed_apps} apps, {r.pushed_transfers} transfer items, {r.deleted_jobs} removals; "
        f"applied {r.applied} intents"
        f" ({r.rejected} rejected) in {r.seconds:.2f} s; {r.lag} changes left"
    )
    if r.reapplied:
        text += f"\n  applied again {r.reapplied} acknowledged intents the store had lost"
    text += "".join(f"\n  job {job_id} not pushed: {why}" for job_id, why in r.refused.items())
    return text + (f"\n  full reconcile: {r.reconciled}" if r.reconciled else "")


@click.command("sync")
@click.option("--once", is_flag=True, help="One round, then exit (default: a round every [sync] period_sec).")
@click.pass_context
def sync_cmd(ctx: click.Context, once: bool) -> None:
    """Sync this site with the central database ([sync] central in settings.toml)."""
    site = ensure_site(ctx)
    dsn = site.settings.sync.central
    if not dsn:
        raise click.ClickException(
            "this site has no central database: set [sync] central in settings.toml "
            "(or create the site with `balsamd site init PATH --central DSN`)"
        )
    if not isinstance(site.store, SiteStore):
        raise click.ClickException("sync reads the site store directly: run it on the daemon's host")
    engine = SyncEngine(site.store, dsn, site.name, site.settings)
    engine.progress = bars = RoundBars(engine.batch)  # a bar only for a round of several batches
    while True:
        try:
            report = engine.round()
        except (CentralError, psycopg.Error) as exc:
            bars.close()
            if once:
                raise click.ClickException(f"sync failed: {str(exc).strip()}") from None
            click.echo(f"sync failed (will retry): {str(exc).strip()}", err=True)
        else:
            bars.close()
            click.echo(_summary(report))
        if once:
            return
        time.sleep(site.settings.sync.period_sec)


@click.group("central")
def central_group() -> None:
    """Set up the central PostgreSQL database (run by its administrator)."""


def _admin(dsn: str) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise click.ClickException(f"cannot reach the central database: {str(exc).strip()}") from None


@central_group.command("init")
@click.argument("dsn", type=Dsn())
def central_init(dsn: str) -> None:
    """Create or upgrade the balsamd schema and its access rules in the database at DSN."""
    with _admin(dsn) as conn:
        try:
            before, after = schema.migrate(conn)
        except (CentralError, psycopg.Error) as exc:
            raise click.ClickException(f"central init failed: {str(exc).strip()}") from None
    if before == after:
        click.echo(f"central schema is up to date (version {after}); access rules re-applied")
    else:
        click.echo(f"central schema created or upgraded: version {before} -> {after}")


@central_group.command("add-site")
@click.argument("dsn", type=Dsn())
@click.argument("name")
@click.option("--role", help="PostgreSQL role the site connects as (created if missing); it sees only this site.")
@click.option("--password", envvar="BALSAMD_ROLE_PASSWORD", help="Password for the role ($BALSAMD_ROLE_PASSWORD).")
def central_add_site(dsn: str, name: str, role: str | None, password: str | None) -> None:
    """Register site NAME in the central database."""
    with _admin(dsn) as conn:
        try:
            schema.add_site(conn, name, role, password)
        except psycopg.Error as exc:
            raise click.ClickException(f"add-site failed: {str(exc).strip()}") from None
    click.echo(f"site {name} registered" + (f"; it connects as role {role}" if role else ""))


@central_group.command("add-user")
@click.argument("dsn", type=Dsn())
@click.argument("role")
@click.option("--password", envvar="BALSAMD_ROLE_PASSWORD", help="Password for the role ($BALSAMD_ROLE_PASSWORD).")
def central_add_user(dsn: str, role: str, password: str | None) -> None:
    """Let ROLE create and follow its own jobs on every site."""
    with _admin(dsn) as conn:
        try:
            schema.add_user(conn, role, password)
        except psycopg.Error as exc:
            raise click.ClickException(f"add-user failed: {str(exc).strip()}") from None
    click.echo(f"user role {role} may now submit jobs through the central database")
