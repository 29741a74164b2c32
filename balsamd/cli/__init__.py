"""The ``balsamd`` command: a thin layer that parses, calls the library, and renders."""

from __future__ import annotations

import importlib
import os
import sys

import apsw
import click

from balsamd.apps import AppError
from balsamd.cli.common import EXIT_MEANINGS, Dsn, ExitCode, ensure_site
from balsamd.cli.mode import central_dsn, central_label
from balsamd.config import SettingsError
from balsamd.connection import CENTRAL_ENV
from balsamd.diskspace import full_message, is_full, space_of
from balsamd.site import SiteError
from balsamd.states import IllegalTransition
from balsamd.store.errors import DiskFull, StoreError
from balsamd.store.schema import StoreTooNew
from balsamd.transfers.backend import TransferError
from balsamd.validate import Refused
from balsamd.version import __version__

# errors whose message is written for the user: shown as is, exit code 1
USER_ERRORS = (
    AppError, IllegalTransition, Refused, SettingsError, SiteError, StoreError, StoreTooNew, TransferError,
)  # fmt: skip


def user_errors() -> tuple[type[BaseException], ...]:
    """USER_ERRORS, and the central database's once its client is loaded (only when used)."""
    schema = sys.modules.get("balsamd.sync.schema")
    psycopg = sys.modules.get("psycopg")
    return USER_ERRORS + ((schema.CentralError,) if schema else ()) + ((psycopg.Error,) if psycopg else ())


def where(ctx: click.Context, message: str) -> str:
    """A message naming the site or central database it comes from, once one is in use."""
    label = ctx.obj.get("label") if ctx.obj else None
    return f"{label}: {message}" if label else message


# command name -> where it lives; modules are imported only when their command runs, so
# `balsamd --version` and `--help` start fast (a cluster login node's Python is slow to import)
COMMANDS = {
    "site": "balsamd.cli.site:site_group",
    "app": "balsamd.cli.apps:app_group",
    "job": "balsamd.cli.jobs:job_group",
    "events": "balsamd.cli.events:events_cmd",
    "launcher": "balsamd.cli.launcher:launcher_cmd",
    "queue": "balsamd.cli.queue:queue_group",
    "start": "balsamd.cli.daemon:start_cmd",
    "stop": "balsamd.cli.daemon:stop_cmd",
    "status": "balsamd.cli.daemon:status_cmd",
    "sync": "balsamd.cli.sync:sync_cmd",
    "central": "balsamd.cli.sync:central_group",
    "demo": "balsamd.cli.demo:demo_cmd",
    "transfer": "balsamd.cli.transfers:transfer_group",
    "top": "balsamd.cli.top:top_cmd",
    "completion": "balsamd.cli.completion:completion_cmd",
    "qsub": "balsamd.cli.qsub:qsub_cmd",
    "report": "balsamd.cli.reports:report_group",
}


class BalsamdGroup(click.Group):
    """Loads commands lazily and maps domain errors to one-line messages in one place."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, attr = COMMANDS[name].partition(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DiskFull as exc:  # from the store, here or behind the daemon
            _disk_full(str(exc))
        except user_errors() as exc:
            raise click.ClickException(where(ctx, str(exc))) from None
        except apsw.BusyError:
            raise click.ClickException(
                "the site store stayed locked for too long; is a process stuck holding it?"
            ) from None
        except click.UsageError:
            raise
        except click.ClickException as exc:
            raise click.ClickException(where(ctx, exc.message)) from None
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # the reader (e.g. `| head`) went away: not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.OK)
        except Exception as exc:
            if is_full(exc):  # a file this command writes
                assert isinstance(exc, OSError)
                _disk_full(
                    full_message(exc.filename, space_of(exc.filename))
                    if exc.filename
                    else "no space left on a disk this command writes to: free some space there (or raise the quota)"
                )
            if os.environ.get("BALSAMD_DEBUG"):
                raise
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc}\n(run again with BALSAMD_DEBUG=1 to see the traceback)",
                err=True,
            )
            sys.exit(ExitCode.CRASH)


def _disk_full(message: str) -> None:
    click.echo(f"Error: {message}, then run the command again", err=True)
    sys.exit(ExitCode.DISK_FULL)


def _version_text() -> str:
    from balsamd.version import build_id

    return (
        f"balsamd {__version__} (build {build_id()})\n"
        f"Python {sys.version.split()[0]}, SQLite {apsw.sqlite_lib_version()}, apsw {apsw.apsw_version()}"
    )


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


EXIT_CODES_HELP = "\b\nExit codes:\n" + "\n".join(f"  {int(code):<3} {text}" for code, text in EXIT_MEANINGS.items())


@click.group(cls=BalsamdGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.option(
    "--site", "site_path", metavar="PATH", envvar=None,
    help="Site directory (default: $BALSAMD_SITE, else the current directory or a parent).",
)  # fmt: skip
@click.option(
    "--central",
    metavar="DSN",
    envvar=CENTRAL_ENV,
    type=Dsn(),
    help="Work on the jobs, batch jobs, apps, events and transfer items of the sites you see in the central database "
    f"(default: ${CENTRAL_ENV}); instead of --site.",
)
@click.option(
    "--site-name",
    metavar="NAME",
    help="The site a command is about, through --central (default: the only one you see).",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show version, build, Python and SQLite versions.",
)
@click.pass_context
def cli(ctx: click.Context, site_path: str | None, central: str | None, site_name: str | None) -> None:
    """balsamd runs campaigns of many application runs on HPC clusters."""
    from_env = ctx.get_parameter_source("central") == click.core.ParameterSource.ENVIRONMENT
    dsn = central_dsn(central, from_env, site_path, ctx.invoked_subcommand)
    ctx.obj = {"site_path": site_path, "central": dsn, "site_name": site_name}
    if dsn:
        ctx.obj["label"] = central_label(dsn)
    ctx.call_on_close(lambda: _close(ctx))


def _close(ctx: click.Context) -> None:
    for opened in ("site", "conn"):
        conn = ctx.obj.get(opened) if ctx.obj else None
        if conn is not None:
            conn.close()


def main() -> None:
    cli(prog_name="balsamd")


__all__ = ["cli", "ensure_site", "main"]
