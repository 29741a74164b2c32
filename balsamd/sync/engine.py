"""One sync round between a site store and the central database.

push: rows the site changed since its cursor (jobs, events, batch jobs, apps, deletions) go to
central in batches, each batch one PostgreSQL transaction that also records how far central
got; the site's cursor moves only after that commit.  Job rows are version-guarded, events are
insert-or-ignore by (site, store, id): delivering a batch twice changes nothing.  Transfer items
follow, from a cursor of their own and only as far as their jobs' rows went, guarded by their
seq; they leave central with their jobs (a foreign key).  A site writes only rows of its own site
and never a job's owner (central's column privileges and row-level security); a job whose id
central holds at another site (a row someone else put there) is not pushed, nor its events, nor
its items, and the round says so (``RoundReport.refused``) and goes on.

pull: intents addressed to this site are applied by the store (``Store.apply_intents``: each
checked, applied at most once, with its outcome recorded beside it); then central is told
(acknowledged) with the outcome as JSON.  An intent seen again after a crash is recognised by
its id and only acknowledged.

A continuity break (central restored from a backup, a store replaced or restored, a different
central) is found at the start of a round and repaired by pushing everything again; when one
side went back in time, central's copy of the store is rebuilt (``sync.continuity``).  Then the
acknowledgements the store may have lost are checked, and what it lost is applied again.
Rounds of one site take turns.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from balsamd.config import Settings
from balsamd.models import (
    BATCH_COLUMNS,
    JOB_COLUMNS,
    App,
    BatchJob,
    CentralRow,
    Event,
    Intent,
    IntentKind,
    IntentOutcome,
    IntentStatus,
    batch_row,
)
from balsamd.store.contract import Store
from balsamd.store.outbox import PUSHED_EVENT, PUSHED_SEQ, PUSHED_TRANSFER_SEQ
from balsamd.store.queries import JobFilter
from balsamd.sync.continuity import Break, CentralRecord, Plan, Repair, SiteRecord, plan
from balsamd.sync.schema import (
    SITE_ITEM_COLUMNS,
    SITE_JOB_INSERT,
    SITE_JOB_UPDATE,
    CentralError,
    check_version,
    scalar,
)
from balsamd.validate import SiteRules

log = logging.getLogger("balsamd.sync")

CRASH_ENV = "BALSAMD_SYNC_CRASH_AT"
CRASH_POINTS = ("push_batch_committed", "push_cursor_saved", "intents_applied", "intents_acked")
# what sync keeps in the store's meta besides its cursors (see sync.continuity)
CENTRAL_ID = "sync.central_id"
MARK = "sync.push_mark"
MARK_CONFIRMED = "sync.push_mark_confirmed"
ACKS_CHECKED = "sync.acks_checked"
REPAIR = "sync.repair"

_encode = msgspec.json.Encoder().encode


# A server that vanished without closing its connections (a crashed host, a cut network) must
# fail a round within about a minute, not hang it (and the daemon's stop) forever.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
             "tcp_user_timeout": 60_000}  # fmt: skip


def keepalive_options(dsn: str) -> dict[str, Any]:
    """KEEPALIVE settings the DSN does not choose itself."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return {}  # connecting says what is wrong with it
    return {k: v for k, v in KEEPALIVE.items() if k not in given}


