"""Apps declared where they are used: an ApplicationDefinition subclass written in a script or a
notebook, sent to its site (``MyApp.sync()``, or the first ``MyApp.submit(...)``, or the first
job created of it by name, ``Job.objects.create(app_id="MyApp", ...)``).

What travels is the text of a module: the class's own source and an import for each name it
takes from its module (``np`` becomes ``import numpy as np``).  A value the script itself
defines does not travel (it is the script's, not the app's) and is refused saying so.  The site
installs the module as ``apps/declared_NAME.py`` only if the sender is in its ``[apps]
accept_from`` (``store.intents.install_refusal``), and publishes it like any app file.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
import types
from typing import Any

from balsamd.appcode import code_problems
from balsamd.apps import ApplicationDefinition, app_name, describe, from_app_file
from balsamd.connection import Connection, current
from balsamd.models import SPEC_FIELDS, App, declared_app_file

# submit()'s keywords that are a job's own fields (resources, tags, parents...), not parameters
JOB_FIELDS = frozenset(SPEC_FIELDS) - {"app", "workdir", "parameters"}
SYNC_TIMEOUT = 120.0  # seconds a site has to answer a declaration and publish the app


class DeclareError(ValueError):
    """An app class that cannot be sent as it is; the message says what to change."""


class AppRefused(Exception):
    """The site did not install the app; the message is its reason."""


def module_code(cls: type[ApplicationDefinition]) -> str:
    """The module a site installs for ``cls``: imports, then the class's source."""
    name = app_name(cls)
    if name != cls.__name__:
        raise DeclareError(f"app {cls.__name__} sets name = {name!r}: a declared app is named by its class; "
                           "rename the class instead")  # fmt: skip
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError) as exc:
        raise DeclareError(
            f"the source of app {name} cannot be read ({exc}); define the class in a file, or in a notebook "
            "cell, whose source Python keeps (not in `python -c` or at an interactive prompt)"
        ) from None
    code = "\n".join([*_imports(cls, source), "", "", source])
    problems = code_problems(name, code)
    if problems:
        raise DeclareError(f"app {name}: " + "; ".join(problems))
    return code


def _imports(cls: type, source: str) -> list[str]:
    """An import statement for each name of the class's module that its source uses."""
    module = sys.modules.get(cls.__module__)
    known = vars(module) if module is not None else {}
    used = sorted({node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)})
    lines = []
    for name in used:
        if name not in known or name == cls.__name__:
            continue
        value = known[name]
        if isinstance(value, types.ModuleType):
            real = value.__name__
            lines.append(f"import {real}" if real == name else f"import {real} as {name}")
            continue
        where, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
        if isinstance(where, str) and isinstance(qualname, str) and _importable(where) and "." not in qualname:
            lines.append(f"from {where} import {qualname}" + ("" if qualname == name else f" as {name}"))
            continue
        raise DeclareError(
            f"app {cls.__name__} uses {name}, which its script defines: a declared app carries only its class and "
            f"its imports; define {name} inside the class, or import it from a module"
        )
    return lines


def _importable(module: str) -> bool:
    if module in ("__main__", "builtins") or module.startswith("__"):
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def described(cls: type[ApplicationDefinition]) -> App:
    """The app as its site will record it, checked here first (a mistake is told at once)."""
    app = describe(cls, declared_app_file(app_name(cls)), cls.site)
    clashing = sorted(set(app.parameters) & JOB_FIELDS)
    if clashing:
        raise DeclareError(
            f"app {app.name}: parameter(s) {', '.join(clashing)} have the names of a job's own fields, which "
            "submit() takes as resources; rename them"
        )
    return app


def sync(cls: type[ApplicationDefinition], conn: Connection | None = None, timeout: float = SYNC_TIMEOUT) -> App:
    """Send the app to its site and wait until the site publishes it (or says why not)."""
    conn = current(conn)
    code = module_code(cls)
    app = conn.install(described(cls), cls.site or None, code, timeout)
    conn.declared[app.name] = code
    return app


def sent(cls: type[ApplicationDefinition], conn: Connection) -> str:
    """The app's name, once it is sent to its site: not again while it is as ``conn`` sent it."""
    name = app_name(cls)
    if conn.declared.get(name) != module_code(cls):
        sync(cls, conn)
    return name


def declared_class(name: str, site: str | None) -> type[ApplicationDefinition] | None:
    """The app class named ``name`` this process declares for ``site`` (for any site when None):
    a subclass written in a script or notebook that sets ``site``; the latest defined when a
    cell defined it again.  Python keeps every class's subclasses, so nothing registers."""
    found = None
    pending = list(ApplicationDefinition.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending += cls.__subclasses__()
        if cls.site and app_name(cls) == name and site in (None, cls.site) and not from_app_file(cls):
            found = cls
    return found


def submit(cls: type[ApplicationDefinition], workdir: str, conn: Connection | None, given: dict[str, Any]) -> Any:
    """A job of the app (sent to its site first when it has not been, or has changed since)."""
    conn = current(conn)
    name = sent(cls, conn)
    fields = {k: v for k, v in given.items() if k in JOB_FIELDS}
    parameters = {k: v for k, v in given.items() if k not in JOB_FIELDS}
    return conn.jobs.create(name, workdir, site=cls.site or None, parameters=parameters, **fields)
