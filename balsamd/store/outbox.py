"""What sync, and the daemon's cleanup of finished jobs, read from and write to the site store.

Every write transaction stamps the rows it changed with the next ``seq``; sync pushes rows
with ``seq`` above its cursor, so nothing written is ever missed.  Cursors live in ``meta``
and move only after what they cover is done (committed by the central database, cleaned).
"""

from __future__ import annotations

from typing import Any

import apsw
import msgspec

from balsamd.models import App, BatchJob, Job
from balsamd.store.base import StoreBase
from balsamd.store.contract import JobRows, TransferRows
from balsamd.store.db import BATCH_SELECT, JOB_SELECT, LIMIT_PARAM, batch_job_from_row, decode_app, select_jobs
from balsamd.store.sql import all_rows, value
from balsamd.transfers.records import ITEM_COLUMNS
from balsamd.validate import Refused

# store-side cursor names: the only meta keys callers may set
SYNC_KEYS = "sync."
CLEANUP_KEYS = "cleanup."
CURSOR_KEYS = (SYNC_KEYS, CLEANUP_KEYS)
PUSHED_SEQ = "sync.pushed_seq"
PUSHED_EVENT = "sync.pushed_event"
PUSHED_TRANSFER_SEQ = "sync.pushed_transfer_seq"
_ITEM_SELECT = ", ".join(ITEM_COLUMNS)


class OutboxMixin(StoreBase):
    def store_id(self) -> str:
        return self.meta_get("store_id") or ""

    def meta_get(self, key: str) -> str | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def meta_set(self, values: dict[str, str]) -> None:
        # what sync keeps (its cursors); the store's own identity is not for callers to change
        wrong = [k for k in values if not k.startswith(CURSOR_KEYS) or len(k) > 64]
        if wrong:
            raise Refused(
                "meta",
                [
                    f"{k!r} does not start with {' or '.join(map(repr, CURSOR_KEYS))}: only cursors can be set"
                    for k in wrong
                ],
            )
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def max_seq(self) -> int:
        with self.db.read() as conn:
            return value(conn, "SELECT value FROM counters WHERE name = 'seq'")

    def job_rows_changed(self, after_seq: int, limit: int) -> JobRows:
        # rows as stored (containers as JSON text): what sync sends on without decoding and
        # encoding every job again
        with self.db.read() as conn:
            top = value(conn, "SELECT value FROM counters WHERE name = 'seq'")
            rows, complete = _changed(conn, f"SELECT {JOB_SELECT}, seq FROM jobs", after_seq, top, limit)
        return [r[:-1] for r in rows], complete

    def transfer_rows_changed(self, after_seq: int, up_to_seq: int, limit: int) -> TransferRows:
        with self.db.read() as conn:
            return _changed(conn, f"SELECT {_ITEM_SELECT}, seq FROM transfer_items", after_seq, up_to_seq, limit)

    def batch_jobs_changed(self, after_seq: int, up_to_seq: int) -> list[BatchJob]:
        with self.db.read() as conn:
            rows = all_rows(
                conn,
                f"SELECT {BATCH_SELECT} FROM batch_jobs WHERE seq > ? AND seq <= ? ORDER BY id",
                (after_seq, up_to_seq),
            )
        return [batch_job_from_row(r) for r in rows]

    def jobs_deleted(self, after_seq: int, up_to_seq: int) -> list[str]:
        with self.db.read() as conn:
            rows = all_rows(
                conn, "SELECT id FROM deleted_jobs WHERE seq > ? AND seq <= ? ORDER BY id", (after_seq, up_to_seq)
            )
        return [r[0] for r in rows]

    def jobs_finished(self, after_seq: int, up_to_seq: int, apps: list[str]) -> list[Job]:
        where = " WHERE seq > ? AND seq <= ? AND state = 'JOB_FINISHED' AND app IN (SELECT value FROM json_each(?))"
        with self.db.read() as conn:
            return select_jobs(conn, where, [after_seq, up_to_seq, msgspec.json.encode(apps).decode()])

    def apps_changed(self, after_seq: int, up_to_seq: int) -> list[App]:
        with self.db.read() as conn:
            rows = all_rows(
                conn, "SELECT spec FROM apps WHERE seq > ? AND seq <= ? ORDER BY name", (after_seq, up_to_seq)
            )
        return [decode_app(r[0]) for r in rows]


def _changed(
    conn: apsw.Connection, select: str, after_seq: int, up_to_seq: int, limit: int
) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of ``select`` (of a table with a ``seq`` and an ``id``, the seq its last column)
    stamped in (``after_seq``, ``up_to_seq``], in seq order, and the seq up to which they are
    complete.  A transaction's rows share one seq, so whole ones go: at most ``limit`` rows, but
    all of one transaction larger than that."""
    if limit < 1:  # none would read as "complete", and the cursor would pass rows never read
        raise Refused("changed rows", [f"limit must be 1 or more (got {limit})"])
    rows = all_rows(
        conn, f"{select} WHERE seq > ? AND seq <= ? ORDER BY seq, id {LIMIT_PARAM}", (after_seq, up_to_seq, limit + 1)
    )
    if len(rows) <= limit:  # every change in the window is here
        return rows, up_to_seq
    last = rows[-1][-1]
    complete = [r for r in rows if r[-1] < last]
    if not complete:  # one transaction larger than a batch: take all of it
        complete = all_rows(conn, f"{select} WHERE seq = ? ORDER BY id", (last,))
    return complete, complete[-1][-1]
