"""Transfer items and tasks in the site store: what the transfer service asks and records.

Items are written with their job (``insert_items``), taken in tasks (``start_transfer_task``,
recorded before a backend runs the task), and finished with the backend's results
(``finish_transfer_task``), which moves jobs on or fails them in the same transaction.
"""

from __future__ import annotations

import operator
import posixpath
import typing
from typing import Any

import apsw
import msgspec

from balsamd import lifecycle
from balsamd.models import App, Job
from balsamd.states import JobState
from balsamd.store.base import StoreBase, now_or
from balsamd.store.db import LIMIT_PARAM
from balsamd.store.sql import all_rows, value
from balsamd.store.transitions import Move, apply_moves, load_states
from balsamd.transfers.backend import Direction, ItemResult
from balsamd.transfers.filters import ordered_counts
from balsamd.transfers.locations import split_item
from balsamd.transfers.records import (
    ITEM_COLUMNS,
    TransferBacklog,
    TransferFilter,
    TransferItem,
    TransferOutcome,
    TransferTask,
)
from balsamd.validate import Refused, limit_problem

S = JobState
_FROM = "FROM transfer_items t JOIN jobs j ON j.id = t.job_id"
# a read of items: each its row, and its job's workdir and owner, as one JSON document SQLite
# builds in one step (each row stepped from Python is a GIL handover with the threads placing
# files, and msgspec builds items from JSON faster than from tuples)
_READ = ", ".join([*(f"t.{c}" for c in ITEM_COLUMNS), "j.workdir", "j.owner"])
_ITEM_DOCUMENT = "json_object({})".format(", ".join([
    *(f"'{c}', json(iif({c}, 'true', 'false'))" if c == "recursive" else f"'{c}', {c}" for c in ITEM_COLUMNS),
    "'workdir', workdir", "'owner', owner",
]))  # fmt: skip
_items_decode = msgspec.json.Decoder(list[TransferItem]).decode
# the state a job waits in for its items of each direction
_WAITS_SQL = "CASE t.direction WHEN 'in' THEN 'READY' ELSE 'POSTPROCESSED' END"
_WAITING_STATES = ", ".join(f"'{s.waits_in}'" for s in lifecycle.STAGES)
# the items due, a direction at a time, at most ?2 each: pending and past their backoff (?1), of
# the jobs waiting for them, oldest jobs first.  Found from the waiting jobs (an index of states,
# in the order the jobs were made) and each one's own items, never from all pending items: an
# outbound item is pending from its job's creation on, and a campaign's million of them would
# be read again at every step of the service
_DUE = " UNION ALL ".join(
    f"SELECT * FROM (SELECT {_READ} FROM jobs j INDEXED BY jobs_state "
    f"JOIN transfer_items t INDEXED BY sqlite_autoindex_transfer_items_1 ON t.job_id = j.id "
    f"WHERE j.state = '{stage.waits_in}' AND t.direction = '{stage.direction}' AND t.state = 'pending' "
    f"AND t.not_before <= ?1 ORDER BY j.rowid LIMIT CAST(?2 AS INTEGER))"
    for stage in lifecycle.STAGES
)
MAX_ERROR = 2000  # characters of a backend's message kept (the end, where the cause is)
MAX_BYTES = 2**63 - 1  # the largest integer SQLite keeps as one: a larger size would be read back as a float
MAX_TASK_ID = 64


_by_id = operator.attrgetter("id")


def _read_items(conn: apsw.Connection, where: str, params: list[Any], limit: int | None = None) -> list[TransferItem]:
    """The items ``where`` (a WHERE clause of ``_FROM``) selects, by id, at most ``limit``."""
    chosen = f"SELECT {_READ} {_FROM}{where} ORDER BY t.id"
    if limit is not None:
        chosen += f" {LIMIT_PARAM}"
        params = [*params, limit]
    # the aggregate's order is SQLite's to choose: sorted here, where it costs least
    items = _items_decode(value(conn, f"SELECT json_group_array({_ITEM_DOCUMENT}) FROM ({chosen})", params))
    items.sort(key=_by_id)
    return items


