"""What every part of the site store shares: its database, its rules and its apps."""

from __future__ import annotations

import time

import apsw

from balsamd import lifecycle
from balsamd.models import App
from balsamd.store.db import Database, decode_app
from balsamd.store.sql import value
from balsamd.validate import SiteRules


def now_or(now: float | None) -> float:
    return time.time() if now is None else now


class StoreBase:
    """The database, the rules every write is checked against, and the registered apps
    (read again only when they changed: every create and report needs them)."""

    def __init__(self, db: Database, rules: SiteRules) -> None:
        self.db = db
        self.rules = rules
        self._apps_version = -1
        self._apps_cache: dict[str, App] = {}
        self._hooks_cache: dict[str, list[str]] = {}

    def _apps(self, conn: apsw.Connection) -> dict[str, App]:
        version = value(conn, "SELECT value FROM counters WHERE name = 'apps'")
        if version != self._apps_version:
            self._apps_cache = {name: decode_app(spec) for name, spec in conn.execute("SELECT name, spec FROM apps")}
            self._hooks_cache = {
                name: lifecycle.settle_hooks(app.hooks, (slot.direction for slot in app.transfers.values()))
                for name, app in self._apps_cache.items()
            }
            self._apps_version = version
        return self._apps_cache

    def _hooks(self, conn: apsw.Connection) -> dict[str, list[str]]:
        """What each app's moves settle by: the hooks it overrides and its transfer stages."""
        self._apps(conn)
        return self._hooks_cache
