"""The apps service: the site's apps recorded in the store, so sync publishes them to central,
when the daemon starts and whenever ``apps/`` changes.

A round costs a listing of ``apps/`` and a stat of its ``*.py`` files; the files are loaded only
when those changed.  An app file is the site's code and may hang, crash or grow when imported,
so it is loaded in a child process under a time limit (``daemon.apps_load_timeout_sec``), never
in the daemon.  When the
whole directory fails that way, each file is loaded in a process of its own, and the file that
failed is recorded as broken (its classes, named without running it) while the others are
published.

Apps central users declared, and the site accepted (``[apps] accept_from``; the store decides
when it applies their intents), are written to ``apps/declared_NAME.py`` here first, each
atomically and private to the owner, and then published like any other file.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from balsamd.apps import app_files, broken_app, declared_names, file_apps, merge_apps, record_apps
from balsamd.daemon.hooks import PythonWorker, serve_tasks
from balsamd.logs import drop_unwritable_stdio
from balsamd.models import App, DeclaredApp
from balsamd.modes import PRIVATE, replace_file
from balsamd.store.store import SiteStore

log = logging.getLogger("balsamd.apps")

StoreCall = Callable[..., Awaitable[Any]]
Fingerprint = tuple[tuple[str, int, int, int, int], ...] | None


def fingerprint(apps_dir: Path) -> Fingerprint:
    """What changes when an app file is added, removed, replaced or written: each ``*.py``
    file's name, inode, size, modification and change times (None without the directory)."""
    try:
        with os.scandir(apps_dir) as entries:
            found = []
            for entry in entries:
                if entry.name.endswith(".py"):
                    try:
                        st = entry.stat()
                    except FileNotFoundError:  # removed while listed: the next round sees it
                        continue
                    found.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    except FileNotFoundError:
        return None
    return tuple(sorted(found))


class LoadTask(msgspec.Struct, array_like=True):
    files: list[str]
    site: str


def _load_files(task: LoadTask, conn: Any) -> list[list[App]]:
    """(``conn`` is the worker's pipe, for tasks that ask questions: loading asks none.)"""
    return [file_apps(Path(path), task.site) for path in task.files]


def _loader_main(conn: Any) -> None:
    drop_unwritable_stdio()
    serve_tasks(conn, LoadTask, _load_files)


class LoadFailed(Exception):
    pass


def load_in_child(files: list[Path], site: str, time_limit: float) -> list[list[App]]:
    """The apps of each file, loaded in a child process that is stopped after ``time_limit``
    seconds; LoadFailed when it ran longer or died."""
    worker = PythonWorker(multiprocessing.get_context("spawn"), _loader_main)
    try:
        worker.submit(LoadTask([str(f) for f in files], site), "apps")
        if not worker.conn.poll(time_limit):
            raise LoadFailed(f"importing it took longer than {time_limit:g} s (daemon.apps_load_timeout_sec); stopped")
        try:
            loaded = worker.receive(list[list[App]])
        except msgspec.DecodeError as exc:
            raise LoadFailed(f"its loader sent what is not a list of apps: {exc}") from None
        if loaded is None:
            raise LoadFailed("the process loading it died (the file may crash Python when imported)")
        return loaded
    finally:
        worker.stop()


def load_isolated(apps_dir: Path, site: str, time_limit: float) -> dict[str, App]:
    """Every app of ``apps_dir``; a file whose loading hangs or kills its process is broken."""
    files = app_files(apps_dir)
    if not files:
        return {}
    try:
        return merge_apps(load_in_child(files, site, time_limit))
    except LoadFailed:
        pass
    per_file = []
    for path in files:
        try:
            per_file += load_in_child([path], site, time_limit)
        except LoadFailed as exc:
            error = f"{path}: {exc}; fix the file (the site's other apps go on working)"
            per_file.append([broken_app(name, path.name, error) for name in declared_names(path)])
    return merge_apps(per_file)


class Publishing:
    """The service's state: what ``apps/`` looked like when its apps were last recorded."""

    def __init__(self, apps_dir: Path, site: str, store: SiteStore, store_call: StoreCall, time_limit: float):
        self.apps_dir = apps_dir
        self.site = site
        self.store = store
        self.call = store_call
        self.time_limit = time_limit
        self.seen: Fingerprint = None
        self.looked = False
        self.apps: dict[str, App] = {}
        self.on_change: Callable[[], None] = lambda: None

    async def step(self, _now: float) -> None:
        for declared in await self.call(self.store.declared_apps):
            if not declared.written:
                await anyio.to_thread.run_sync(write_declared, self.apps_dir, declared)
                await self.call(self.store.declared_app_written, declared.name, declared.intent_id)
                log.info("app %s declared by central user %s written to apps/%s", declared.name, declared.owner,
                         declared.file)  # fmt: skip
        now_seen = await anyio.to_thread.run_sync(fingerprint, self.apps_dir)
        if self.looked and now_seen == self.seen:
            return
        # the fingerprint is taken before loading: a file written meanwhile is loaded next round
        apps = await anyio.to_thread.run_sync(load_isolated, self.apps_dir, self.site, self.time_limit)
        if await self.call(record_apps, self.store, apps):
            say_published(apps)
            self.on_change()
        self.seen, self.looked, self.apps = now_seen, True, apps

    def detail(self) -> dict[str, object]:
        return {"apps": len(self.apps), "broken": sorted(n for n, a in self.apps.items() if a.error)}


def write_declared(apps_dir: Path, declared: DeclaredApp) -> None:
    """The declared app's file in ``apps_dir``: its module text under a line saying whose it is."""
    header = (
        f"# Declared by central user {declared.owner} (intent {declared.intent_id}) and accepted by [apps] "
        "accept_from;\n# declaring it again replaces this file.\n"
    )
    replace_file(apps_dir / declared.file, header + declared.code, PRIVATE.file)


def say_published(apps: dict[str, App]) -> None:
    usable = sorted(n for n, a in apps.items() if not a.error)
    log.info("apps recorded for publishing: %s", ", ".join(usable) or "none")
    for app in apps.values():
        if app.error:
            log.warning("app %s cannot be used until its file is fixed: %s", app.name, app.error)
        for warning in app.warnings:
            log.warning("%s", warning)
