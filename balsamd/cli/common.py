"""Pieces every command group shares: the site, output options, key=value parsing."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from typing import Any

import click

from balsamd.dsn import dsn_problem
from balsamd.site import SiteLayout, find_site
from balsamd.states import JobState
from balsamd.timespec import TimeSpecError, parse_duration, parse_time


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    UNHEALTHY = 3
    JOBS_FAILED = 4
    CRASH = 70
    DISK_FULL = 74  # sysexits' EX_IOERR
    TIMED_OUT = 124  # as timeout(1)


# what each exit code means, as `balsamd --help` shows it
EXIT_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.ERROR: "refused or failed; the message says why and what to do",
    ExitCode.USAGE: "the command line is wrong",
    ExitCode.UNHEALTHY: "`status`: a service of the daemon is failing",
    ExitCode.JOBS_FAILED: "`job wait`: every job ended, and some failed or were killed",
    ExitCode.CRASH: "an unexpected error (BALSAMD_DEBUG=1 shows its traceback)",
    ExitCode.DISK_FULL: "a disk is full (or a quota used up); nothing was written: free space and run it again",
    ExitCode.TIMED_OUT: "`job wait`: the --timeout passed before every job ended",
}


def ensure_site(ctx: click.Context) -> Any:
    """The site named by --site / $BALSAMD_SITE / the current directory, opened once."""
    from balsamd.api import Site  # the API pulls in RPC and PostgreSQL clients: only when needed

    root = ctx.find_root()
    if root.obj.get("site") is None:
        root.obj["site"] = Site(find_site(root.obj.get("site_path")))
        root.obj["label"] = f"site {root.obj['site'].path}"  # how errors name where they happened
    return root.obj["site"]


def site_layout(ctx: click.Context) -> SiteLayout:
    """Where the site is, without opening its store (daemon control must not)."""
    return find_site(ctx.find_root().obj.get("site_path"))


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(f)


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, str]:
    """KEY=VALUE strings into a dict; a malformed one is a usage error naming the option."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        if key.strip() in out:
            raise click.BadParameter(f"{key.strip()} is given twice; give each key once", param_hint=option)
        out[key.strip()] = value
    return out


class Finite(click.FloatRange):
    """A number in a range that is a number: click's FloatRange lets nan and inf through."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; give a number such as 30", param, ctx)
        return number


class Dsn(click.ParamType):
    """A PostgreSQL DSN, checked before anything is written or connected to (it is not echoed:
    it may hold a password)."""

    name = "DSN"

    def __init__(self, empty: bool = False) -> None:
        self.empty = empty  # whether "" (no central database) is a value

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "" and self.empty:
            return value
        problem = dsn_problem(value)
        if problem:
            self.fail(f"not a PostgreSQL DSN: {problem}", param, ctx)
        return value


class Duration(click.ParamType):
    """A length of time: seconds, or a number with a unit (``30m``, ``2h``; ``balsamd.timespec``)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(value)
        except TimeSpecError as exc:
            self.fail(str(exc), param, ctx)


class Moment(click.ParamType):
    """A point in time: ISO, or a time ago (``2h``: two hours before now; ``balsamd.timespec``)."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_time(value, time.time())
        except TimeSpecError as exc:
            self.fail(str(exc), param, ctx)


class _StateChoice(click.Choice):
    """A job state in any case; errors list the states as they are shown everywhere else."""

    name = "state"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.upper() in self.choices:
            return value.upper()
        self.fail(f"{value!r} is not a job state; use one of {', '.join(self.choices)}", param, ctx)


STATE = _StateChoice([s.value for s in JobState])


LIMIT = click.IntRange(min=0)
DURATION = Duration()
MOMENT = Moment()
