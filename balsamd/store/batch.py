"""Batch jobs in the site store, and the backlog figures the elastic queue sizes itself by."""

from __future__ import annotations

from typing import Any

import apsw
import msgspec

from balsamd.models import BATCH_ACTIVE, BATCH_TRANSITIONS, BatchJob, BatchJobState, batch_row
from balsamd.store.base import StoreBase, now_or
from balsamd.store.db import BATCH_SELECT, batch_job_from_row
from balsamd.store.errors import StoreError
from balsamd.store.queries import tag_conditions
from balsamd.store.schema import RUNNABLE_SQL
from balsamd.store.sql import one, value
from balsamd.validate import Refused, batch_problems, batch_update_problems


class BacklogStats(msgspec.Struct, kw_only=True):
    """Runnable work as the elastic queue sees it, split by what the queue's limits allow."""

    runnable: int = 0
    runnable_footprint: float = 0.0  # sum of num_nodes / node_packing_count of those that fit
    unfit: int = 0  # runnable jobs no batch job within the limits could ever run
    running_footprint: float = 0.0
    largest_nodes: int = 0  # widest runnable job that fits


class BatchStoreMixin(StoreBase):
    """Batch-job operations of the site store."""

    def create_batch_job(self, batch: BatchJob, now: float | None = None) -> BatchJob:
        return self._create_batch_job(batch, "", now)

    def _create_batch_job(self, batch: BatchJob, owner: str, now: float | None) -> BatchJob:
        """Record a checked request as pending submission, asked for by ``owner`` (a central
        user, or "" for the site's owner, whoever the record names)."""
        now = now_or(now)
        batch = msgspec.structs.replace(batch, state=BatchJobState.PENDING_SUBMISSION, created_at=now,
                                        scheduler_id=None, status_info="", start_time=None, end_time=None,
                                        owner=owner)  # fmt: skip
        with self.db.write() as conn:
            active = value(
                conn,
                f"SELECT COUNT(*) FROM batch_jobs WHERE state IN ({', '.join('?' * len(BATCH_ACTIVE))})",
                [str(s) for s in BATCH_ACTIVE],
            )
            problems = batch_problems(batch, self.rules, active)
            if problems:
                raise Refused("batch job refused", problems)
            seq = self.db.next_seq(conn)
            row = batch_row(batch)
            try:
                conn.execute(
                    f"INSERT INTO batch_jobs ({BATCH_SELECT}, seq) VALUES ({', '.join('?' * (len(row) + 1))})",
                    (*row, seq),
                )
            except apsw.ConstraintError:
                raise StoreError(f"a batch job with id {batch.id} exists already; give it another id") from None
        return batch

    def batch_jobs(self, states: list[BatchJobState] | None = None) -> list[BatchJob]:
        sql = f"SELECT {BATCH_SELECT} FROM batch_jobs"
        params: list[Any] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' * len(states))})"
            params = [str(s) for s in states]
        with self.db.read() as conn:
            return [batch_job_from_row(r) for r in conn.execute(sql + " ORDER BY id", params)]

    def get_batch_job(self, batch_id: str) -> BatchJob:
        with self.db.read() as conn:
            return _load(conn, batch_id)

    def update_batch_job(
        self, batch_id: str, state: BatchJobState | None = None, expect: BatchJobState | None = None,
        scheduler_id: str | None = None, status_info: str | None = None, start_time: float | None = None,
        end_time: float | None = None,
    ) -> BatchJob:  # fmt: skip
        problems = batch_update_problems(scheduler_id, status_info, (start_time, end_time))
        if problems:
            raise Refused(f"batch job {batch_id}", problems)
        given = {"scheduler_id": scheduler_id, "status_info": status_info, "start_time": start_time,
                 "end_time": end_time}  # fmt: skip
        fields: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        with self.db.write() as conn:
            batch = _load(conn, batch_id)
            if expect is not None and batch.state != expect:
                return batch
            if state is not None and state != batch.state:
                if state not in BATCH_TRANSITIONS[batch.state]:
                    raise StoreError(f"batch job {batch_id} is {batch.state}; it cannot become {state}")
                fields["state"] = str(state)
            if not fields:
                return batch
            sets = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(
                f"UPDATE batch_jobs SET {sets}, seq = ? WHERE id = ?",
                (*fields.values(), self.db.next_seq(conn), batch_id),
            )
            return _load(conn, batch_id)

    def remove_batch_job(self, batch_id: str) -> BatchJob:
        with self.db.write():
            batch = self.get_batch_job(batch_id)
            if batch.state == BatchJobState.PENDING_SUBMISSION:
                return self.update_batch_job(batch_id, BatchJobState.FINISHED, status_info="removed by user")
            if batch.state in (BatchJobState.QUEUED, BatchJobState.RUNNING):
                return self.update_batch_job(batch_id, BatchJobState.PENDING_DELETION, status_info="removal requested")
            if batch.state == BatchJobState.PENDING_DELETION:
                return batch
        raise StoreError(f"batch job {batch_id} has already ended ({batch.state}); nothing to remove")

    def backlog_stats(self, max_nodes: int, max_wall_time_min: float, filter_tags: dict[str, str]) -> BacklogStats:
        conditions, tag_params = tag_conditions(filter_tags)
        tag_sql = "".join(f" AND {c}" for c in conditions)
        fits = "num_nodes <= ? AND wall_time_min <= ?"
        with self.db.read() as conn:
            runnable, footprint, largest = one(
                conn,
                "SELECT COUNT(*), COALESCE(SUM(num_nodes * 1.0 / node_packing_count), 0), COALESCE(MAX(num_nodes), 0) "
                f"FROM jobs WHERE state IN {RUNNABLE_SQL} AND {fits}{tag_sql}",
                (max_nodes, max_wall_time_min, *tag_params),
            )
            unfit = value(
                conn,
                f"SELECT COUNT(*) FROM jobs WHERE state IN {RUNNABLE_SQL} AND NOT ({fits}){tag_sql}",
                (max_nodes, max_wall_time_min, *tag_params),
            )
            running = value(
                conn, "SELECT COALESCE(SUM(num_nodes * 1.0 / node_packing_count), 0) FROM jobs WHERE state = 'RUNNING'"
            )
        return BacklogStats(
            runnable=runnable, runnable_footprint=footprint, unfit=unfit, running_footprint=running,
            largest_nodes=largest,
        )  # fmt: skip


def _load(conn: apsw.Connection, batch_id: str) -> BatchJob:
    row = conn.execute(f"SELECT {BATCH_SELECT} FROM batch_jobs WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        raise StoreError(f"no batch job with id {batch_id} (list them with `balsamd queue ls`)")
    return batch_job_from_row(row)
