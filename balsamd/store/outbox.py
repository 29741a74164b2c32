"""What sync reads from and writes to the site store.

Every write transaction stamps the rows it changed with the next ``seq``; sync pushes rows
with ``seq`` above its cursor, so nothing written is ever missed.  Cursors live in ``meta``
and move only after the central database committed what they cover.  Intents from central
are applied at most once: each apply and the record of it share one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from balsamd.models import App, BatchJob, Job
from balsamd.states import JobState
from balsamd.store.db import (
    BATCH_COLUMNS,
    JOB_SELECT,
    LIMIT_PARAM,
    Database,
    batch_job_from_row,
    decode_app,
    job_from_row,
    json_text,
)
from balsamd.store.errors import StoreError
from balsamd.validate import resolve_parameters

# store-side cursor names
PUSHED_SEQ = "sync.pushed_seq"
PUSHED_EVENT = "sync.pushed_event"


class OutboxMixin:
    db: Database

    def store_id(self) -> str:
        return self.meta_get("store_id") or ""

    def meta_get(self, key: str) -> str | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def meta_set(self, values: dict[str, str]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def max_seq(self) -> int:
        with self.db.read() as conn:
            return conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0]

    def jobs_changed(self, after_seq: int, limit: int) -> tuple[list[Job], int]:
        """Jobs stamped after ``after_seq``, whole transactions at a time (a transaction's rows
        share one seq), and the seq up to which the batch is complete."""
        rows, top = self.job_rows_changed(after_seq, limit, JOB_SELECT)
        return [job_from_row(r) for r in rows], top

    def job_rows_changed(self, after_seq: int, limit: int, columns: str) -> tuple[list[tuple[Any, ...]], int]:
        """As :meth:`jobs_changed`, but rows of ``columns`` as stored (JSON fields as text):
        what sync sends on without decoding and encoding every job again."""
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {columns}, seq FROM jobs WHERE seq > ? ORDER BY seq, id {LIMIT_PARAM}", (after_seq, limit + 1)
            ).fetchall()
            if len(rows) <= limit:  # every job change is here: complete up to the newest seq
                top = conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()[0]
                return [r[:-1] for r in rows], top
            last = rows[-1][-1]
            complete = [r for r in rows if r[-1] < last]
            if not complete:  # one transaction larger than a batch: take all of it
                complete = conn.execute(
                    f"SELECT {columns}, seq FROM jobs WHERE seq = ? ORDER BY id", (last,)
                ).fetchall()
            return [r[:-1] for r in complete], complete[-1][-1]

    def batch_jobs_changed(self, after_seq: int, up_to_seq: int) -> list[BatchJob]:
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {BATCH_COLUMNS} FROM batch_jobs WHERE seq > ? AND seq <= ? ORDER BY id",
                (after_seq, up_to_seq),
            ).fetchall()
        return [batch_job_from_row(r) for r in rows]

    def jobs_deleted(self, after_seq: int, up_to_seq: int) -> list[str]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id FROM deleted_jobs WHERE seq > ? AND seq <= ? ORDER BY id", (after_seq, up_to_seq)
            ).fetchall()
        return [r[0] for r in rows]

    def apps_changed(self, after_seq: int, up_to_seq: int) -> list[App]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT spec FROM apps WHERE seq > ? AND seq <= ? ORDER BY name", (after_seq, up_to_seq)
            ).fetchall()
        return [decode_app(r[0]) for r in rows]

    def applied_outcome(self, intent_id: str) -> str | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT outcome FROM applied_intents WHERE id = ?", (intent_id,)).fetchone()
        return None if row is None else row[0]

    def apply_intent(self, intent_id: str, action: Callable[[], str], refusals: tuple[type, ...]) -> str:
        """Run ``action`` (a store operation) and record the intent in one transaction.

        An intent applied before returns its recorded outcome and runs nothing; an action that
        raises one of ``refusals`` is recorded as rejected with the reason.
        """
        with self.db.write() as conn:
            row = conn.execute("SELECT outcome FROM applied_intents WHERE id = ?", (intent_id,)).fetchone()
            if row is not None:
                return row[0]
            try:
                with self.db.write():
                    outcome = action()
            except refusals as exc:
                outcome = f"rejected: {exc}"
            conn.execute(
                "INSERT INTO applied_intents (id, outcome, applied_at) VALUES (?, ?, ?)",
                (intent_id, outcome, time.time()),
            )
        return outcome

    def update_job_intent(self, job_id: str, changes: dict[str, Any]) -> None:
        """A user's edit of a job that has not started: parameters, tags or data."""
        editable = {JobState.CREATED, JobState.AWAITING_PARENTS, JobState.READY, JobState.STAGED_IN,
                    JobState.PREPROCESSED, JobState.RESTART_READY}  # fmt: skip
        unknown = set(changes) - {"parameters", "tags", "data"}
        if unknown:
            raise StoreError(f"only parameters, tags and data can be edited, not {sorted(unknown)}")
        if not changes:
            raise StoreError("nothing to edit: give parameters, tags or data")
        for name, value in changes.items():
            if not isinstance(value, dict):
                raise StoreError(f"{name} must be an object (a dict), not {type(value).__name__}")
        if not all(isinstance(v, str) for v in changes.get("tags", {}).values()):
            raise StoreError("tag values must be strings")
        with self.db.write() as conn:
            row = conn.execute("SELECT state, session_id, app FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise StoreError(f"no job with id {job_id}")
            if JobState(row[0]) not in editable or row[1] is not None:
                raise StoreError(f"job {job_id} is {row[0]}; only jobs that have not started can be edited")
            if "parameters" in changes:
                app = self.apps().get(row[2])
                if app is None:
                    raise StoreError(f"job {job_id}: its app {row[2]} is no longer registered")
                params, problems = resolve_parameters(app, changes["parameters"])
                if problems:
                    raise StoreError(f"job {job_id}: " + "; ".join(problems))
                changes = {**changes, "parameters": params}
            sets = ", ".join(f"{k} = ?" for k in changes)
            seq = self.db.next_seq(conn)
            conn.execute(
                f"UPDATE jobs SET {sets}, version = version + 1, seq = ?, updated_at = ? WHERE id = ?",
                (*(json_text(v) for v in changes.values()), seq, time.time(), job_id),
            )
            if "tags" in changes:
                conn.execute("DELETE FROM job_tags WHERE job_id = ?", (job_id,))
                conn.executemany(
                    "INSERT INTO job_tags (key, value, job_id) VALUES (?, ?, ?)",
                    [(k, v, job_id) for k, v in changes["tags"].items()],
                )
