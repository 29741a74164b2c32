"""The apsw connection, the one write-transaction helper, and row <-> Struct codecs."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw
import msgspec

from balsamd.diskspace import FULL_ERRNOS, is_full, out_of_space
from balsamd.models import (
    BATCH_COLUMNS,
    BATCH_JSON_COLUMNS,
    JOB_COLUMNS,
    JSON_COLUMNS,
    App,
    BatchJob,
    Event,
    Job,
    Session,
)
from balsamd.states import JobState
from balsamd.store.errors import DiskFull
from balsamd.store.schema import migrate
from balsamd.store.sql import value

# Many launchers and CLI commands may wait on the write lock at once; each write is short,
# so a long timeout only matters under heavy contention and beats failing a claim.
BUSY_TIMEOUT_MS = 60_000
# SQLite reads a bound LIMIT's value when it plans a statement, so "LIMIT ?" is prepared again
# on every execution (a sixth of a single claim); the cast keeps the value out of the plan.
LIMIT_PARAM = "LIMIT CAST(? AS INTEGER)"

_json_encode = msgspec.json.Encoder().encode
_json_decoder = msgspec.json.Decoder().decode
_app_encode = msgspec.msgpack.Encoder().encode
_app_decode = msgspec.msgpack.Decoder(App).decode

JOB_SELECT = ", ".join(JOB_COLUMNS)
# a job row as one JSON value SQLite builds (containers are JSON already; JSON has no bytes,
# so the result travels as hex beside it): decoded by msgspec at once, many rows in one step
_JOB_DOCUMENT = "json_array(json_object({}), hex(result))".format(
    ", ".join(f"'{c}', json({c})" if c in JSON_COLUMNS else f"'{c}', {c}" for c in JOB_COLUMNS if c != "result")
)


class _JobDoc(msgspec.Struct, array_like=True):
    job: Job
    result: str | None


_docs_decode = msgspec.json.Decoder(list[_JobDoc]).decode


def jobs_document(conn: apsw.Connection, rowids_json: str) -> str:
    """The jobs whose rowids are in the JSON array ``rowids_json`` (valid only within the
    transaction that found them), in no particular order, as one JSON document for
    ``decode_jobs``.

    For batches (a claim): each row stepped from Python is a GIL handover, and building Jobs
    from tuples costs more than msgspec decoding them.  A claim's server passes it on as it is."""
    doc = value(
        conn,
        f"SELECT json_group_array({_JOB_DOCUMENT}) FROM jobs WHERE rowid IN (SELECT value FROM json_each(?))",
        (rowids_json,),
    )
    return doc


def select_jobs(conn: apsw.Connection, where: str, params: Sequence[Any], limit: int | None = None) -> list[Job]:
    """The jobs ``where`` (a WHERE clause or "") selects, oldest first, at most ``limit``."""
    sql = f"SELECT rowid FROM jobs{where} ORDER BY id"
    if limit is not None:
        sql += f" {LIMIT_PARAM}"
        params = [*params, limit]
    doc = value(conn, f"SELECT json_group_array({_JOB_DOCUMENT} ORDER BY id) FROM jobs WHERE rowid IN ({sql})", params)
    return decode_jobs(doc)


def decode_jobs(doc: str | bytes) -> list[Job]:
    jobs = []
    for d in _docs_decode(doc):
        if d.result:
            d.job.result = bytes.fromhex(d.result)
        jobs.append(d.job)
    return jobs


VALUES_CHUNK = 256  # rows in one multi-row VALUES statement


def values_chunks(flat: list[Any], width: int) -> Iterator[tuple[str, list[Any]]]:
    """Rows of ``width`` values laid end to end in ``flat``, as ``(?, ...), (?, ...)`` clauses
    with their parameters.

    Binding values is cheaper than SQLite extracting them from a JSON document (about a third
    less per event row).  Chunks are VALUES_CHUNK rows, then powers of two: a few statement
    texts repeat, so their prepared statements stay in the connection's cache.
    """
    row = "(" + ", ".join("?" * width) + ")"
    at, left = 0, len(flat) // width
    while left:
        size = VALUES_CHUNK if left >= VALUES_CHUNK else 1 << (left.bit_length() - 1)
        yield ", ".join([row] * size), flat[at * width : (at + size) * width]
        at += size
        left -= size


def event_from_row(row: tuple[Any, ...]) -> Event:
    id_, job_id, src, dst, ts, reason = row
    return Event(
        id=id_, job_id=job_id, from_state=JobState(src) if src else None,
        to_state=JobState(dst), ts=ts, reason=reason,
    )  # fmt: skip


SESSION_COLUMNS = ", ".join(Session.__struct_fields__)


def session_from_row(row: tuple[Any, ...]) -> Session:
    return msgspec.convert(dict(zip(Session.__struct_fields__, row, strict=True)), Session)


BATCH_SELECT = ", ".join(BATCH_COLUMNS)


def batch_job_from_row(row: tuple[Any, ...]) -> BatchJob:
    fields = dict(zip(BATCH_COLUMNS, row, strict=True))
    for name in BATCH_JSON_COLUMNS:
        fields[name] = _json_decoder(fields[name])
    return msgspec.convert(fields, BatchJob)


def encode_app(app: App) -> bytes:
    return _app_encode(app)


def decode_app(blob: bytes) -> App:
    return _app_decode(blob)


def json_text(value: Any) -> str:
    return _json_encode(value).decode()


