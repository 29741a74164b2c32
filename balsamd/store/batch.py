"""Batch jobs in the site store, and the backlog figures the elastic queue sizes itself by."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from balsamd.models import BATCH_TRANSITIONS, BatchJob, BatchJobState
from balsamd.store.db import BATCH_COLUMNS, Database, batch_job_from_row, json_text
from balsamd.store.errors import StoreError
from balsamd.store.schema import RUNNABLE_SQL


class BacklogStats(msgspec.Struct, kw_only=True):
    """Runnable work as the elastic queue sees it, split by what the queue's limits allow."""

    runnable: int = 0
    runnable_footprint: float = 0.0  # sum of num_nodes / node_packing_count of those that fit
    unfit: int = 0  # runnable jobs no batch job within the limits could ever run
    running_footprint: float = 0.0
    largest_nodes: int = 0  # widest runnable job that fits


class BatchStoreMixin:
    """Batch-job methods of SiteStore (kept in their own module; they share its Database)."""

    db: Database

    def create_batch_job(self, batch: BatchJob, now: float | None = None) -> BatchJob:
        now = time.time() if now is None else now
        batch.state, batch.created_at = BatchJobState.PENDING_SUBMISSION, now
        with self.db.write() as conn:
            seq = self.db.next_seq(conn)
            row = _row(batch)
            conn.execute(
                f"INSERT INTO batch_jobs ({BATCH_COLUMNS}, seq) VALUES ({', '.join('?' * (len(row) + 1))})",
                (*row, seq),
            )
        return batch

    def batch_jobs(self, states: list[BatchJobState] | None = None) -> list[BatchJob]:
        sql = f"SELECT {BATCH_COLUMNS} FROM batch_jobs"
        params: list[Any] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' * len(states))})"
            params = [str(s) for s in states]
        with self.db.read() as conn:
            return [batch_job_from_row(r) for r in conn.execute(sql + " ORDER BY id", params)]

    def get_batch_job(self, batch_id: str) -> BatchJob:
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batch_jobs WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise StoreError(f"no batch job with id {batch_id} (list them with `balsamd queue ls`)")
        return batch_job_from_row(row)

    def update_batch_job(
        self,
        batch_id: str,
        state: BatchJobState | None = None,
        expect: BatchJobState | None = None,
        **fields: Any,
    ) -> BatchJob:
        """Change a batch job's state (checked against the batch transition table) and fields.

        With ``expect``, nothing happens unless the batch job is still in that state (a user
        may have asked to delete it while the scheduler service was submitting it).
        """
        allowed = {"scheduler_id", "status_info", "start_time", "end_time"}
        if set(fields) - allowed:
            raise ValueError(f"batch job fields {sorted(set(fields) - allowed)} cannot be updated")
        with self.db.write() as conn:
            row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batch_jobs WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise StoreError(f"no batch job with id {batch_id} (list them with `balsamd queue ls`)")
            batch = batch_job_from_row(row)
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
            row = conn.execute(f"SELECT {BATCH_COLUMNS} FROM batch_jobs WHERE id = ?", (batch_id,)).fetchone()
        return batch_job_from_row(row)

    def remove_batch_job(self, batch_id: str) -> BatchJob:
        """A user's removal: never submitted -> finished at once; queued or running -> pending
        deletion, which the scheduler service cancels."""
        batch = self.get_batch_job(batch_id)
        if batch.state == BatchJobState.PENDING_SUBMISSION:
            return self.update_batch_job(
                batch_id, BatchJobState.FINISHED, BatchJobState.PENDING_SUBMISSION, status_info="removed by user"
            )
        if batch.state in (BatchJobState.QUEUED, BatchJobState.RUNNING):
            return self.update_batch_job(batch_id, BatchJobState.PENDING_DELETION, status_info="removal requested")
        if batch.state == BatchJobState.PENDING_DELETION:
            return batch
        raise StoreError(f"batch job {batch_id} has already ended ({batch.state}); nothing to remove")

    def backlog_stats(self, max_nodes: int, max_wall_time_min: float, filter_tags: dict[str, str]) -> BacklogStats:
        tag_sql = "".join(" AND id IN (SELECT job_id FROM job_tags WHERE key = ? AND value = ?)" for _ in filter_tags)
        tag_params = [x for kv in sorted(filter_tags.items()) for x in kv]
        fits = "num_nodes <= ? AND wall_time_min <= ?"
        with self.db.read() as conn:
            runnable, footprint, largest = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(num_nodes * 1.0 / node_packing_count), 0), COALESCE(MAX(num_nodes), 0) "
                f"FROM jobs WHERE state IN {RUNNABLE_SQL} AND {fits}{tag_sql}",
                (max_nodes, max_wall_time_min, *tag_params),
            ).fetchone()
            unfit = conn.execute(
                f"SELECT COUNT(*) FROM jobs WHERE state IN {RUNNABLE_SQL} AND NOT ({fits}){tag_sql}",
                (max_nodes, max_wall_time_min, *tag_params),
            ).fetchone()[0]
            running = conn.execute(
                "SELECT COALESCE(SUM(num_nodes * 1.0 / node_packing_count), 0) FROM jobs WHERE state = 'RUNNING'"
            ).fetchone()[0]
        return BacklogStats(
            runnable=runnable, runnable_footprint=footprint, unfit=unfit, running_footprint=running,
            largest_nodes=largest,
        )  # fmt: skip


def _row(batch: BatchJob) -> tuple[Any, ...]:
    values = []
    for name in BATCH_COLUMNS.split(", "):
        value = getattr(batch, name)
        if name == "filter_tags":
            value = json_text(value)
        elif name in ("state", "job_mode"):
            value = str(value)
        values.append(value)
    return tuple(values)
