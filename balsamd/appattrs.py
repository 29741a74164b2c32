"""The attributes of an app class besides its command or ``run``, as Balsam's app files set them.

Each is checked here, when the app is described, so that a wrong value is one app's error
naming the attribute and what to give, never a failure of every app at encoding time.
What balsamd records but does not act on yet becomes a warning naming the attribute.
"""

from __future__ import annotations

from typing import Any

import msgspec

from balsamd.cleanup import glob_problems
from balsamd.explain import a_kind
from balsamd.models import App, AppKind, TransferSlot
from balsamd.validate import explained


class AppError(Exception):
    """An app definition that cannot be used; the message names the file or app."""


def app_environment(cls: type, name: str) -> dict[str, str]:
    """``environment``, or Balsam's ``environment_variables``: variables every run gets."""
    ours, balsams = getattr(cls, "environment", {}), getattr(cls, "environment_variables", {})
    if ours and balsams:
        raise AppError(f"app {name}: set environment or environment_variables, not both (they are the same thing)")
    attr, env = ("environment", ours) if ours else ("environment_variables", balsams)
    if not isinstance(env, dict):
        raise AppError(f"app {name}: {attr} must be a dict of variable names to strings, not {a_kind(env)}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise AppError(
                f"app {name}: {attr}[{key!r}] must map a name to a string, not {a_kind(value)}; "
                f"write e.g. {{{str(key)!r}: {str(value)!r}}}"
            )
    return dict(env)


def app_cleanup_files(cls: type, name: str) -> list[str]:
    """Globs of files the daemon removes from a finished job's workdir: never one that could
    name a file outside it."""
    globs = getattr(cls, "cleanup_files", [])
    if isinstance(globs, str):
        raise AppError(f"app {name}: cleanup_files must be a list of globs, e.g. [{globs!r}]")
    if not isinstance(globs, list | tuple) or not all(isinstance(g, str) for g in globs):
        raise AppError(f"app {name}: cleanup_files must be a list of glob patterns (strings), e.g. ['*.tmp']")
    for pattern in globs:
        problems = glob_problems(pattern)
        if problems:
            raise AppError(f"app {name}: {problems[0]}")
    return list(globs)


def app_transfers(cls: type, name: str) -> dict[str, TransferSlot]:
    slots = getattr(cls, "transfers", {})
    if not isinstance(slots, dict):
        raise AppError(f"app {name}: transfers must be a dict of slot names to dicts, not {a_kind(slots)}")
    found = {}
    for slot, spec in slots.items():
        if not isinstance(slot, str) or not slot.isidentifier():
            raise AppError(f"app {name}: transfers slot {slot!r} must be a name (letters, digits and _)")
        try:
            found[slot] = msgspec.convert(spec, TransferSlot)
        except msgspec.ValidationError as exc:
            raise AppError(
                f"app {name}: transfers[{slot!r}]: {explained(str(exc))}; a slot is e.g. "
                "{'direction': 'in', 'local_path': 'input.dat', 'required': True, 'description': '...'}"
            ) from None
    return found


def app_preamble(cls: type, name: str) -> tuple[str, bool]:
    """(text, per_job): ``shell_preamble`` as text, or a method to call for each run."""
    value = getattr(cls, "shell_preamble", "")
    if callable(value):
        return "", True
    return preamble_text(value, f"app {name}: shell_preamble"), False


def preamble_text(value: Any, what: str) -> str:
    """A preamble as Balsam allows it (text, a list of lines, or None from a method that
    returns nothing) as the text the shell runs."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    raise AppError(f"{what} is {a_kind(value)}; give the shell text as a string (or a list of lines)")


def carry_over_warnings(app: App, declared_site: Any, site: str) -> list[str]:
    """What balsamd records of the app but does not act on (yet), each saying what to do."""
    warnings = []
    if app.kind == AppKind.PYTHON and (app.shell_preamble or app.preamble_per_job):
        warnings.append(
            "shell_preamble runs only before multi-rank runs of a Python app: single-rank runs start in "
            "warm workers, without a shell; set environment_variables for what they need"
        )
    if declared_site and site and declared_site != site:
        warnings.append(
            f"site = {declared_site!r} is ignored: an app belongs to the site whose apps/ holds its file "
            f"({site}); move the file to that site's apps/ to publish it there"
        )
    return warnings