class Database:
    """One apsw connection to the store file with WAL and a single write helper.

    A write that finds the disk full raises ``DiskFull`` (rolled back whole, like any failed
    write) and touches ``full_mark``: its time is when the store last could not record what it
    was told, heartbeats included, which ``expire_sessions`` reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.full_mark = Path(f"{path}-fullmark")
        # SQLite would make a new store file as the umask allows (often readable by all) and
        # gives its -wal and -shm files the store file's mode: made 0600 here, all three are
        # private.  The mark is made now, while there is room: a full disk may have no inode left.
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
            with contextlib.suppress(FileExistsError):
                fd = os.open(self.full_mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                os.utime(fd, (0, 0))  # never full yet
                os.close(fd)
        except OSError as exc:
            if is_full(exc):
                raise DiskFull(path) from exc
            raise
        self.conn = self._connect()
        self._lock = threading.RLock()
        self._depth = 0
        self._durable = False
        try:
            with self._full_is_disk_full(self.conn):
                migrate(self.conn)
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> apsw.Connection:
        conn = apsw.Connection(str(self.path))
        try:
            with self._full_is_disk_full(conn):
                conn.set_busy_timeout(BUSY_TIMEOUT_MS)
                # the first connection makes the -wal and -shm files, which need room of their own
                conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL is durable across process crashes in WAL mode; only a power loss may
                # drop the last commits, and it never corrupts.  Operations that must survive
                # that too say so in the contract (``durable``) and commit inside ``durable()``.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = OFF")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _full_is_disk_full(self, conn: apsw.Connection) -> Iterator[None]:
        """SQLite's ways of saying the disk is full, as DiskFull: SQLITE_FULL; an I/O error
        whose system error is ENOSPC or EDQUOT (SQLite calls a quota's refusal an I/O error);
        an I/O error or a file it could not open (its -wal or -shm) on a filesystem with no
        block or inode left."""
        try:
            yield
        except apsw.Error as exc:
            if isinstance(exc, apsw.FullError) or (
                isinstance(exc, apsw.IOError | apsw.CantOpenError)
                and (conn.system_errno in FULL_ERRNOS or out_of_space(self.path.parent))
            ):
                raise DiskFull(self.path, noted=self._mark_full()) from exc
            raise

    def _mark_full(self) -> bool:
        """Set ``full_mark``'s time to now; whether it was set.  A file's times live in its
        inode: this needs no space."""
        try:
            fd = os.open(self.full_mark, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.utime(fd)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def full_at(self) -> float | None:
        """When a write last found the store's disk full (any process's), or None if never."""
        try:
            mtime = self.full_mark.stat().st_mtime
        except OSError:
            return None
        return mtime or None

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """The connection closed for the block and opened again after it: a process that
        forks must hold no database open, or the child inherits SQLite's record of its locks."""
        with self._lock:
            if self._depth:
                raise RuntimeError("the store's connection cannot be released inside a transaction")
            # the next connection takes the WAL as it is: a checkpoint now would only cost time
            self.conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
            self.conn.close()
            try:
                yield
            finally:
                self.conn = self._connect()

    @contextlib.contextmanager
    def without_waiting(self) -> Iterator[bool]:
        """Yields True when this thread may use the store at once: nobody else holds it, and
        SQLite gives up at once (BusyError) instead of waiting for another process's lock."""
        if not self._lock.acquire(blocking=False):
            yield False
            return
        try:
            self.conn.set_busy_timeout(0)
            try:
                yield True
            finally:
                self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def durable(self) -> Iterator[None]:
        """Commits in the block are on disk when they return: ``synchronous = FULL`` syncs the
        WAL at each commit, and with it every commit before.  Inside a transaction, or another
        such block, the outermost decides (SQLite refuses the change inside a transaction)."""
        with self._lock:
            if self._depth or self._durable:
                yield
                return
            self.conn.execute("PRAGMA synchronous = FULL")
            self._durable = True
            try:
                yield
            finally:
                self._durable = False
                self.conn.execute("PRAGMA synchronous = NORMAL")

    @contextlib.contextmanager
    def write(self) -> Iterator[apsw.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: the only way to write.

        Inside another write (same thread) it is a savepoint, so one store operation can be
        made part of a larger transaction (applying a synced intent and recording it).  A full
        disk raises DiskFull, with nothing of the transaction written.
        """
        with self._lock:
            if self._depth:
                yield from self._savepoint()
                return
            with self._full_is_disk_full(self.conn):
                self.conn.execute("BEGIN IMMEDIATE")
                self._depth += 1
                try:
                    yield self.conn
                    self.conn.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (it does when the disk is full)
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
                finally:
                    self._depth -= 1

    def _savepoint(self) -> Iterator[apsw.Connection]:
        name = f"sp{self._depth}"
        self.conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # else SQLite rolled back the whole transaction
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self.conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    @contextlib.contextmanager
    def read(self) -> Iterator[apsw.Connection]:
        """A consistent snapshot for multi-statement reads (part of the write, inside one)."""
        with self._lock:
            if self._depth:
                yield self.conn
                return
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            except BaseException:
                # an error may have ended the transaction already: report it, not the COMMIT
                with contextlib.suppress(apsw.Error):
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def next_seq(self, conn: apsw.Connection, counter: str = "seq") -> int:
        return value(conn, "UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", (counter,))

    def close(self) -> None:
        self.conn.close()
