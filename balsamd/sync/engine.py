"""One sync round between a site store and the central database.

push: rows the site changed since its cursor (jobs, events, batch jobs, apps, deletions) go to
central in batches, each batch one PostgreSQL transaction that also records how far central
got; the site's cursor moves only after that commit.  Job rows are version-guarded, events are
insert-or-ignore by (site, store, id): delivering a batch twice changes nothing.

pull: intents addressed to this site are applied to the store one by one, each together with
the record that it was applied; then central is told (acknowledged).  An intent seen again
after a crash is recognised by its id and only acknowledged.

A continuity break (central restored from a backup, a store replaced or restored, a different
central) is found at the start of a round and repaired by pushing everything again.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg

from balsamd.config import Settings
from balsamd.models import App, BatchJob, Job
from balsamd.states import IllegalTransition
from balsamd.store.outbox import PUSHED_EVENT, PUSHED_SEQ
from balsamd.store.store import SiteStore, StoreError
from balsamd.sync.schema import CentralError
from balsamd.validate import JobSpecError, build_job

CRASH_ENV = "BALSAMD_SYNC_CRASH_AT"
CENTRAL_ID = "sync.central_id"
CRASH_POINTS = ("push_batch_committed", "push_cursor_saved", "intents_applied", "intents_acked")

JOB_FIELDS = (
    "id", "app", "workdir", "parameters", "tags", "data", "parent_ids", "num_nodes", "ranks_per_node",
    "threads_per_rank", "threads_per_core", "gpus_per_rank", "node_packing_count", "wall_time_min",
    "launch_params", "state", "return_code", "attempts", "state_reason", "result", "session_id",
    "batch_job_id", "created_at", "updated_at", "version",
)  # fmt: skip
_JSON_FIELDS = {"parameters", "tags", "data", "parent_ids", "launch_params"}
BATCH_FIELDS = (
    "id", "num_nodes", "wall_time_min", "job_mode", "project", "queue", "filter_tags", "state", "scheduler_id",
    "status_info", "created_at", "start_time", "end_time", "origin",
)  # fmt: skip
_encode = msgspec.json.Encoder().encode


def checkpoint(name: str) -> None:
    """Fault injection for tests: die here, as with kill -9, when asked to."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Intent(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    job_id: str
    payload: dict[str, Any] = {}
    owner: str = ""


@dataclass
class RoundReport:
    pushed_jobs: int = 0
    pushed_events: int = 0
    pushed_batch_jobs: int = 0
    pushed_apps: int = 0
    deleted_jobs: int = 0
    applied: int = 0
    rejected: int = 0
    reconciled: str = ""
    lag: int = 0  # store changes (seq) not yet in central after this round
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def job_row(job: Job) -> tuple[Any, ...]:
    out = []
    for name in JOB_FIELDS:
        value = getattr(job, name)
        if name in _JSON_FIELDS:
            value = _encode(value).decode()
        elif name == "state":
            value = str(value)
        out.append(value)
    return tuple(out)


def batch_row(batch: BatchJob) -> tuple[Any, ...]:
    out = []
    for name in BATCH_FIELDS:
        value = getattr(batch, name)
        if name == "filter_tags":
            value = _encode(value).decode()
        elif name in ("state", "job_mode"):
            value = str(value)
        out.append(value)
    return tuple(out)


_JOB_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in JOB_FIELDS if c != "id")
_BATCH_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in BATCH_FIELDS if c != "id")