def insert_items(conn: apsw.Connection, jobs: list[Job], apps: dict[str, App], now: float, seq: int) -> None:
    """Write the items of new, checked jobs: a slot's file in the workdir is its ``local_path``,
    else the item's file name."""
    rows = []
    for job in jobs:
        slots = apps[job.app].transfers
        for slot, item in job.transfers.items():
            spec = slots[slot]
            location, path = split_item(item)
            local = spec.local_path or posixpath.basename(posixpath.normpath(path))
            rows.append((job.id, slot, spec.direction, location, path, local, int(spec.recursive), now, seq))
    conn.executemany(
        "INSERT INTO transfer_items (job_id, slot, direction, location, path, local_path, recursive, updated_at, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def reset_items(conn: apsw.Connection, job_ids: list[str], now: float, seq: int) -> dict[str, str]:
    """Make the failed and cancelled items of retried jobs pending again, with fresh tries.
    Returns, for each job with a failed item, the direction it failed (where it goes back to)."""
    ids = msgspec.json.encode(job_ids).decode()
    failed = dict(
        all_rows(
            conn,
            "SELECT job_id, MIN(direction) FROM transfer_items WHERE state = 'failed' "
            "AND job_id IN (SELECT value FROM json_each(?)) GROUP BY job_id",
            (ids,),
        )
    )
    conn.execute(
        "UPDATE transfer_items SET state = 'pending', task_id = NULL, attempts = 0, not_before = 0, error = '', "
        "updated_at = ?, seq = ? WHERE state IN ('failed', 'cancelled') AND job_id IN (SELECT value FROM json_each(?))",
        (now, seq, ids),
    )
    return failed


def delete_items(conn: apsw.Connection, job_ids_json: str) -> None:
    conn.execute("DELETE FROM transfer_items WHERE job_id IN (SELECT value FROM json_each(?))", (job_ids_json,))


class TransferStoreMixin(StoreBase):
    """The transfer service's operations of the site store."""

    def transfer_work(self, limit: int, now: float | None = None) -> list[TransferItem]:
        problem = limit_problem(limit)
        if problem:
            raise Refused("transfer_work", [problem])
        with self.db.read() as conn:
            items = _items_decode(value(conn, f"SELECT json_group_array({_ITEM_DOCUMENT}) FROM ({_DUE})",
                                        (now_or(now), limit)))  # fmt: skip
        items.sort(key=_by_id)
        return items[:limit]

    def start_transfer_task(
        self, task_id: str, direction: Direction, location: str, item_ids: list[int], now: float | None = None
    ) -> TransferTask:
        problems = _task_problems(task_id, direction)
        if problems:
            raise Refused("transfer task", problems)
        now = now_or(now)
        with self.db.write() as conn:
            seq = self.db.next_seq(conn)
            conn.execute(
                "UPDATE transfer_items SET state = 'active', task_id = ?, updated_at = ?, seq = ? "
                "WHERE id IN (SELECT value FROM json_each(?)) AND state = 'pending' AND direction = ? "
                "AND location = ? AND (SELECT j.state FROM jobs j WHERE j.id = transfer_items.job_id) = "
                + _WAITS_SQL.replace("t.", "transfer_items."),
                (task_id, now, seq, msgspec.json.encode(item_ids).decode(), direction, location),
            )
            bound = conn.changes()
            if bound:
                conn.execute(
                    "INSERT INTO transfer_tasks (id, direction, location, state, created_at) "
                    "VALUES (?, ?, ?, 'active', ?)",
                    (task_id, direction, location, now),
                )
            items = self._task_items(conn, task_id) if bound else []
        return TransferTask(id=task_id, direction=direction, location=location, created_at=now, items=items)

    def transfer_external_id(self, task_id: str, external_id: str) -> None:
        if not isinstance(external_id, str) or not 0 < len(external_id) <= 256:
            raise Refused("transfer task", ["external_id must be 1 to 256 characters"])
        with self.db.write() as conn:
            conn.execute("UPDATE transfer_tasks SET external_id = ? WHERE id = ?", (external_id, task_id))

    def transfer_items_done(self, task_id: str, results: list[ItemResult], now: float | None = None) -> TransferOutcome:
        unmoved = [n for n, r in enumerate(results) if not r.ok]
        if unmoved:
            raise Refused("transfer items", [
                f"results[{unmoved[0]}] (item {results[unmoved[0]].item_id}) and {len(unmoved) - 1} more are not "
                "moved (ok is false); give only moved items here: a failure is recorded when its task finishes"
            ])  # fmt: skip
        _check_sizes(results)
        now = now_or(now)
        out = TransferOutcome()
        given = {r.item_id: max(r.bytes, 0) for r in results}
        with self.db.write() as conn:
            direction = _active_direction(conn, task_id)
            if direction is None or not given:
                return out
            stage = lifecycle.STAGE_OF[direction]
            seq = self.db.next_seq(conn)
            # one statement each, not a step per item: each step is a GIL handover with the
            # threads placing the task's files.  "+task_id": the rows are found by the ids
            # given (and then by this transaction's seq), not through the task's whole index
            conn.execute(
                "UPDATE transfer_items SET state = 'done', bytes = g.value ->> 1, error = '', not_before = 0, "
                "updated_at = ?, seq = ? FROM json_each(?) AS g "
                "WHERE transfer_items.id = g.value ->> 0 AND +task_id = ? AND state = 'active'",
                (now, seq, msgspec.json.encode(list(given.items())).decode(), task_id),
            )
            if not conn.changes():  # recorded before (a resent answer)
                return out
            job_ids = value(conn, "SELECT json_group_array(job_id) FROM transfer_items WHERE seq = ? AND +task_id = ?",
                            (seq, task_id))  # fmt: skip
            moves = self._stage_done(conn, stage, _job_states(conn, set(msgspec.json.decode(job_ids))), set())
            out.moved = [m.job_id for m in moves]
            if moves:
                apply_moves(conn, moves, self._hooks(conn), now, seq)
        return out

    def finish_transfer_task(
        self, task_id: str, results: list[ItemResult], max_attempts: int, backoff_s: float, now: float | None = None
    ) -> TransferOutcome:
        _check_sizes(results)
        now = now_or(now)
        out = TransferOutcome()
        given = {r.item_id: r for r in results}
        with self.db.write() as conn:
            direction = _active_direction(conn, task_id)
            if direction is None:  # finished before (a resent answer): nothing to do again
                return out
            stage = lifecycle.STAGE_OF[direction]
            seq = self.db.next_seq(conn)
            # only what deciding needs: a task's items are read once more here, as many as it has
            # (less those recorded done while it ran)
            items = all_rows(conn, "SELECT id, job_id, attempts, slot, location, path FROM transfer_items "
                                   "WHERE task_id = ? AND state = 'active' ORDER BY id", (task_id,))  # fmt: skip
            states = _job_states(conn, {i[1] for i in items})
            updates: list[tuple[str, str | None, int, float, int, str, int]] = []
            failures: dict[str, str] = {}
            for item_id, job_id, attempts, slot, location, path in items:
                result = given.get(item_id)
                if result is not None and result.ok:
                    updates.append(("done", task_id, attempts, 0.0, max(result.bytes, 0), "", item_id))
                    continue
                error = result.error[-MAX_ERROR:] if result else "no result was given for it"
                error = error or "failed without a message"
                tries = attempts + 1
                if states.get(job_id, (None, ""))[0] != stage.waits_in:
                    updates.append(("cancelled", None, tries, 0.0, 0, error, item_id))
                elif tries < max_attempts:
                    retry_at = now + backoff_s * 2 ** (tries - 1)
                    updates.append(("pending", None, tries, retry_at, 0, error, item_id))
                    out.retrying.append(item_id)
                else:
                    updates.append(("failed", task_id, tries, 0.0, 0, error, item_id))
                    failures.setdefault(
                        job_id,
                        f"stage-{stage.direction} of {slot} ({location}:{path}) failed after {tries} tries: {error}",
                    )
            conn.executemany(
                "UPDATE transfer_items SET state = ?1, task_id = ?2, attempts = ?3, not_before = ?4, bytes = ?5, "
                "error = ?6, updated_at = ?8, seq = ?9 WHERE id = ?7",
                [(*u, now, seq) for u in updates],
            )
            conn.execute("UPDATE transfer_tasks SET state = 'done', ended_at = ? WHERE id = ?", (now, task_id))
            moves = [
                Move(job_id, stage.waits_in, states[job_id][1], S.FAILED, reason)
                for job_id, reason in failures.items()
                if states[job_id][0] == stage.waits_in
            ]
            out.failed = {m.job_id: m.reason for m in moves}
            moves += self._stage_done(conn, stage, states, set(failures))
            out.moved = [m.job_id for m in moves if m.job_id not in out.failed]
            if moves:
                apply_moves(conn, moves, self._hooks(conn), now, seq)
        return out

    def _stage_done(
        self, conn: apsw.Connection, stage: lifecycle.Stage, states: dict[str, tuple[JobState, str]], failed: set[str]
    ) -> list[Move]:
        """Moves of the jobs waiting for this stage whose items that way are all done."""
        waiting = [i for i, (state, _) in states.items() if state == stage.waits_in and i not in failed]
        held = {
            job_id
            for (job_id,) in conn.execute(
                "SELECT DISTINCT job_id FROM transfer_items WHERE direction = ? AND state != 'done' "
                "AND job_id IN (SELECT value FROM json_each(?))",
                (stage.direction, msgspec.json.encode(waiting).decode()),
            )
        }
        return [Move(i, stage.waits_in, states[i][1], stage.next) for i in waiting if i not in held]

    def transfer_tasks(self) -> list[TransferTask]:
        with self.db.read() as conn:
            tasks = all_rows(
                conn,
                "SELECT id, direction, location, created_at, external_id FROM transfer_tasks "
                "WHERE state = 'active' ORDER BY created_at",
            )
            return [
                TransferTask(id=i, direction=d, location=loc, created_at=c, external_id=e,
                             items=self._task_items(conn, i))
                for i, d, loc, c, e in tasks
            ]  # fmt: skip

    def transfers(self, f: TransferFilter | None = None) -> list[TransferItem]:
        f = f or TransferFilter()
        problem = limit_problem(f.limit)
        if problem:
            raise Refused("transfers", [problem])
        where, params = _where(f)
        with self.db.read() as conn:
            return _read_items(conn, where, params, f.limit)

    def transfer_counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            found = dict(all_rows(conn, "SELECT state, COUNT(*) FROM transfer_items GROUP BY state"))
        return ordered_counts(found)

    def transfer_backlog(self) -> dict[str, TransferBacklog]:
        with self.db.read() as conn:
            # from the jobs waiting (an index of states), not from the pending items: an
            # outbound item is pending from its job's creation on
            rows = all_rows(
                conn,
                "SELECT t.direction, COUNT(*), MIN(t.updated_at) FROM jobs j CROSS JOIN transfer_items t "
                f"ON t.job_id = j.id WHERE j.state IN ({_WAITING_STATES}) AND t.state = 'pending' "
                f"AND j.state = {_WAITS_SQL} GROUP BY 1 ORDER BY 1",
            )
        return {direction: TransferBacklog(items=n, since=since) for direction, n, since in rows}

    @staticmethod
    def _task_items(conn: apsw.Connection, task_id: str) -> list[TransferItem]:
        return _read_items(conn, " WHERE t.task_id = ? AND t.state = 'active'", [task_id])


def _active_direction(conn: apsw.Connection, task_id: str) -> Direction | None:
    """The direction of the task ``task_id`` if it is recorded and not finished."""
    row = conn.execute("SELECT direction FROM transfer_tasks WHERE id = ? AND state = 'active'", (task_id,)).fetchone()
    return None if row is None else typing.cast(Direction, row[0])


def _job_states(conn: apsw.Connection, job_ids: set[str]) -> dict[str, tuple[JobState, str]]:
    """The state and app of each of the jobs."""
    return {job_id: (state, app) for job_id, (state, app, _) in load_states(conn, list(job_ids)).items()}


def _check_sizes(results: list[ItemResult]) -> None:
    """Refuse results whose size the store cannot keep as a whole number."""
    over = [n for n, r in enumerate(results) if r.bytes > MAX_BYTES]
    if over:
        first = results[over[0]]
        raise Refused("transfer items", [
            f"results[{over[0]}] (item {first.item_id}) and {len(over) - 1} more give more than {MAX_BYTES} bytes "
            f"({first.bytes}); give the size moved"
        ])  # fmt: skip


def _task_problems(task_id: str, direction: Direction) -> list[str]:
    problems = []
    if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_TASK_ID or not task_id.isprintable():
        problems.append(f"task_id must be 1 to {MAX_TASK_ID} printable characters")
    if direction not in lifecycle.STAGE_OF:
        problems.append(f"direction {direction!r:.20} must be 'in' or 'out'")
    return problems


def _where(f: TransferFilter) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    if f.states:
        parts.append(f"t.state IN ({', '.join('?' * len(f.states))})")
        params.extend(str(s) for s in f.states)
    if f.job_ids is not None:
        parts.append("t.job_id IN (SELECT value FROM json_each(?))")
        params.append(msgspec.json.encode(f.job_ids).decode())
    for column in ("task_id", "direction", "location"):
        if getattr(f, column) is not None:
            parts.append(f"t.{column} = ?")
            params.append(getattr(f, column))
    return (" WHERE " + " AND ".join(parts)) if parts else "", params
