"""The site store contract: every operation on jobs, apps, sessions and events.

Each public method is one transaction (``BEGIN IMMEDIATE`` for writes) and says what it does
atomically.  Methods take ``now`` so callers and tests control the clock.
"""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import msgspec

from balsamd import ids, lifecycle
from balsamd.models import App, ClaimLimits, Event, Job, Session, SessionState, StateUpdate
from balsamd.states import RETRYABLE, IllegalTransition, JobState, is_allowed
from balsamd.store import queries
from balsamd.store.batch import BatchStoreMixin
from balsamd.store.db import (
    JOB_COLUMNS,
    JOB_SELECT,
    LIMIT_PARAM,
    SESSION_COLUMNS,
    Database,
    decode_app,
    decode_jobs,
    encode_app,
    event_from_row,
    job_from_row,
    job_to_row,
    jobs_document,
    json_text,
    session_from_row,
)
from balsamd.store.errors import JobNotFound, SessionGone, StoreError
from balsamd.store.outbox import OutboxMixin
from balsamd.store.queries import JobFilter
from balsamd.store.transitions import MAX_STEPS, Move, apply_moves, direct_children, load_states

S = JobState


class UpdateOutcome(msgspec.Struct, kw_only=True):
    applied: list[str] = []
    duplicate: list[str] = []
    rejected: dict[str, str] = {}


class RemoveOutcome(msgspec.Struct, kw_only=True):
    removed: list[str] = []
    refused: dict[str, str] = {}


def _now(now: float | None) -> float:
    return time.time() if now is None else now


__all__ = ["JobNotFound", "RemoveOutcome", "SessionGone", "SiteStore", "StoreError", "UpdateOutcome", "claimed_jobs"]


def claimed_jobs(document: str, limits: ClaimLimits) -> list[Job]:
    """The jobs of a claim's document, in the order its limits ask for."""
    jobs = decode_jobs(document)
    jobs.sort(key=_small_first if limits.order == "small_first" else _long_first)
    return jobs


def _small_first(j: Job) -> tuple[int, str]:
    return j.num_nodes, j.id


def _long_first(j: Job) -> tuple[float, int, str]:
    return -j.wall_time_min, -j.num_nodes, j.id