def checkpoint(name: str) -> None:
    """Fault injection for tests: die here, as with kill -9, when asked to."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class RoundReport:
    pushed_jobs: int = 0
    pushed_events: int = 0
    pushed_batch_jobs: int = 0
    pushed_apps: int = 0
    pushed_transfers: int = 0
    deleted_jobs: int = 0
    applied: int = 0
    rejected: int = 0
    reapplied: int = 0  # acknowledged intents the store had lost, applied again
    reconciled: Break = Break.NONE
    lag: int = 0  # store changes (seq) not yet in central after this round
    # how far the round is, for a progress bar: store changes to push when it began pushing,
    # and how many it pushed; intents waiting when it began pulling (applied + rejected so far)
    to_push: int = 0
    pushed_changes: int = 0
    to_apply: int = 0
    seconds: float = 0.0
    # jobs not pushed, by id, with the reason (their id is taken at another site)
    refused: dict[str, str] = field(default_factory=dict)


_JOB_COLUMNS = ", ".join(JOB_COLUMNS)
# a job central has keeps its owner; one new to central gets the column's default, the site's
# role: a site never names an owner (it could otherwise make rows in any user's name)
_JOB_INSERT = ", ".join(SITE_JOB_INSERT)
_JOB_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in SITE_JOB_UPDATE)
_ID = JOB_COLUMNS.index("id")
TAKEN = "the central database holds a job of another site under its id; it is not pushed, nor its events"
_EVENT_COLUMNS = "site, store_id, id, job_id, from_state, to_state, ts, reason"
_BATCH_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in BATCH_COLUMNS if c != "id")
_ITEM_COLUMNS = ", ".join(SITE_ITEM_COLUMNS)
_ITEM_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in SITE_ITEM_COLUMNS if c != "id")


class SyncEngine:
    def __init__(
        self,
        store: Store,
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
            return psycopg.connect(
                self.dsn, connect_timeout=10, application_name=f"balsamd site {self.site}",
                **keepalive_options(self.dsn),
            )  # fmt: skip
        except psycopg.OperationalError as exc:
            raise CentralError(f"cannot reach the central database: {str(exc).strip()}") from None

    def round(self) -> RoundReport:
        report = RoundReport()
        started = time.monotonic()
        try:
            with self.connect() as pg:
                with pg.transaction():  # one round of a site at a time: held until disconnected
                    pg.execute("SELECT pg_advisory_lock(hashtext('balsamd sync'), hashtext(%s))", (self.site,))
                todo = self._continuity(pg, report)
                self._check_acks(pg, report, todo.acks_checked)
                self._pull(pg, report)  # first, so what the intents changed goes out in this round
                self._push(pg, report, force=todo.repair != Repair.NONE)
                self._push_transfers(pg, report, force=todo.repair != Repair.NONE)
                if todo.repair == Repair.REBUILD:
                    self._prune(pg, report)
                if todo.repair != Repair.NONE:
                    self.store.meta_set({REPAIR: ""})
        except psycopg.OperationalError as exc:  # e.g. the server went away mid-round
            raise CentralError(
                f"the central database failed during the round (the next round resumes from what was "
                f"committed): {str(exc).strip()}"
            ) from None
        report.lag = self.store.max_seq() - int(self.store.meta_get(PUSHED_SEQ) or 0)
        report.seconds = time.monotonic() - started
        return report

    # ----- continuity -------------------------------------------------------------------

    def _continuity(self, pg: psycopg.Connection, report: RoundReport) -> Plan:
        """Find a break (or a repair left unfinished), start its repair, and say what this
        round does (``sync.continuity.plan``)."""
        with pg.transaction():
            if scalar(pg, "SELECT to_regnamespace('balsamd')") is None:
                raise CentralError("the central database has no balsamd schema; run `balsamd central init DSN`")
            try:
                meta: dict[str, str] = dict(pg.execute("SELECT key, value FROM balsamd.meta").fetchall())
            except psycopg.errors.InsufficientPrivilege:
                raise CentralError(
                    f"this site's role may not use the central database; its administrator registers the site "
                    f"with `balsamd central add-site DSN {self.site} --role ROLE`"
                ) from None
            check_version(int(meta.get("schema_version", 1)))
            row = pg.execute(
                "SELECT store_id, pushed_seq, pushed_event, push_mark, acked_seq, pushed_transfer_seq "
                "FROM balsamd.sites WHERE name = %s",
                (self.site,),
            ).fetchone()
        if row is None:
            raise CentralError(
                f"site {self.site} is not registered in the central database (or this role may not see it); "
                f"an administrator adds it with `balsamd central add-site DSN {self.site} --role ROLE`"
            )
        central = CentralRecord(
            central_id=meta["central_id"], store_id=row[0], pushed_seq=row[1], pushed_event=row[2], mark=row[3],
            acked_seq=row[4], pushed_transfer_seq=row[5],
        )  # fmt: skip
        store_id = self.store.store_id()
        todo = plan(self._site_record(store_id), central)
        if todo.drop_events:  # the store's ids may name other events now: all go again
            with pg.transaction():
                pg.execute("DELETE FROM balsamd.events WHERE site = %s AND store_id = %s", (self.site, store_id))
        values = {
            CENTRAL_ID: central.central_id, MARK_CONFIRMED: todo.confirmed or "",
            ACKS_CHECKED: str(todo.acks_checked), REPAIR: str(todo.repair),
        }  # fmt: skip
        if todo.found != Break.NONE:
            values.update({PUSHED_SEQ: "0", PUSHED_EVENT: "0", PUSHED_TRANSFER_SEQ: "0"})
            report.reconciled = todo.found
        self.store.meta_set(values)
        return todo

    def _site_record(self, store_id: str) -> SiteRecord:
        get = self.store.meta_get
        checked = get(ACKS_CHECKED)
        try:
            repair = Repair(get(REPAIR) or "")
        except ValueError:  # not written by sync: the repair that makes no assumption
            repair = Repair.REBUILD
        return SiteRecord(
            store_id=store_id, central_id=get(CENTRAL_ID), pushed_seq=int(get(PUSHED_SEQ) or 0),
            pushed_event=int(get(PUSHED_EVENT) or 0), max_seq=self.store.max_seq(), mark=get(MARK) or None,
            pushed_transfer_seq=int(get(PUSHED_TRANSFER_SEQ) or 0),
            confirmed=get(MARK_CONFIRMED) or None, acks_checked=int(checked) if checked else None, repair=repair,
        )  # fmt: skip

    def _prune(self, pg: psycopg.Connection, report: RoundReport) -> None:
        """After central's copy was pushed again in full: remove the job rows (with their
        events) and batch jobs central holds of this site that the store does not have.  Rows
        the site never pushed (version 0: creates still to apply, or refused) stay."""
        after = ""
        while True:
            with pg.transaction():
                found = pg.execute(
                    "SELECT id FROM balsamd.jobs WHERE site = %s AND version > 0 AND id > %s ORDER BY id LIMIT %s",
                    (self.site, after, self.batch),
                ).fetchall()
            ids = [job_id for (job_id,) in found]
            held = {job.id for job in self.store.filter(JobFilter(ids=ids))} if ids else set()
            gone = [job_id for job_id in ids if job_id not in held]
            if gone:
                with pg.transaction():
                    pg.execute("DELETE FROM balsamd.jobs WHERE site = %s AND id = ANY(%s)", (self.site, gone))
                    pg.execute("DELETE FROM balsamd.events WHERE site = %s AND job_id = ANY(%s)", (self.site, gone))
                report.deleted_jobs += len(gone)
            if len(ids) < self.batch:
                break
            after = ids[-1]
        batch_ids = [b.id for b in self.store.batch_jobs()]
        with pg.transaction():
            pg.execute("DELETE FROM balsamd.batch_jobs WHERE site = %s AND NOT (id = ANY(%s))", (self.site, batch_ids))

    # ----- acknowledgements the store lost ------------------------------------------------

    def _check_acks(self, pg: psycopg.Connection, report: RoundReport, checked: int) -> None:
        """Find the intents central holds acknowledged by this site, numbered above ``checked``,
        that the store has no record of (or another outcome for); apply the lost ones again
        and acknowledge both again.  Normally these are the last round's acknowledgements, all
        present: one query each side."""
        while True:
            with pg.transaction():
                top = scalar(pg, "SELECT acked_seq FROM balsamd.sites WHERE name = %s", (self.site,))
                rows = pg.execute(
                    "SELECT id, ack_seq, outcome FROM balsamd.intents WHERE site = %s AND ack_seq > %s "
                    "AND ack_seq <= %s ORDER BY ack_seq LIMIT %s",
                    (self.site, checked, top, self.batch),
                ).fetchall()
            recorded = self.store.intent_outcomes([r[0] for r in rows]) if rows else {}
            lost = [intent_id for intent_id, _, _ in rows if intent_id not in recorded]
            outcomes: dict[str, IntentOutcome] = {}
            intents: list[Intent] = []
            if lost:
                log.warning("sync: the store lost %d acknowledged intent(s); applying them again", len(lost))
                intents = self._intents(pg, "id = ANY(%s) ORDER BY ack_seq", lost)
                again = self.store.apply_intents(intents)
                report.reapplied += len(again)
            else:
                again = {}
            for intent_id, _, outcome in rows:  # in the order they were acknowledged
                if intent_id in again:
                    outcomes[intent_id] = again[intent_id]
                elif intent_id in recorded and _outcome(outcome) != recorded[intent_id]:
                    outcomes[intent_id] = recorded[intent_id]
            if outcomes:
                self._acknowledge(pg, outcomes, intents)
            done = rows[-1][1] if len(rows) == self.batch else top
            if done != checked:
                self.store.meta_set({ACKS_CHECKED: str(done)})
            checked = done
            if len(rows) < self.batch:
                return

    # ----- push -------------------------------------------------------------------------

    def _push(self, pg: psycopg.Connection, report: RoundReport, force: bool) -> None:
        seq = int(self.store.meta_get(PUSHED_SEQ) or 0)
        event = int(self.store.meta_get(PUSHED_EVENT) or 0)
        store_id = self.store.store_id()
        mark = self.store.meta_get(MARK) or None
        first = True
        start = seq
        report.to_push = self.store.max_seq() - seq
        while True:
            # events before job rows: the job of every event read here has its row in this
            # batch or an earlier one once the rows are read to the end (see _push_events)
            events = self.store.events(after=event, limit=self.batch)
            jobs, top = self.store.job_rows_changed(seq, self.batch)
            batch_jobs = self.store.batch_jobs_changed(seq, top)
            apps = self.store.apps_changed(seq, top)
            deleted = self.store.jobs_deleted(seq, top)
            carries = bool(jobs or events or batch_jobs or apps or deleted)
            if not (carries or first or top > seq):
                return
            if carries or mark is None:  # written after the reads above (see sync.continuity)
                mark = secrets.token_hex(16)
                self.store.meta_set({MARK: mark})
            with pg.transaction():
                if first:
                    self._push_site_shape(pg)
                refused = self._push_jobs(pg, jobs, force)
                pushed = {row[_ID] for row in jobs} - refused.keys() if jobs else None
                event_top, left_out = self._push_events(pg, events, store_id, event, pushed)
                refused.update((job_id, why) for job_id, why in left_out.items() if job_id not in deleted)
                self._push_batch_jobs(pg, batch_jobs)
                self._push_apps(pg, apps, first)
                if deleted:  # removed at the site with their events: likewise here
                    pg.execute("DELETE FROM balsamd.jobs WHERE site = %s AND id = ANY(%s)", (self.site, deleted))
                    pg.execute("DELETE FROM balsamd.events WHERE site = %s AND job_id = ANY(%s)", (self.site, deleted))
                # central may be further than the store's cursor (a round died before the store
                # recorded central's commit): its record only moves back when a break is repaired
                cursor = "%s" if force and first else "GREATEST({}, %s)"
                pg.execute(
                    f"UPDATE balsamd.sites SET pushed_seq = {cursor.format('pushed_seq')}, "
                    f"pushed_event = {cursor.format('pushed_event')}, store_id = %s, push_mark = %s, "
                    "last_sync = %s, last_error = '' WHERE name = %s",
                    (top, event_top, store_id, mark, time.time(), self.site),
                )
            checkpoint("push_batch_committed")
            self.store.meta_set({PUSHED_SEQ: str(top), PUSHED_EVENT: str(event_top), MARK_CONFIRMED: mark})
            checkpoint("push_cursor_saved")
            for job_id, reason in refused.items():
                log.warning("sync: job %s not pushed: %s", job_id, reason)
            report.refused.update(refused)
            report.pushed_jobs += len(pushed or ())
            report.pushed_events += sum(1 for e in events if e.id <= event_top and e.job_id not in left_out)
            report.pushed_batch_jobs += len(batch_jobs)
            report.pushed_apps += len(apps)
            report.deleted_jobs += len(deleted)
            report.pushed_changes = top - start
            if self.progress is not None:
                self.progress(report)
            moved = top > seq or event_top > event
            seq, event, first = top, event_top, False
            if not moved or (len(jobs) < self.batch and len(events) < self.batch):
                return

    def _push_transfers(self, pg: psycopg.Connection, report: RoundReport, force: bool) -> None:
        """Transfer items changed since their cursor, up to where the jobs' rows were pushed: every
        item's job has its row in central by then (a job is made in the transaction of its items).
        The cursor moves only with rows pushed, and central records it with them (so a central
        that lost them is found); a repair sets central's record to the store's."""
        up_to = int(self.store.meta_get(PUSHED_SEQ) or 0)
        seq = int(self.store.meta_get(PUSHED_TRANSFER_SEQ) or 0)
        first = True
        while True:
            rows, top = self.store.transfer_rows_changed(seq, up_to, self.batch)
            if not rows and not (force and first):
                return
            mark = None
            if rows:  # written after the read above (see sync.continuity)
                mark = secrets.token_hex(16)
                self.store.meta_set({MARK: mark})
            cursor = "%s" if force and first else "GREATEST(pushed_transfer_seq, %s)"
            with pg.transaction():
                report.pushed_transfers += self._push_items(pg, rows, force)
                pg.execute(
                    f"UPDATE balsamd.sites SET pushed_transfer_seq = {cursor}, push_mark = COALESCE(%s, push_mark) "
                    "WHERE name = %s",
                    (top, mark, self.site),
                )
            self.store.meta_set({PUSHED_TRANSFER_SEQ: str(top), **({MARK_CONFIRMED: mark} if mark else {})})
            seq, first = top, False
            if len(rows) < self.batch:
                return

    def _push_items(self, pg: psycopg.Connection, rows: list[tuple[Any, ...]], force: bool) -> int:
        """Item rows (SITE_ITEM_COLUMNS) upserted into central, newer ones only; those of a job
        central does not hold at this site (its id is taken at another site) are left out, as
        its row was.  Returns how many were written."""
        if not rows:
            return 0
        pg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS push_items (LIKE balsamd.transfer_items INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
        with pg.cursor().copy(f"COPY push_items (site, {_ITEM_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((self.site, *row))
        guard = "" if force else " WHERE balsamd.transfer_items.seq < excluded.seq"
        done = pg.execute(
            f"INSERT INTO balsamd.transfer_items (site, {_ITEM_COLUMNS}) "
            f"SELECT site, {_ITEM_COLUMNS} FROM push_items p "
            "WHERE EXISTS (SELECT 1 FROM balsamd.jobs j WHERE j.id = p.job_id AND j.site = p.site) "
            f"ON CONFLICT (site, id) DO UPDATE SET {_ITEM_UPDATE}{guard}"
        )
        return done.rowcount

    def _push_site_shape(self, pg: psycopg.Connection) -> None:
        """The rules this site checks requests against: remote clients check them first."""
        rules = msgspec.to_builtins(SiteRules.of(self.settings))
        pg.execute("UPDATE balsamd.sites SET rules = %s WHERE name = %s", (Jsonb(rules), self.site))

    def _push_jobs(self, pg: psycopg.Connection, jobs: list[tuple[Any, ...]], force: bool) -> dict[str, str]:
        """Store rows (JOB_COLUMNS, JSON as text) upserted into central, newer versions only;
        returns the jobs left out, with the reason."""
        if not jobs:
            return {}
        pg.execute(
            "CREATE TEMP TABLE IF NOT EXISTS push_jobs (LIKE balsamd.jobs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with pg.cursor().copy(f"COPY push_jobs (site, {_JOB_COLUMNS}) FROM STDIN") as copy:
            site = self.site
            for row in jobs:
                copy.write_row((site, *row))
        # an id another site holds (a row someone put there): upserting it would fail the whole
        # batch on row-level security, every round; the job stays out of central instead
        taken = pg.execute(
            "DELETE FROM push_jobs WHERE id IN (SELECT balsamd.jobs_elsewhere(ARRAY(SELECT id FROM push_jobs), %s)) "
            "RETURNING id",
            (self.site,),
        ).fetchall()
        guard = "" if force else " WHERE balsamd.jobs.version < excluded.version"
        pg.execute(
            f"INSERT INTO balsamd.jobs ({_JOB_INSERT}) SELECT {_JOB_INSERT} FROM push_jobs "
            f"ON CONFLICT (id) DO UPDATE SET {_JOB_UPDATE}{guard}"
        )
        return {job_id: TAKEN for (job_id,) in taken}

    def _push_events(
        self, pg: psycopg.Connection, events: list[Event], store_id: str, after: int, pushed: set[str] | None
    ) -> tuple[int, dict[str, str]]:
        """Events of jobs central holds at this site (a site may add events to nothing else);
        ``pushed`` holds the jobs whose rows this batch pushed, None when the store had no job
        row left to push.  Returns the id the event cursor moves to, and the jobs whose events
        were left out, with the reason.  An event whose job's row is still to come (changed
        again after this batch's rows were cut) waits for a later batch, with those after it;
        events of a job another site holds under its id are dropped, and so are those of a job
        central no longer has (removed there) once no row is left to push."""
        if not events:
            return after, {}
        others = sorted({e.job_id for e in events} - (pushed or set()))
        here: set[str] = set()
        dropped: dict[str, str] = {}
        if others:  # most events come with their job's row; the rest are looked up by id
            query = "SELECT id FROM balsamd.jobs WHERE site = %s AND id = ANY(%s)"
            here = {job_id for (job_id,) in pg.execute(query, (self.site, others))}
            absent = [job_id for job_id in others if job_id not in here]
            if absent:
                query = "SELECT balsamd.jobs_elsewhere(%s, %s)"
                dropped = {job_id: TAKEN for (job_id,) in pg.execute(query, (absent, self.site))}
            if pushed is None:
                dropped.update({i: "the central database no longer holds this job; its events are not pushed"
                                for i in absent if i not in dropped})  # fmt: skip
        ready = (pushed or set()) | here | dropped.keys()
        waiting = next((e.id for e in events if e.job_id not in ready), None)
        sent = [e for e in events if (waiting is None or e.id < waiting) and e.job_id not in dropped]
        if sent:
            pg.execute(
                "CREATE TEMP TABLE IF NOT EXISTS push_events (LIKE balsamd.events INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            )
            with pg.cursor().copy(f"COPY push_events ({_EVENT_COLUMNS}) FROM STDIN") as copy:
                for e in sent:
                    from_state = None if e.from_state is None else str(e.from_state)
                    copy.write_row((self.site, store_id, e.id, e.job_id, from_state, str(e.to_state), e.ts, e.reason))
            pg.execute(
                f"INSERT INTO balsamd.events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM push_events "
                "ON CONFLICT DO NOTHING"
            )
        if waiting is None:
            return events[-1].id, dropped
        return max((e.id for e in events if e.id < waiting), default=after), dropped

    def _push_batch_jobs(self, pg: psycopg.Connection, batch_jobs: list[BatchJob]) -> None:
        if not batch_jobs:
            return
        cols = ", ".join(BATCH_COLUMNS)
        marks = ", ".join(["%s"] * (len(BATCH_COLUMNS) + 1))
        with pg.cursor() as cur:
            cur.executemany(
                f"INSERT INTO balsamd.batch_jobs (site, {cols}) VALUES ({marks}) "
                f"ON CONFLICT (site, id) DO UPDATE SET {_BATCH_UPDATE}",
                [(self.site, *batch_row(b)) for b in batch_jobs],
            )

    def _push_apps(self, pg: psycopg.Connection, apps: list[App], first: bool) -> None:
        """Changed apps, and (once a round) the removal of apps the store no longer has: a
        removal leaves no changed row behind to push."""
        if apps:
            with pg.cursor() as cur:
                cur.executemany(
                    "INSERT INTO balsamd.apps (site, name, spec) VALUES (%s, %s, %s) "
                    "ON CONFLICT (site, name) DO UPDATE SET spec = excluded.spec",
                    [(self.site, a.name, _encode(a).decode()) for a in apps],
                )
        if apps or first:
            names = list(self.store.apps())
            pg.execute("DELETE FROM balsamd.apps WHERE site = %s AND NOT (name = ANY(%s))", (self.site, names))

    # ----- pull -------------------------------------------------------------------------

    def _central_rows(self, pg: psycopg.Connection, intents: list[Intent]) -> None:
        """Tell each create what central holds under the ids it names: the store makes only new
        jobs at this site, owned by the intent's author (store/intents.py)."""
        creates = [i for i in intents if i.kind == IntentKind.CREATE]
        named = sorted({job_id for i in creates for job_id in _created_ids(i.payload)})
        if not named:
            return
        found = pg.execute("SELECT id, owner FROM balsamd.jobs WHERE site = %s AND id = ANY(%s)", (self.site, named))
        rows = {job_id: CentralRow(here=True, owner=owner) for job_id, owner in found}
        for (job_id,) in pg.execute("SELECT balsamd.jobs_elsewhere(%s, %s)", (named, self.site)):
            rows[job_id] = CentralRow(here=False)
        for intent in creates:
            intent.central = {job_id: rows[job_id] for job_id in _created_ids(intent.payload) if job_id in rows}

    def _intents(self, pg: psycopg.Connection, where: str, param: Any) -> list[Intent]:
        """Intents of this site as their rows read, each create told what central holds."""
        with pg.transaction():
            rows = pg.execute(
                f"SELECT id, kind, job_id, payload, owner FROM balsamd.intents WHERE site = %s AND {where}",
                (self.site, param),
            ).fetchall()
            intents = [Intent(id=r[0], kind=r[1], job_id=r[2], payload=r[3], owner=r[4]) for r in rows]
            self._central_rows(pg, intents)
        return intents

    def _pull(self, pg: psycopg.Connection, report: RoundReport) -> None:
        with pg.transaction():  # the round commits each step: no transaction may stay open
            waiting = pg.execute(
                "SELECT count(*) FROM balsamd.intents WHERE site = %s AND applied_at IS NULL", (self.site,)
            ).fetchone()
        report.to_apply = waiting[0] if waiting else 0
        while True:
            intents = self._intents(pg, "applied_at IS NULL ORDER BY id LIMIT %s", self.batch)
            if not intents:
                return
            outcomes = self.store.apply_intents(intents)
            checkpoint("intents_applied")
            self._acknowledge(pg, outcomes, intents)
            checkpoint("intents_acked")
            rejected = sum(o.status == IntentStatus.REJECTED for o in outcomes.values())
            report.applied += len(outcomes) - rejected
            report.rejected += rejected
            if self.progress is not None:
                self.progress(report)
            if len(intents) < self.batch:
                return

    def _acknowledge(self, pg: psycopg.Connection, outcomes: dict[str, IntentOutcome], intents: list[Intent]) -> None:
        """Tell central the outcomes, numbering the acknowledgements in their order under the
        lock of the site's row (so one site's numbers commit in order; see sync.continuity)."""
        now = time.time()
        with pg.transaction():
            top = scalar(
                pg, "UPDATE balsamd.sites SET acked_seq = acked_seq + %s WHERE name = %s RETURNING acked_seq",
                (len(outcomes), self.site),
            )  # fmt: skip
            first = top - len(outcomes) + 1
            with pg.cursor() as cur:
                cur.executemany(
                    "UPDATE balsamd.intents SET applied_at = %s, outcome = %s, ack_seq = %s WHERE id = %s",
                    [(now, Jsonb(msgspec.to_builtins(o)), first + n, intent_id)
                     for n, (intent_id, o) in enumerate(outcomes.items())],
                )  # fmt: skip
            # jobs a site refused to create exist only in central: the site fails them there
            # (only the asker's own jobs of this site that the site never had)
            refused = [
                (f"refused by site {self.site}: {outcomes[i.id].reason}", now, job_id, self.site, i.owner)
                for i in intents
                if i.kind == IntentKind.CREATE and outcomes[i.id].status == IntentStatus.REJECTED
                for job_id in _created_ids(i.payload)
            ]
            if refused:
                with pg.cursor() as cur:
                    cur.executemany(
                        "UPDATE balsamd.jobs SET state = 'FAILED', state_reason = %s, updated_at = %s "
                        "WHERE id = %s AND site = %s AND owner = %s AND version = 0",
                        refused,
                    )


def _outcome(value: Any) -> IntentOutcome | None:
    """An outcome as central holds it (None when it does not read as one)."""
    try:
        return msgspec.convert(value, IntentOutcome)
    except msgspec.ValidationError:
        return None


def _created_ids(payload: Any) -> list[str]:
    """The job ids a create intent names (nothing for a malformed payload)."""
    specs = payload.get("jobs") if isinstance(payload, dict) else None
    if not isinstance(specs, list):
        return []
    return [s["id"] for s in specs if isinstance(s, dict) and isinstance(s.get("id"), str)]
