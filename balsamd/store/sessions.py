"""Launcher sessions in the site store: leases, claims and state reports.

A launcher opens a session, claims runnable jobs into it, reports their states in batches and
heartbeats; a session that goes silent expires and its jobs are recovered exactly once.  These
are the hot calls of every launcher: each is one short transaction.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import apsw
import msgspec

from balsamd import ids, lifecycle
from balsamd.models import ClaimLimits, Session, SessionState, StateUpdate, UpdateOutcome
from balsamd.states import IllegalTransition, JobState, is_allowed
from balsamd.store import queries
from balsamd.store.base import StoreBase, now_or
from balsamd.store.contract import ClaimedJobs
from balsamd.store.db import SESSION_COLUMNS, jobs_document, session_from_row
from balsamd.store.errors import SessionGone
from balsamd.store.sql import all_rows, value
from balsamd.store.transitions import Move, apply_moves, load_states
from balsamd.validate import Refused, claim_problems, session_problems, update_problem

S = JobState


class SessionsMixin(StoreBase):
    def open_session(
        self, label: str = "", batch_job_id: str | None = None, host: str | None = None,
        pid: int | None = None, now: float | None = None,
    ) -> Session:  # fmt: skip
        problems = session_problems(label, host, pid, batch_job_id)
        if problems:
            raise Refused("session", problems)
        now = now_or(now)
        session = Session(
            id=ids.new_id(now), label=label, host=host or socket.gethostname(),
            pid=os.getpid() if pid is None else pid, batch_job_id=batch_job_id,
            created_at=now, heartbeat_at=now,
        )  # fmt: skip
        with self.db.write() as conn:
            conn.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({', '.join('?' * len(Session.__struct_fields__))})",
                [str(v) if isinstance(v, SessionState) else v for v in msgspec.structs.astuple(session)],
            )
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

    def _require_open(self, conn: apsw.Connection, session_id: str) -> tuple[str | None, str]:
        """The open session's batch job id and last claim id; SessionGone when it is not open."""
        row = conn.execute(
            "SELECT state, batch_job_id, last_claim FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None or row[0] != SessionState.OPEN:
            state = "unknown" if row is None else row[0]
            raise SessionGone(f"session {session_id} is {state}; its jobs were handed back, open a new session")
        return row[1], row[2]

    def heartbeat(
        self, session_id: str, running: Sequence[str] = (), waiting: Sequence[str] = (), now: float | None = None
    ) -> list[str]:
        now = now_or(now)
        with self.db.write() as conn:
            self._require_open(conn, session_id)
            conn.execute("UPDATE sessions SET heartbeat_at = ? WHERE id = ?", (now, session_id))
            # A job killed after it was claimed is no longer bound: the launcher holding it
            # must not start it (a start it cannot be told of in time is stopped by its
            # rejected RUNNING at the next heartbeat).
            still = {
                i for (i,) in conn.execute(
                    "SELECT id FROM jobs WHERE session_id = ? AND state = 'RUNNING' "
                    "AND id IN (SELECT value FROM json_each(?))",
                    (session_id, msgspec.json.encode(list(running)).decode()))
            } if running else set()  # fmt: skip
            held = {
                i for (i,) in conn.execute(
                    "SELECT id FROM jobs WHERE session_id = ? AND id IN (SELECT value FROM json_each(?))",
                    (session_id, msgspec.json.encode(list(waiting)).decode()))
            } if waiting else set()  # fmt: skip
        return [i for i in running if i not in still] + [i for i in waiting if i not in held]

    def claim(self, session_id: str, limits: ClaimLimits, now: float | None = None) -> ClaimedJobs:
        problems = claim_problems(limits)
        if problems:
            raise Refused("claim", problems)
        if limits.max_jobs == 0:
            return ClaimedJobs("[]")
        with self.db.write() as conn:
            batch_job_id, last = self._require_open(conn, session_id)
            if limits.request_id and limits.request_id == last:
                rowids = value(
                    conn,
                    "SELECT json_group_array(rowid) FROM jobs "
                    f"WHERE session_id = ? AND state IN {queries.RUNNABLE_SQL}",
                    (session_id,),
                )
            else:
                sql, params = queries.claim_statement(limits)
                rowids = value(conn, sql, params)
                # Binding is bookkeeping of this site, not a change of the job anyone else
                # follows: version, seq and updated_at stay, which keeps the hot claim path to
                # one index update per job (the RUNNING report that follows is what syncs).
                conn.execute(
                    "UPDATE jobs SET session_id = ?, batch_job_id = ? WHERE rowid IN (SELECT value FROM json_each(?))",
                    (session_id, batch_job_id, rowids),
                )
            doc = ClaimedJobs(jobs_document(conn, rowids))
            if limits.request_id and limits.request_id != last:
                conn.execute("UPDATE sessions SET last_claim = ? WHERE id = ?", (limits.request_id, session_id))
        return doc

    def release(self, session_id: str, job_ids: list[str], now: float | None = None) -> int:
        now = now_or(now)
        with self.db.write() as conn:
            seq = self.db.next_seq(conn)
            return len(all_rows(conn,
                "UPDATE jobs SET session_id = NULL, updated_at = ?, seq = ?, version = version + 1 "
                f"WHERE session_id = ? AND state IN {queries.RUNNABLE_SQL} "
                "AND id IN (SELECT value FROM json_each(?)) RETURNING id",
                (now, seq, session_id, msgspec.json.encode(job_ids).decode())))  # fmt: skip

    def update_states(self, session_id: str, updates: list[StateUpdate], now: float | None = None) -> UpdateOutcome:
        now = now_or(now)
        out = UpdateOutcome()
        with self.db.write() as conn:
            current = load_states(conn, list({u.job_id: None for u in updates}))
            hooks = self._hooks(conn)
            moves = []
            settles: dict[tuple[S, str], S] = {}  # where each kind of report leaves a job
            for u in updates:
                if u.job_id not in current:
                    out.rejected[u.job_id] = "no such job"
                    continue
                problem = update_problem(u)
                if problem:
                    out.rejected[u.job_id] = problem
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
    def _recorded(conn: apsw.Connection, u: StateUpdate) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM events WHERE job_id = ? AND to_state = ? AND ts = ?",
                (u.job_id, str(u.state), u.ts),
            ).fetchone()
            is not None
        )

    def close_session(self, session_id: str, now: float | None = None) -> None:
        self._end_sessions([session_id], SessionState.CLOSED, "session closed while running", now)

    def expire_sessions(self, expiry_sec: float, now: float | None = None) -> list[str]:
        # the session's own state change guards each expiry: its jobs time out exactly once
        if not 0 <= expiry_sec < float("inf"):
            raise Refused("expire sessions", [f"expiry_sec must be a number of seconds, at least 0 (got {expiry_sec})"])
        now = now_or(now)
        full_at = self.db.full_at()
        if full_at is not None and now - full_at < expiry_sec:
            # heartbeats may have failed for lack of space: a session is silent only when the
            # store could have recorded its heartbeats for a whole expiry period
            return []
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
        now = now_or(now)
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
            running = all_rows(
                conn,
                "SELECT id, app FROM jobs WHERE state = 'RUNNING' AND session_id IN (SELECT value FROM json_each(?))",
                (ended_json,),
            )
            moves = [Move(i, S.RUNNING, app, S.RUN_TIMEOUT, reason) for i, app in running]
            if moves:
                apply_moves(conn, moves, self._hooks(conn), now, seq)
        return ended