class SiteStore(BatchStoreMixin, OutboxMixin):
    def __init__(self, path: Path | str) -> None:
        self.db = Database(Path(path))
        self._hooks_version = -1
        self._hooks: dict[str, list[str]] = {}

    def close(self) -> None:
        self.db.close()

    # ----- apps -------------------------------------------------------------------------

    def put_apps(self, apps: Iterable[App], *, replace_all: bool = False, now: float | None = None) -> None:
        """Insert or update app records; with replace_all, drop apps not given."""
        now = _now(now)
        apps = list(apps)
        with self.db.write() as conn:
            seq = self.db.next_seq(conn)
            if replace_all:
                conn.execute(
                    "DELETE FROM apps WHERE name NOT IN (SELECT value FROM json_each(?))",
                    (msgspec.json.encode([a.name for a in apps]).decode(),),
                )
            conn.executemany(
                "INSERT INTO apps (name, spec, seq, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, seq = excluded.seq, "
                "updated_at = excluded.updated_at WHERE spec != excluded.spec",
                [(a.name, encode_app(a), seq, now) for a in apps],
            )
            conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'apps'")

    def apps(self) -> dict[str, App]:
        with self.db.read() as conn:
            return {name: decode_app(spec) for name, spec in conn.execute("SELECT name, spec FROM apps ORDER BY name")}

    def _app_hooks(self, conn) -> dict[str, list[str]]:
        version = conn.execute("SELECT value FROM counters WHERE name = 'apps'").fetchone()[0]
        if version != self._hooks_version:
            self._hooks = {name: decode_app(spec).hooks for name, spec in conn.execute("SELECT name, spec FROM apps")}
            self._hooks_version = version
        return self._hooks

    # ----- jobs: create and read --------------------------------------------------------

    def create_jobs(self, jobs: list[Job], now: float | None = None) -> list[Job]:
        """Insert jobs atomically (all or none) and settle their first states.

        Apps must be registered and parents must exist; a job whose parent failed or was
        killed is created FAILED, one with unfinished parents AWAITING_PARENTS.
        """
        now = _now(now)
        if not jobs:
            return []
        with self.db.write() as conn:
            hooks = self._app_hooks(conn)
            unknown = sorted({j.app for j in jobs} - set(hooks))
            if unknown:
                raise StoreError(
                    f"unknown app {', '.join(unknown)}; known apps: "
                    f"{', '.join(sorted(hooks)) or 'none'} (see `balsamd app ls`)"
                )
            parent_ids = sorted({p for j in jobs for p in j.parent_ids})
            parents = load_states(conn, parent_ids)
            missing = [p for p in parent_ids if p not in parents]
            if missing:
                raise StoreError(f"parent job(s) not found: {', '.join(missing)}")
            seq = self.db.next_seq(conn)
            rows, tags, links, moves = [], [], [], []
            for job in jobs:
                job.state, job.created_at, job.updated_at = S.CREATED, now, now
                # execution belongs to the site: a new job has not been claimed or run
                job.session_id = job.batch_job_id = job.return_code = job.result = None
                job.attempts, job.state_reason, job.version = 0, "", 0
                rows.append(job_to_row(job, seq))
                tags.extend((k, v, job.id) for k, v in job.tags.items())
                links.extend((p, job.id) for p in job.parent_ids)
                parent_states = [parents[p][0] for p in job.parent_ids]
                target = lifecycle.initial_state(parent_states)
                reason = ""
                if target == S.FAILED:
                    bad = next(p for p in job.parent_ids if parents[p][0] in (S.FAILED, S.KILLED))
                    reason = lifecycle.parent_failure_reason(bad, parents[bad][0])
                moves.append(Move(job.id, S.CREATED, job.app, target, reason))
            try:
                conn.executemany(
                    f"INSERT INTO jobs ({JOB_SELECT}, seq) VALUES ({', '.join('?' * (len(JOB_COLUMNS) + 1))})",
                    rows,
                )
            except Exception as exc:
                if "UNIQUE" in str(exc):
                    raise StoreError(f"a job with one of these ids already exists: {exc}") from None
                raise
            conn.executemany("INSERT INTO job_tags (key, value, job_id) VALUES (?, ?, ?)", tags)
            conn.executemany("INSERT OR IGNORE INTO job_parents (parent_id, child_id) VALUES (?, ?)", links)
            finals = apply_moves(conn, moves, hooks, now, seq)
        for job in jobs:
            job.state = finals[job.id]
            job.version = 1
            job.state_reason = (
                next((m.reason for m in moves if m.job_id == job.id), "") if (job.state == S.FAILED) else ""
            )
        return jobs

    def get(self, job_id: str) -> Job:
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {JOB_SELECT} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id} (list jobs with `balsamd job ls`)")
        return job_from_row(row)

    def resolve_id(self, text: str) -> str:
        """A full id from an id or a unique prefix of one (ids are long to type)."""
        prefix = text.strip().upper()
        if not prefix:
            raise JobNotFound("an empty job id names no job; give an id or a prefix of one")
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        if not rows:
            raise JobNotFound(f"no job with id {text} (list jobs with `balsamd job ls`)")
        if len(rows) > 1:
            raise StoreError(f"id prefix {text} matches several jobs; give more characters")
        return rows[0][0]

    def filter(self, f: JobFilter | None = None) -> list[Job]:
        sql, params = queries.select_jobs(f or JobFilter())
        with self.db.read() as conn:
            return [job_from_row(r) for r in conn.execute(sql, params)]

    def count(self, f: JobFilter | None = None) -> int:
        where, params = queries.where_clause(f or JobFilter())
        with self.db.read() as conn:
            return conn.execute(f"SELECT COUNT(*) FROM jobs{where}", params).fetchone()[0]

    def counts_by_state(self, f: JobFilter | None = None) -> dict[str, int]:
        where, params = queries.where_clause(f or JobFilter())
        with self.db.read() as conn:
            rows = conn.execute(f"SELECT state, COUNT(*) FROM jobs{where} GROUP BY state", params)
            found = dict(rows)
        return {str(s): found[str(s)] for s in JobState if s in found}

    def events(self, job_id: str | None = None, after: int = 0, limit: int | None = None) -> list[Event]:
        # a move holds consecutive events: those after ``after`` are in its move or later ones,
        # which the store finds by the move's id (the event id itself is computed)
        sql = "SELECT id, job_id, from_state, to_state, ts, reason FROM events WHERE move > ? AND id > ?"
        params: list[object] = [after - MAX_STEPS, after]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        sql += " ORDER BY move, step"
        if limit is not None:
            sql += f" {LIMIT_PARAM}"
            params.append(limit)
        with self.db.read() as conn:
            return [event_from_row(r) for r in conn.execute(sql, params)]

    # ----- jobs: user-driven changes ----------------------------------------------------

    def set_state(
        self, job_ids: list[str], state: JobState, reason: str = "", now: float | None = None
    ) -> dict[str, JobState]:
        """Move jobs to ``state`` (all or none); IllegalTransition names the first bad one."""
        now = _now(now)
        with self.db.write() as conn:
            current = self._existing(conn, job_ids)
            moves = [Move(i, current[i][0], current[i][1], state, reason) for i in job_ids]
            return apply_moves(conn, moves, self._app_hooks(conn), now, self.db.next_seq(conn))

    def finish_hook(
        self, job_id: str, expected: JobState, state: JobState, reason: str = "",
        data: dict | None = None, now: float | None = None,
    ) -> bool:  # fmt: skip
        """Record a hook's outcome if the job is still where the hook found it (a user may
        have killed it meanwhile); returns whether it was applied."""
        now = _now(now)
        with self.db.write() as conn:
            current = load_states(conn, [job_id]).get(job_id)
            if current is None or current[0] != expected:
                return False
            columns = {} if data is None else {"data": json_text(data)}
            move = Move(job_id, expected, current[1], state, reason, columns)
            apply_moves(conn, [move], self._app_hooks(conn), now, self.db.next_seq(conn))
        return True

    def resolve_waiting(self, limit: int = 1000, now: float | None = None) -> int:
        """Release or fail AWAITING_PARENTS jobs whose parents settled without them noticing
        (e.g. children that arrived later through sync); returns how many moved."""
        now = _now(now)
        with self.db.write() as conn:
            rows = conn.execute(
                "SELECT j.id, j.app, ("
                " SELECT p.id || ' ' || p.state FROM job_parents jp JOIN jobs p ON p.id = jp.parent_id"
                " WHERE jp.child_id = j.id AND p.state IN ('FAILED', 'KILLED') LIMIT 1),"
                " EXISTS (SELECT 1 FROM job_parents jp JOIN jobs p ON p.id = jp.parent_id"
                " WHERE jp.child_id = j.id AND p.state != 'JOB_FINISHED')"
                f" FROM jobs j WHERE j.state = 'AWAITING_PARENTS' {LIMIT_PARAM}",
                (limit,),
            ).fetchall()
            moves = []
            for job_id, app, failed, waiting in rows:
                if failed:
                    parent, state = failed.split(" ")
                    reason = lifecycle.parent_failure_reason(parent, S(state))
                    moves.append(Move(job_id, S.AWAITING_PARENTS, app, S.FAILED, reason))
                elif not waiting:
                    moves.append(Move(job_id, S.AWAITING_PARENTS, app, S.READY, "all parents finished"))
            if moves:
                apply_moves(conn, moves, self._app_hooks(conn), now, self.db.next_seq(conn))
        return len(moves)

    def kill(self, job_ids: list[str], now: float | None = None) -> dict[str, JobState]:
        """Kill jobs; a running one is stopped by its launcher at its next heartbeat."""
        return self.set_state(job_ids, S.KILLED, "killed by user", now)

    def retry(self, job_ids: list[str], now: float | None = None) -> dict[str, JobState]:
        """FAILED / RUN_ERROR / RUN_TIMEOUT -> RESTART_READY (or back to waiting on parents).

        Descendants that failed only because of a retried job wait for it again.
        """
        now = _now(now)
        with self.db.write() as conn:
            current = self._existing(conn, job_ids)
            for i in job_ids:
                if current[i][0] not in RETRYABLE:
                    raise IllegalTransition(i, current[i][0], S.RESTART_READY)
            hooks = self._app_hooks(conn)
            seq = self.db.next_seq(conn)
            requested = set(job_ids)
            # the requested jobs and every descendant that failed only because of them
            chosen = dict.fromkeys(job_ids)
            pending = list(chosen)
            while pending:
                children = [
                    (c, S(s), a, r) for c, s, a, r in conn.execute(
                        "SELECT j.id, j.state, j.app, j.state_reason FROM job_parents jp "
                        "JOIN jobs j ON j.id = jp.child_id "
                        "WHERE jp.parent_id IN (SELECT value FROM json_each(?))",
                        (msgspec.json.encode(pending).decode(),))
                ]  # fmt: skip
                pending = []
                for child, state, app, reason in children:
                    if state == S.FAILED and reason.startswith(lifecycle.PARENT_FAILED) and child not in chosen:
                        chosen[child] = None
                        current[child] = (state, app, None)
                        pending.append(child)
            parents: dict[str, list[tuple[str, JobState]]] = defaultdict(list)
            for child, parent, state in conn.execute(
                "SELECT jp.child_id, j.id, j.state FROM job_parents jp JOIN jobs j ON j.id = jp.parent_id "
                "WHERE jp.child_id IN (SELECT value FROM json_each(?))",
                (msgspec.json.encode(list(chosen)).decode(),),
            ):
                parents[child].append((parent, S(state)))
            # a job cannot come back while a parent outside the retry stays failed or killed:
            # a requested one is refused, a descendant stays failed naming that parent
            changed = True
            while changed:
                changed = False
                for job_id in list(chosen):
                    blocker = next(
                        ((p, s) for p, s in parents[job_id] if s in (S.FAILED, S.KILLED) and p not in chosen),
                        None,
                    )
                    if blocker is None:
                        continue
                    parent, state = blocker
                    if job_id in requested:
                        advice = "it can never run" if state == S.KILLED else "retry the parent instead"
                        raise StoreError(f"job {job_id}: parent {parent} is {state}; {advice}")
                    del chosen[job_id]
                    changed = True
                    conn.execute(
                        "UPDATE jobs SET state_reason = ?, updated_at = ?, seq = ?, version = version + 1 WHERE id = ?",
                        (lifecycle.parent_failure_reason(parent, state), now, seq, job_id),
                    )
            moves = []
            for job_id in chosen:
                state, app, _ = current[job_id]
                target = (
                    lifecycle.retry_target(s for _, s in parents[job_id]) if job_id in requested else S.AWAITING_PARENTS
                )
                moves.append(Move(job_id, state, app, target, "retried by user"))
            return apply_moves(conn, moves, hooks, now, seq)

    def delete(self, job_ids: list[str]) -> RemoveOutcome:
        """Remove jobs with their events; refuses (per job, saying why) jobs that are held by
        a launcher or that still-living jobs outside the request depend on."""
        out = RemoveOutcome()
        with self.db.write() as conn:
            current = load_states(conn, job_ids)
            candidates: dict[str, None] = {}
            for job_id in job_ids:
                if job_id not in current:
                    out.refused[job_id] = "no such job"
                    continue
                state, _app, session = current[job_id]
                if session is not None or state == S.RUNNING:
                    out.refused[job_id] = (
                        f"held by launcher session {session} ({state}); kill it first with `balsamd job kill {job_id}`"
                    )
                    continue
                candidates[job_id] = None
            living: dict[str, list[str]] = defaultdict(list)
            parents_of: dict[str, list[str]] = defaultdict(list)
            for parent, child, state, _app in direct_children(conn, list(candidates)):
                parents_of[child].append(parent)
                if not lifecycle.is_final(state):
                    living[parent].append(child)
            # a job stays while a living child stays; a refusal can keep the job's own
            # parents (when they are in the request too), so follow refusals upwards
            check = list(candidates)
            while check:
                job_id = check.pop()
                dependents = [c for c in living[job_id] if c not in candidates]
                if job_id not in candidates or not dependents:
                    continue
                del candidates[job_id]
                out.refused[job_id] = (
                    f"{len(dependents)} unfinished child job(s) depend on it "
                    f"(e.g. {dependents[0]}); remove or kill them too"
                )
                check.extend(parents_of[job_id])
            doomed = list(candidates)
            doomed_json = msgspec.json.encode(doomed).decode()
            for table, col in (
                ("moves", "job_id"),
                ("job_tags", "job_id"),
                ("job_parents", "child_id"),
                ("job_parents", "parent_id"),
                ("jobs", "id"),
            ):
                conn.execute(f"DELETE FROM {table} WHERE {col} IN (SELECT value FROM json_each(?))", (doomed_json,))
            if doomed:  # tombstones, so sync removes them from the central database too
                seq = self.db.next_seq(conn)
                conn.executemany(
                    "INSERT OR REPLACE INTO deleted_jobs (id, seq) VALUES (?, ?)", [(i, seq) for i in doomed]
                )
            out.removed = doomed
        return out

    def _existing(self, conn, job_ids: list[str]) -> dict[str, tuple[JobState, str, str | None]]:
        current = load_states(conn, job_ids)
        missing = [i for i in job_ids if i not in current]
        if missing:
            raise JobNotFound(f"no job with id {', '.join(missing)} (list jobs with `balsamd job ls`)")
        return current

    # ----- sessions and claiming --------------------------------------------------------

    def open_session(
        self, label: str = "", batch_job_id: str | None = None, host: str | None = None,
        pid: int | None = None, now: float | None = None,
    ) -> Session:  # fmt: skip
        now = _now(now)
        session = Session(
            id=ids.new_id(now), label=label, host=host or socket.gethostname(),
            pid=os.getpid() if pid is None else pid, batch_job_id=batch_job_id,
            created_at=now, heartbeat_at=now,
        )  # fmt: skip
        with self.db.write() as conn:
            conn.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session.id, session.label, session.host, session.pid, session.batch_job_id,
                 str(session.state), now, now, None),
            )  # fmt: skip
        return session

    def get_session(self, session_id: str) -> Session:
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionGone(f"no session {session_id}")
        return session_from_row(row)

    def sessions(self, open_only: bool = False) -> list[Session]:
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions"
        if open_only:
            sql += " WHERE state = 'open'"
        with self.db.read() as conn:
            return [session_from_row(r) for r in conn.execute(sql + " ORDER BY id")]

    def _require_open(self, conn, session_id: str) -> tuple[str | None, str]:
        """The open session's batch job id and last claim id; SessionGone when it is not open."""
        row = conn.execute(
            "SELECT state, batch_job_id, last_claim FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None or row[0] != SessionState.OPEN:
            state = "unknown" if row is None else row[0]
            raise SessionGone(f"session {session_id} is {state}; its jobs were handed back, open a new session")
        return row[1], row[2]

    def heartbeat(self, session_id: str, running: list[str] = (), now: float | None = None) -> list[str]:  # type: ignore[assignment]
        """Renew the session; returns those of ``running`` the launcher must stop (killed,
        or no longer bound to this session)."""
        now = _now(now)
        with self.db.write() as conn:
            self._require_open(conn, session_id)
            conn.execute("UPDATE sessions SET heartbeat_at = ? WHERE id = ?", (now, session_id))
            if not running:
                return []
            still = {
                i for (i,) in conn.execute(
                    "SELECT id FROM jobs WHERE session_id = ? AND state = 'RUNNING' "
                    "AND id IN (SELECT value FROM json_each(?))",
                    (session_id, msgspec.json.encode(list(running)).decode()))
            }  # fmt: skip
        return [i for i in running if i not in still]

    def claim(self, session_id: str, limits: ClaimLimits, now: float | None = None) -> list[Job]:
        """Bind up to ``limits.max_jobs`` fitting runnable jobs to the session and return them.

        One transaction: two claimers never get the same job.  Claimed jobs keep their state
        until the launcher reports them RUNNING; unstarted ones go back with ``release``.
        """
        return claimed_jobs(self.claim_document(session_id, limits, now), limits)

    def claim_document(self, session_id: str, limits: ClaimLimits, now: float | None = None) -> str:
        """``claim``, its jobs as the JSON document SQLite made of them, for ``claimed_jobs``:
        a server passes it on as it is, and only the launcher decodes and orders it."""
        if limits.max_jobs <= 0:
            return "[]"
        with self.db.write() as conn:
            batch_job_id, last = self._require_open(conn, session_id)
            if limits.request_id and limits.request_id == last:
                (rowids,) = conn.execute(
                    "SELECT json_group_array(rowid) FROM jobs "
                    f"WHERE session_id = ? AND state IN {queries.RUNNABLE_SQL}",
                    (session_id,),
                ).fetchone()
            else:
                sql, params = queries.claim_statement(limits)
                (rowids,) = conn.execute(sql, params).fetchone()
                # Binding is bookkeeping of this site, not a change of the job anyone else
                # follows: version, seq and updated_at stay, which keeps the hot claim path to
                # one index update per job (the RUNNING report that follows is what syncs).
                conn.execute(
                    "UPDATE jobs SET session_id = ?, batch_job_id = ? WHERE rowid IN (SELECT value FROM json_each(?))",
                    (session_id, batch_job_id, rowids),
                )
            doc = jobs_document(conn, rowids)
            if limits.request_id and limits.request_id != last:
                conn.execute("UPDATE sessions SET last_claim = ? WHERE id = ?", (limits.request_id, session_id))
        return doc

    def release(self, session_id: str, job_ids: list[str], now: float | None = None) -> int:
        """Hand back claimed jobs this session did not start."""
        now = _now(now)
        with self.db.write() as conn:
            seq = self.db.next_seq(conn)
            return len(conn.execute(
                "UPDATE jobs SET session_id = NULL, updated_at = ?, seq = ?, version = version + 1 "
                f"WHERE session_id = ? AND state IN {queries.RUNNABLE_SQL} "
                "AND id IN (SELECT value FROM json_each(?)) RETURNING id",
                (now, seq, session_id, msgspec.json.encode(job_ids).decode())).fetchall())  # fmt: skip

    def update_states(self, session_id: str, updates: list[StateUpdate], now: float | None = None) -> UpdateOutcome:
        """Apply a launcher's batch of state reports, in order.

        Idempotent: a report already recorded (resent after a lost reply) counts as a
        duplicate; one for a job no longer held by this session, or not allowed from its
        current state, is rejected with the reason.  One bad report never blocks the batch.
        """
        now = _now(now)
        out = UpdateOutcome()
        with self.db.write() as conn:
            current = load_states(conn, list({u.job_id: None for u in updates}))
            hooks = self._app_hooks(conn)
            moves = []
            settles: dict[tuple[S, str], S] = {}  # where each kind of report leaves a job
            for u in updates:
                if u.job_id not in current:
                    out.rejected[u.job_id] = "no such job"
                    continue
                state = before = current[u.job_id][0]
                app, bound = current[u.job_id][1:]
                started_at = None
                if u.started_at is not None and bound == session_id and is_allowed(state, S.RUNNING):
                    started_at, state = u.started_at, S.RUNNING  # recorded with the end, or alone
                if bound != session_id or state == u.state or not is_allowed(state, u.state):
                    if started_at is not None:
                        moves.append(Move(u.job_id, before, app, S.RUNNING, "", {}, started_at))
                        current[u.job_id] = (S.RUNNING, app, bound)
                    if bound == session_id and state != u.state:
                        out.rejected[u.job_id] = str(IllegalTransition(u.job_id, state, u.state))
                    elif self._recorded(conn, u):
                        out.duplicate.append(u.job_id)
                    else:
                        out.rejected[u.job_id] = (
                            f"job is already {state}"
                            if bound == session_id
                            else f"job is {state} and not held by session {session_id}"
                        )
                    continue
                columns: dict[str, object] = {}
                if u.state != S.RUNNING:
                    columns["return_code"] = u.return_code
                    if u.result is not None:
                        columns["result"] = u.result
                moves.append(Move(u.job_id, before, app, u.state, u.reason, columns, u.ts, started_at))
                settled = settles.get((u.state, app))
                if settled is None:
                    settled = settles[u.state, app] = (u.state, *lifecycle.settle(u.state, hooks.get(app, ())))[-1]
                current[u.job_id] = (settled, app, bound if settled == S.RUNNING else None)
            if moves:
                apply_moves(conn, moves, hooks, now, self.db.next_seq(conn))
            out.applied = [m.job_id for m in moves]
        return out

    @staticmethod
    def _recorded(conn, u: StateUpdate) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM events WHERE job_id = ? AND to_state = ? AND ts = ?",
                (u.job_id, str(u.state), u.ts),
            ).fetchone()
            is not None
        )

    def close_session(self, session_id: str, now: float | None = None) -> None:
        """End a session: unstarted claims go back, runs still marked RUNNING time out."""
        self._end_sessions([session_id], SessionState.CLOSED, "session closed while running", now)

    def expire_sessions(self, expiry_sec: float, now: float | None = None) -> list[str]:
        """Expire sessions silent for ``expiry_sec``; each one's RUNNING jobs become
        RUN_TIMEOUT exactly once (the session's own state change guards it)."""
        now = _now(now)
        with self.db.read() as conn:
            stale = [i for (i,) in conn.execute(
                "SELECT id FROM sessions WHERE state = 'open' AND heartbeat_at < ?",
                (now - expiry_sec,))]  # fmt: skip
        if stale:
            self._end_sessions(stale, SessionState.EXPIRED, "launcher session expired", now, expiry_sec)
        return stale

    def _end_sessions(
        self, session_ids: list[str], end: SessionState, reason: str, now: float | None,
        expiry_sec: float | None = None,
    ) -> list[str]:  # fmt: skip
        now = _now(now)
        with self.db.write() as conn:
            ended = []
            for sid in session_ids:
                cond = "state = 'open'" + (" AND heartbeat_at < ?" if expiry_sec is not None else "")
                params = [str(end), now, sid] + ([now - expiry_sec] if expiry_sec is not None else [])
                row = conn.execute(
                    f"UPDATE sessions SET state = ?, ended_at = ? WHERE id = ? AND {cond} RETURNING id",
                    params,
                ).fetchone()
                if row:
                    ended.append(sid)
            if not ended:
                return []
            ended_json = msgspec.json.encode(ended).decode()
            seq = self.db.next_seq(conn)
            conn.execute(
                "UPDATE jobs SET session_id = NULL, updated_at = ?, seq = ?, version = version + 1 "
                f"WHERE session_id IN (SELECT value FROM json_each(?)) AND state IN {queries.RUNNABLE_SQL}",
                (now, seq, ended_json),
            )
            running = conn.execute(
                "SELECT id, app FROM jobs WHERE state = 'RUNNING' AND session_id IN (SELECT value FROM json_each(?))",
                (ended_json,),
            ).fetchall()
            moves = [Move(i, S.RUNNING, app, S.RUN_TIMEOUT, reason) for i, app in running]
            if moves:
                apply_moves(conn, moves, self._app_hooks(conn), now, seq)
        return ended
