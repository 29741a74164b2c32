"""The ``balsamd`` command: a thin layer that parses, calls the library, and renders."""

from __future__ import annotations

import os
import sys

import apsw
import click

from balsamd.api import Site
from balsamd.apps import AppError
from balsamd.cli.common import ExitCode, ensure_site
from balsamd.config import SettingsError
from balsamd.site import SiteError
from balsamd.states import IllegalTransition
from balsamd.store.schema import StoreTooNew
from balsamd.store.store import StoreError
from balsamd.validate import JobSpecError
from balsamd.version import __version__

# errors whose message is written for the user: shown as is, exit code 1
USER_ERRORS = (
    AppError, IllegalTransition, JobSpecError, SettingsError, SiteError, StoreError, StoreTooNew,
)  # fmt: skip


class BalsamdGroup(click.Group):
    """Maps domain errors to one-line messages in one place."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        except apsw.BusyError:
            raise click.ClickException(
                "the site store stayed locked for too long; is a process stuck holding it?"
            ) from None
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # the reader (e.g. `| head`) went away: not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.OK)
        except Exception as exc:
            if os.environ.get("BALSAMD_DEBUG"):
                raise
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc}\n(run again with BALSAMD_DEBUG=1 to see the traceback)",
                err=True,
            )
            sys.exit(ExitCode.CRASH)


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


@click.group(cls=BalsamdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--site", "site_path", metavar="PATH", envvar=None,
    help="Site directory (default: $BALSAMD_SITE, else the current directory or a parent).",
)  # fmt: skip
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show version, build, Python and SQLite versions.",
)
@click.pass_context
def cli(ctx: click.Context, site_path: str | None) -> None:
    """balsamd runs campaigns of many application runs on HPC clusters."""
    ctx.obj = {"site_path": site_path}
    ctx.call_on_close(lambda: _close_site(ctx))


def _close_site(ctx: click.Context) -> None:
    site = ctx.obj.get("site") if ctx.obj else None
    if isinstance(site, Site):
        site.close()


def main() -> None:
    cli(prog_name="balsamd")


from balsamd.cli import apps as _apps  # noqa: E402
from balsamd.cli import daemon as _daemon  # noqa: E402
from balsamd.cli import demo as _demo  # noqa: E402
from balsamd.cli import jobs as _jobs  # noqa: E402
from balsamd.cli import launcher as _launcher  # noqa: E402
from balsamd.cli import queue as _queue  # noqa: E402
from balsamd.cli import site as _site  # noqa: E402
from balsamd.cli import sync as _sync  # noqa: E402

for _module in (_site, _apps, _jobs, _launcher, _queue, _daemon, _sync, _demo):
    _module.register(cli)

__all__ = ["cli", "ensure_site", "main"]