class SyncEngine:
    def __init__(
        self,
        store: SiteStore,
        dsn: str,
        site_name: str,
        settings: Settings,
        batch: int = 5000,
        progress: Callable[[RoundReport], None] | None = None,
    ) -> None:
        self.store = store
        self.dsn = dsn
        self.site = site_name
        self.settings = settings
        self.batch = batch
        self.progress = progress

    def connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, connect_timeout=10, application_name=f"balsamd site {self.site}")
        except psycopg.OperationalError as exc:
            raise CentralError(f"cannot reach the central database: {str(exc).strip()}") from None

    def round(self) -> RoundReport:
        report = RoundReport()
        started = time.monotonic()
        with self.connect() as pg:
            force = self._continuity(pg, report)
            self._pull(pg, report)  # first, so what the intents changed goes out in this round
            self._push(pg, report, force)
        report.lag = self.store.max_seq() - int(self.store.meta_get(PUSHED_SEQ) or 0)
        report.seconds = time.monotonic() - started
        return report

    # ----- continuity -------------------------------------------------------------------

    def _continuity(self, pg: psycopg.Connection, report: RoundReport) -> bool:
        """Detect a break and reset the cursors; True when everything must be pushed again."""
        with pg.transaction():
            central_id = pg.execute("SELECT value FROM balsamd.meta WHERE key = 'central_id'").fetchone()
            row = pg.execute(
                "SELECT store_id, pushed_seq, pushed_event FROM balsamd.sites WHERE name = %s", (self.site,)
            ).fetchone()
        if central_id is None:
            raise CentralError("the central database has no balsamd schema; run `balsamd central init DSN`")
        if row is None:
            raise CentralError(
                f"site {self.site} is not registered in the central database (or this role may not see it); "
                f"an administrator adds it with `balsamd central add-site {self.site} --role ROLE`"
            )
        central_store, central_seq, central_event = row
        seq = int(self.store.meta_get(PUSHED_SEQ) or 0)
        event = int(self.store.meta_get(PUSHED_EVENT) or 0)
        known_central = self.store.meta_get(CENTRAL_ID)
        reason = ""
        if known_central not in (None, central_id[0]):
            reason = "this site now syncs with a different central database"
        elif central_store is not None and central_store != self.store.store_id():
            reason = "the site store was replaced since the last sync"
        elif central_seq < seq or central_event < event:
            reason = "the central database lost changes it had acknowledged (restored from a backup?)"
        elif central_seq > self.store.max_seq():
            reason = "the site store is older than what central received (restored from a backup?)"
        values = {CENTRAL_ID: central_id[0]}
        if reason:
            values.update({PUSHED_SEQ: "0", PUSHED_EVENT: "0"})
            report.reconciled = reason
        self.store.meta_set(values)
        return bool(reason)

    # ----- push -------------------------------------------------------------------------

    def _push(self, pg: psycopg.Connection, report: RoundReport, force: bool) -> None:
        seq = int(self.store.meta_get(PUSHED_SEQ) or 0)
        event = int(self.store.meta_get(PUSHED_EVENT) or 0)
        store_id = self.store.store_id()
        first = True
        while True:
            jobs, top = self.store.jobs_changed(seq, self.batch)
            events = self.store.events(after=event, limit=self.batch)
            batch_jobs = self.store.batch_jobs_changed(seq, top)
            apps = self.store.apps_changed(seq, top)
            deleted = self.store.jobs_deleted(seq, top)
            if not (jobs or events or batch_jobs or apps or deleted or first or top > seq):
                return
            event_top = events[-1].id if events else event
            with pg.transaction():
                if first:
                    self._push_site_shape(pg)
                self._push_jobs(pg, jobs, force)
                self._push_events(pg, events, store_id)
                self._push_batch_jobs(pg, batch_jobs)
                self._push_apps(pg, apps)
                if deleted:
                    pg.execute("DELETE FROM balsamd.jobs WHERE site = %s AND id = ANY(%s)", (self.site, deleted))
                pg.execute(
                    "UPDATE balsamd.sites SET pushed_seq = %s, pushed_event = %s, store_id = %s, last_sync = %s, "
                    "last_error = '' WHERE name = %s",
                    (top, event_top, store_id, time.time(), self.site),
                )
            checkpoint("push_batch_committed")
            self.store.meta_set({PUSHED_SEQ: str(top), PUSHED_EVENT: str(event_top)})
            checkpoint("push_cursor_saved")
            report.pushed_jobs += len(jobs)
            report.pushed_events += len(events)
            report.pushed_batch_jobs += len(batch_jobs)
            report.pushed_apps += len(apps)
            report.deleted_jobs += len(deleted)
            if self.progress is not None:
                self.progress(report)
            seq, event, first = top, event_top, False
            if len(jobs) < self.batch and len(events) < self.batch:
                return

    def _push_site_shape(self, pg: psycopg.Connection) -> None:
        """What remote clients need to validate jobs for this site."""
        shape = {
            **msgspec.to_builtins(self.settings.nodes),
            "max_wall_time_min": self.settings.scheduler.max_wall_time_min,
        }
        pg.execute("UPDATE balsamd.sites SET nodes = %s WHERE name = %s", (json.dumps(shape), self.site))

    def _push_jobs(self, pg: psycopg.Connection, jobs: list[Job], force: bool) -> None:
        if not jobs:
            return
        pg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS push_jobs (LIKE balsamd.jobs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        columns = ", ".join(JOB_FIELDS)
        with pg.cursor().copy(f"COPY push_jobs (site, {columns}) FROM STDIN") as copy:
            for job in jobs:
                copy.write_row((self.site, *job_row(job)))
        guard = "" if force else " WHERE balsamd.jobs.version < excluded.version"
        pg.execute(
            f"INSERT INTO balsamd.jobs (site, {columns}) SELECT site, {columns} FROM push_jobs "
            f"ON CONFLICT (id) DO UPDATE SET {_JOB_UPDATE}{guard}"
        )

    def _push_events(self, pg: psycopg.Connection, events: list, store_id: str) -> None:
        if not events:
            return
        pg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS push_events (LIKE balsamd.events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cols = "site, store_id, id, job_id, from_state, to_state, ts, reason"
        with pg.cursor().copy(f"COPY push_events ({cols}) FROM STDIN") as copy:
            for e in events:
                from_state = None if e.from_state is None else str(e.from_state)
                copy.write_row((self.site, store_id, e.id, e.job_id, from_state, str(e.to_state), e.ts, e.reason))
        pg.execute(f"INSERT INTO balsamd.events ({cols}) SELECT {cols} FROM push_events ON CONFLICT DO NOTHING")

    def _push_batch_jobs(self, pg: psycopg.Connection, batch_jobs: list[BatchJob]) -> None:
        if not batch_jobs:
            return
        cols = ", ".join(BATCH_FIELDS)
        marks = ", ".join(["%s"] * (len(BATCH_FIELDS) + 1))
        with pg.cursor() as cur:
            cur.executemany(
                f"INSERT INTO balsamd.batch_jobs (site, {cols}) VALUES ({marks}) "
                f"ON CONFLICT (site, id) DO UPDATE SET {_BATCH_UPDATE}",
                [(self.site, *batch_row(b)) for b in batch_jobs],
            )

    def _push_apps(self, pg: psycopg.Connection, apps: list[App]) -> None:
        if not apps:
            return
        with pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO balsamd.apps (site, name, spec) VALUES (%s, %s, %s) "
                "ON CONFLICT (site, name) DO UPDATE SET spec = excluded.spec",
                [(self.site, a.name, _encode(a).decode()) for a in apps],
            )
        names = list(self.store.apps())
        pg.execute("DELETE FROM balsamd.apps WHERE site = %s AND NOT (name = ANY(%s))", (self.site, names))

    # ----- pull -------------------------------------------------------------------------

    def _pull(self, pg: psycopg.Connection, report: RoundReport) -> None:
        while True:
            with pg.transaction():
                rows = pg.execute(
                    "SELECT id, kind, job_id, payload, owner FROM balsamd.intents "
                    "WHERE site = %s AND applied_at IS NULL ORDER BY id LIMIT %s",
                    (self.site, self.batch),
                ).fetchall()
            if not rows:
                return
            intents = [Intent(id=r[0], kind=r[1], job_id=r[2], payload=r[3], owner=r[4]) for r in rows]
            outcomes = {i.id: self.apply(i) for i in intents}
            checkpoint("intents_applied")
            now = time.time()
            with pg.transaction():
                with pg.cursor() as cur:
                    cur.executemany(
                        "UPDATE balsamd.intents SET applied_at = %s, outcome = %s WHERE id = %s",
                        [(now, outcome, intent_id) for intent_id, outcome in outcomes.items()],
                    )
                # jobs a site refused to create exist only in central: the site fails them there
                refused = []
                for i in intents:
                    if i.kind == "create" and outcomes[i.id].startswith("rejected"):
                        refused += [(outcomes[i.id], now, spec["id"]) for spec in i.payload.get("jobs", [])]
                if refused:
                    with pg.cursor() as cur:
                        cur.executemany(
                            "UPDATE balsamd.jobs SET state = 'FAILED', state_reason = %s, updated_at = %s "
                            "WHERE id = %s AND version = 0",
                            refused,
                        )
            checkpoint("intents_acked")
            report.applied += sum(not o.startswith("rejected") for o in outcomes.values())
            report.rejected += sum(o.startswith("rejected") for o in outcomes.values())
            if len(rows) < self.batch:
                return

    def apply(self, intent: Intent) -> str:
        """Apply one intent to the store, exactly once; returns its outcome text."""
        refusals = (StoreError, IllegalTransition, JobSpecError, ValueError)
        previous = self.store.applied_outcome(intent.id)
        if previous is not None:
            return previous
        if intent.kind == "create":
            try:
                jobs = self._jobs_of(intent)
            except refusals as exc:
                return self.store.apply_intent(intent.id, _raise(exc), refusals)
            return self.store.apply_intent(
                intent.id, lambda: f"applied: created {len(self.store.create_jobs(jobs))} job(s)", refusals
            )
        if intent.kind == "kill":
            return self.store.apply_intent(intent.id, lambda: f"applied: {self.store.kill([intent.job_id])}", refusals)
        if intent.kind == "retry":
            return self.store.apply_intent(intent.id, lambda: f"applied: {self.store.retry([intent.job_id])}", refusals)
        if intent.kind == "update":

            def update() -> str:
                self.store.update_job_intent(intent.job_id, intent.payload)
                return "applied"

            return self.store.apply_intent(intent.id, update, refusals)
        return self.store.apply_intent(intent.id, _raise(ValueError(f"unknown intent kind {intent.kind!r}")), refusals)

    def _jobs_of(self, intent: Intent) -> list[Job]:
        apps = self.store.apps()
        specs = intent.payload.get("jobs", [])
        jobs = []
        for n, spec in enumerate(specs):
            fields = {k: v for k, v in spec.items() if k != "id"}
            job = build_job(
                spec["id"], fields, apps, self.settings.nodes, self.settings.scheduler.max_wall_time_min,
                f"job {n}" if len(specs) > 1 else "job",
            )  # fmt: skip
            jobs.append(job)
        return jobs


def _raise(exc: Exception) -> Callable[[], str]:
    def action() -> str:
        raise exc

    return action
