"""``balsamd start | stop | status``: the site's daemon."""

from __future__ import annotations

import sys
import time

import click

from balsamd.cli.common import ExitCode, json_option, site_layout
from balsamd.daemon import control
from balsamd.daemon.main import AlreadyRunning
from balsamd.render import print_json, table, timestamp
from balsamd.rpc.client import RpcRefused


@click.command("start")
@click.option("--foreground", is_flag=True, help="Run in this terminal instead of in the background.")
@click.pass_context
def start_cmd(ctx: click.Context, foreground: bool) -> None:
    """Start the site's daemon (on this host, normally a login node)."""
    layout = site_layout(ctx)
    try:
        if foreground:
            control.run_foreground(layout)
            return
        record = control.start(layout)
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from None
    except RuntimeError as exc:
        raise click.ClickException(f"the daemon did not start: {exc}") from None
    click.echo(f"daemon started: pid {record.pid}, serving on {record.host}:{record.port}")
    click.echo(f"log: {layout.log / 'daemon.log'}")


@click.command("stop")
@click.pass_context
def stop_cmd(ctx: click.Context) -> None:
    """Stop the site's daemon; its services finish their current step first."""
    try:
        click.echo(control.stop(site_layout(ctx)))
    except (control.NotRunning, RpcRefused, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("status")
@json_option
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Health of the daemon and its services, jobs by state, open sessions.

    Exit code 0: healthy; 3: a service is unhealthy; 1: the daemon is not running.
    """
    try:
        st = control.status(site_layout(ctx))
    except control.NotRunning as exc:
        if as_json:
            print_json({"running": False, "error": str(exc)})
        click.echo(f"Error: {exc}", err=True)
        sys.exit(ExitCode.ERROR)
    except RpcRefused as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        print_json({"running": True, **_builtins(st)})
    else:
        now = time.time()
        health = "healthy" if st.healthy else "UNHEALTHY"
        up = now - st.started_at
        click.echo(f"daemon of site {st.site}: pid {st.pid} on {st.host}:{st.port}, up {up:.0f} s, {health}")
        rows = [
            (s.name, "ok" if s.healthy else "FAILING",
             "-" if s.last_tick is None else f"{now - s.last_tick:.1f} s ago", s.restarts,
             (s.last_error.splitlines() or ["-"])[0])
            for s in st.services
        ]  # fmt: skip
        click.echo(table(rows, ("SERVICE", "HEALTH", "LAST TICK", "RESTARTS", "LAST ERROR")))
        counts = ", ".join(f"{k}={v}" for k, v in st.job_counts.items()) or "none"
        click.echo(f"jobs: {counts}")
        click.echo(f"open sessions: {len(st.sessions)}")
        for s in st.sessions:
            click.echo(f"  {s.id} {s.label} on {s.host} (pid {s.pid}), last heartbeat {timestamp(s.heartbeat_at)}")
    if not st.healthy:
        sys.exit(ExitCode.UNHEALTHY)


def _builtins(value):
    import msgspec

    return msgspec.to_builtins(value)
