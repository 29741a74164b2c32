"""Batch jobs from anywhere that reaches the central database: ``conn.batch_jobs``.

A user never writes a batch job's row: sites do.  ``create`` writes a ``batch_create`` intent
naming the new batch job's id; the site checks it against its rules, records the batch job
(pending submission), its scheduler service submits it, and the row it pushes here follows it
(queued, running, finished, or submit_failed with the scheduler's reason).  Until the site has
taken the request, the batch job reads from its intent: pending submission, or, when the site
refused it, submit_failed with the site's reason.  ``delete`` writes a ``batch_delete`` intent,
applied only for who asked for the batch job.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from psycopg import sql
from psycopg.types.json import Jsonb

from balsamd import ids
from balsamd.batchspec import batch_job, batch_spec, batch_states
from balsamd.models import (
    BATCH_COLUMNS,
    BatchJob,
    BatchJobState,
    BatchSpec,
    IntentKind,
    IntentOutcome,
    IntentStatus,
)
from balsamd.sync.schema import CentralError
from balsamd.validate import Refused, batch_problems, id_list

if TYPE_CHECKING:
    from balsamd.sync.remote import CentralConnection

_SELECT = f"{', '.join(BATCH_COLUMNS)}, site"
# a request the site has not taken yet, or refused: its intent, read as a batch job
_REQUESTS = sql.SQL(
    "SELECT job_id, site, payload, created_at, outcome, owner FROM balsamd.intents "
    "WHERE kind = 'batch_create' AND NOT EXISTS "
    "(SELECT 1 FROM balsamd.batch_jobs b WHERE b.site = intents.site AND b.id = intents.job_id)"
)


def _from_row(row: tuple[Any, ...]) -> tuple[BatchJob, str]:
    *fields, site = row
    return msgspec.convert(dict(zip(BATCH_COLUMNS, fields, strict=True)), BatchJob), site


def _from_request(row: tuple[Any, ...]) -> tuple[BatchJob, str]:
    """A batch job as its create intent reads (of no nodes nor minutes when its payload cannot
    be read as a request: the site refuses it)."""
    batch_id, site, payload, created_at, outcome, owner = row
    try:
        spec = msgspec.convert(payload, BatchSpec)
    except msgspec.ValidationError:
        spec = BatchSpec(num_nodes=0, wall_time_min=0)
    batch = batch_job(batch_id, spec)
    batch.created_at, batch.owner = created_at, owner
    if outcome is None:
        batch.status_info = f"waiting for site {site} to take the request"
    else:
        told = msgspec.convert(outcome, IntentOutcome)
        if told.status == IntentStatus.REJECTED:
            batch.state = BatchJobState.SUBMIT_FAILED
            batch.status_info = f"refused by site {site}: {told.reason}"
    return batch, site


def _where(site: str | None, batch_ids: list[str] | None, id_column: str) -> sql.Composed:
    """More conditions of a query: at ``site``, with one of these ids (each if given)."""
    parts = sql.Composed([])
    if site is not None:
        parts += sql.SQL(" AND site = {}").format(sql.Literal(site))
    if batch_ids is not None:
        parts += sql.SQL(" AND {} = ANY({})").format(sql.Identifier(id_column), sql.Literal(batch_ids))
    return parts


class RemoteBatchJob:
    """A batch job seen through the central database: its fields, ``site`` and ``refresh()``."""

    def __init__(self, conn: CentralConnection, record: BatchJob, site: str) -> None:
        self._conn, self._record, self.site = conn, record, site

    def __getattr__(self, name: str) -> Any:
        if name in BatchJob.__struct_fields__:
            return getattr(self._record, name)
        raise AttributeError(name)

    @property
    def record(self) -> BatchJob:
        return self._record

    def refresh(self) -> RemoteBatchJob:
        self._record = self._conn.batch_jobs.get(self._record.id, site=self.site).record
        return self

    def __repr__(self) -> str:
        r = self._record
        return f"<BatchJob {r.id} site={self.site} {r.num_nodes} node(s) state={r.state}>"


class RemoteBatchJobs:
    def __init__(self, conn: CentralConnection) -> None:
        self._conn = conn

    def create(self, num_nodes: int, wall_time_min: int, site: str | None = None, **fields: Any) -> RemoteBatchJob:
        """Ask ``site`` for a batch job (``job_mode``, ``queue``, ``project``, ``filter_tags``,
        ``partitions``, ``optional_params``), checked first against the rules it published."""
        if not isinstance(site, str) or not site:
            raise Refused("batch job", [f"no site given (site={site!r:.40}): pass site=NAME, a site's name"])
        _, rules = self._conn.site_rules(site)
        spec = batch_spec({"num_nodes": num_nodes, "wall_time_min": wall_time_min, **fields}, rules.scheduler)
        batch = batch_job(ids.new_id(), spec)
        problems = batch_problems(batch, rules, active=0)  # the site counts its active batch jobs itself
        if problems:
            raise Refused("batch job", problems)
        batch.created_at, batch.owner = time.time(), self._conn.user
        self._conn.execute(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) VALUES (%s, %s, %s, %s, %s, %s)",
            (ids.new_id(), site, str(IntentKind.BATCH_CREATE), batch.id, Jsonb(msgspec.to_builtins(spec)),
             batch.created_at),
        )  # fmt: skip
        batch.status_info = f"waiting for site {site} to take the request"
        return RemoteBatchJob(self._conn, batch, site)

    def get(self, batch_id: str, site: str | None = None) -> RemoteBatchJob:
        found = self.filter(site=site, ids=[batch_id])
        if not found:
            raise CentralError(f"no batch job with id {batch_id!r:.40} in the central database")
        return found[0]

    def filter(self, *, site: str | None = None, state: Any = None, ids: Iterable[str] | None = None,
               mine: bool = False) -> list[RemoteBatchJob]:  # fmt: skip
        """Batch jobs of every site (or ``site``), in a state (or several), with these ids, or only
        those you asked for (``mine``), oldest first; requests a site has not taken yet, or
        refused, are among them."""
        states = batch_states(state)
        wanted = None if ids is None else [str(i) for i in id_list(ids)]
        rows = self._conn.execute(
            sql.SQL(f"SELECT {_SELECT} FROM balsamd.batch_jobs WHERE true") + _where(site, wanted, "id")
        )
        found = [_from_row(r) for r in rows]
        requests = self._conn.execute(_REQUESTS + _where(site, wanted, "job_id"))
        found += [_from_request(r) for r in requests]
        return [
            RemoteBatchJob(self._conn, batch, at)
            for batch, at in sorted(found, key=lambda pair: (pair[0].created_at, pair[0].id))
            if (states is None or batch.state in states) and (not mine or batch.owner == self._conn.user)
        ]

    def delete(self, batch_jobs: Iterable[str | RemoteBatchJob]) -> list[str]:
        """Ask each batch job's site to remove it (withdrawn if not submitted yet, cancelled if
        queued or running); returns the intents' ids (``intent_outcome`` tells what became of
        each).  Only batch jobs you asked for can be removed."""
        targets = [b if isinstance(b, RemoteBatchJob) else self.get(b) for b in id_list(batch_jobs)]
        foreign = [b.id for b in targets if b.owner != self._conn.user]
        if foreign:
            raise Refused("batch job delete", [
                f"batch job {foreign[0]} was not asked for by {self._conn.user}: only who asked for it may remove it"
            ])  # fmt: skip
        now = time.time()
        made = []
        with self._conn.pg.transaction(), self._conn.pg.cursor() as cur:
            for batch in targets:
                intent_id = ids.new_id()
                cur.execute(
                    "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (intent_id, batch.site, str(IntentKind.BATCH_DELETE), batch.id, Jsonb({}), now),
                )
                made.append(intent_id)
        return made

    def intent_outcome(self, intent_id: str) -> IntentOutcome | None:
        """What the site made of a delete; None while it has not applied it."""
        return self._conn.jobs.intent_outcome(intent_id)
