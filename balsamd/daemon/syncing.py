"""Sync as a daemon service: a round every period, or within moments of a NOTIFY.

A listener thread holds its own connection LISTENing on ``balsamd_intents``; an intent for
this site fires the service's trigger, so a job created remotely is claimable on the site
within about a second while the daemon runs.  With the central database away, rounds fail
(shown in status) and the site keeps working from its own store.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import psycopg

from balsamd.config import Settings
from balsamd.daemon.services import Trigger
from balsamd.store.store import SiteStore
from balsamd.sync.engine import RoundReport, SyncEngine, keepalive_options

log = logging.getLogger("balsamd.sync")
CHANNEL = "balsamd_intents"


class SyncService:
    def __init__(self, site_root: Path, name: str, settings: Settings, store: SiteStore) -> None:
        self.name = name
        self.dsn = settings.sync.central
        self.engine = SyncEngine(store, self.dsn, name, settings)
        self.trigger = Trigger()
        self.last: RoundReport | None = None
        self.last_ok: float | None = None
        self.listening = False
        # rounds begun on a NOTIFY for this site (not the period, not a reconnect): shown in status
        # so that watchers can tell a round the notification woke
        self.rounds_on_notify = 0
        self._notified = False
        # set to end the listener's backoff early: the daemon stops, or a round just reached
        # the database the listener could not
        self._wake = threading.Event()

    async def step(self, _now: float) -> None:
        if self._notified:
            self._notified = False
            self.rounds_on_notify += 1
        # the engine uses the store from its own thread: the store's lock keeps each call whole,
        # and RPC calls are not held up behind PostgreSQL round trips
        self.last = await anyio.to_thread.run_sync(self.engine.round)
        self.last_ok = time.time()
        if not self.listening:
            self._wake.set()
        if self.last.reconciled:
            log.warning("sync: full reconcile: %s", self.last.reconciled)

    def detail(self) -> dict[str, Any]:
        r = self.last
        return {
            "central": _redacted(self.dsn),
            "last_ok": self.last_ok,
            "lag_changes": None if r is None else r.lag,
            "last_round": None if r is None else {
                "pushed_jobs": r.pushed_jobs, "pushed_events": r.pushed_events, "applied": r.applied,
                "rejected": r.rejected, "reapplied": r.reapplied, "reconciled": r.reconciled,
                "seconds": round(r.seconds, 3),
                "refused": r.refused,
            },
            "listening": self.listening,
            "rounds_on_notify": self.rounds_on_notify,
        }  # fmt: skip

    async def listen(self, stop: anyio.Event) -> None:
        halt = threading.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._stop_on, stop, halt)
            await anyio.to_thread.run_sync(self._listen, halt, abandon_on_cancel=True)
            tg.cancel_scope.cancel()

    def _on_notify(self) -> None:
        self._notified = True
        self.trigger.fire()

    async def _stop_on(self, stop: anyio.Event, halt: threading.Event) -> None:
        await stop.wait()
        halt.set()
        self._wake.set()

    def _listen(self, halt: threading.Event) -> None:
        """LISTEN for intents of this site; reconnect with backoff when the database goes away."""
        delay = 1.0
        while not halt.is_set():
            try:
                with psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=10,
                    application_name=f"balsamd site {self.name} listener", **keepalive_options(self.dsn),
                ) as conn:  # fmt: skip
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening, delay = True, 1.0
                    # intents may have arrived while nobody listened (the database was away):
                    # a round now picks them up instead of waiting out the period or a backoff
                    anyio.from_thread.run_sync(self.trigger.fire)
                    while not halt.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.payload == self.name:
                                anyio.from_thread.run_sync(self._on_notify)
            except psycopg.Error as exc:
                log.info("sync listener: %s; reconnecting in %.0f s", str(exc).strip(), delay)
            self.listening = False
            self._wake.wait(delay)
            self._wake.clear()
            delay = min(delay * 2, 60.0)


def _redacted(dsn: str) -> str:
    """The DSN without a password, for status output."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable DSN)"
    info.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **info)
