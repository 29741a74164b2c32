"""The site store: the local implementation of the store contract (``store.contract``).

Each operation is one transaction (``BEGIN IMMEDIATE`` for writes) and checks what it writes
against the site's rules (``balsamd.validate``), so every transport of the contract refuses
the same bad input with the same message.  Sessions, batch jobs and what sync reads live in
their own modules; this one holds apps, jobs and the changes users and hooks make.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import apsw
import msgspec

from balsamd import ids, lifecycle
from balsamd.models import (
    RESOURCE_CHANGES,
    App,
    DeclaredApp,
    Event,
    Intent,
    IntentKind,
    IntentOutcome,
    IntentStatus,
    Job,
    JobChanges,
    JobSpec,
    RemoveOutcome,
    job_row,
)
from balsamd.states import NOT_STARTED, RETRYABLE, IllegalTransition, JobState
from balsamd.store import queries
from balsamd.store.base import StoreBase, now_or
from balsamd.store.batch import BatchStoreMixin
from balsamd.store.contract import OPERATIONS
from balsamd.store.db import (
    JOB_SELECT,
    LIMIT_PARAM,
    Database,
    decode_app,
    encode_app,
    event_from_row,
    json_text,
    select_jobs,
)
from balsamd.store.errors import REFUSALS, JobNotFound, StoreError
from balsamd.store.intents import (
    AddParents,
    BatchCreate,
    BatchDelete,
    Create,
    Edit,
    InstallApp,
    decode_outcome,
    encode_outcome,
    install_refusal,
    parse_intent,
)
from balsamd.store.outbox import OutboxMixin
from balsamd.store.queries import EventFilter, JobFilter
from balsamd.store.reports import ReportsStoreMixin
from balsamd.store.sessions import SessionsMixin
from balsamd.store.sql import all_rows, value
from balsamd.store.transfers import TransferStoreMixin, delete_items, insert_items, reset_items
from balsamd.store.transitions import MAX_STEPS, Move, apply_moves, direct_children, load_states
from balsamd.store.watch import WatchStoreMixin
from balsamd.validate import (
    JobSpecError,
    Refused,
    SiteRules,
    app_problems,
    build_job,
    limit_problem,
    resolve_parameters,
    resource_problems,
    shared_workdir_problems,
    tag_problems,
)

S = JobState
T = TypeVar("T")
log = logging.getLogger("balsamd.store")

_DECLARED = "name, owner, code, intent_id, installed_at, written"


def _durable(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def call(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        with self.db.durable():
            return fn(self, *args, **kwargs)

    return call


def durable_operations(cls: type[T]) -> type[T]:
    """Make each operation the contract declares durable commit inside ``Database.durable``:
    the decision is the contract's, one flag per operation, and every transport meets it."""
    for op in OPERATIONS.values():
        if op.durable:
            setattr(cls, op.name, _durable(getattr(cls, op.name)))
    return cls


@durable_operations
class SiteStore(
    SessionsMixin, BatchStoreMixin, TransferStoreMixin, WatchStoreMixin, ReportsStoreMixin, OutboxMixin, StoreBase
):
    """The store on this host's SQLite file (``rules``: what every write is checked against)."""

    def __init__(self, path: Path | str, rules: SiteRules | None = None) -> None:
        super().__init__(Database(Path(path)), rules or SiteRules())

    def close(self) -> None:
        self.db.close()

    # ----- apps -------------------------------------------------------------------------

    def put_apps(self, apps: list[App], replace_all: bool = False, now: float | None = None) -> None:
        now = now_or(now)
        apps = list(apps)
        for app in apps:
            problems = app_problems(app)
            if problems:
                raise Refused(f"app {app.name!r}", problems)
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

    def declared_apps(self) -> list[DeclaredApp]:
        with self.db.read() as conn:
            return [
                DeclaredApp(name=r[0], owner=r[1], code=r[2], intent_id=r[3], installed_at=r[4], written=bool(r[5]))
                for r in conn.execute(f"SELECT {_DECLARED} FROM declared_apps ORDER BY name")
            ]

    def declared_app_written(self, name: str, intent_id: str) -> bool:
        with self.db.write() as conn:
            conn.execute("UPDATE declared_apps SET written = 1 WHERE name = ? AND intent_id = ?", (name, intent_id))
            return conn.changes() > 0

    # ----- jobs: create and read --------------------------------------------------------

    def create_jobs(self, specs: list[JobSpec], now: float | None = None) -> list[Job]:
        now = now_or(now)
        if not specs:
            return []
        with self.db.write() as conn:
            apps = self._apps(conn)
            new = ids.new_ids(len(specs), now)
            jobs = [
                build_job(job_id, spec, apps, self.rules, f"job {n}" if len(specs) > 1 else "job")
                for n, (spec, job_id) in enumerate(zip(specs, new, strict=True))
            ]
            shared = shared_workdir_problems(jobs)
            if shared:
                raise JobSpecError("request", shared)
            return self._insert_jobs(conn, jobs, now)

    def _insert_jobs(self, conn: apsw.Connection, jobs: list[Job], now: float) -> list[Job]:
        """Write checked jobs and settle their first states (parents must exist; a job whose
        parent failed or was killed is created FAILED, one with unfinished parents
        AWAITING_PARENTS)."""
        hooks = self._hooks(conn)
        parent_ids = sorted({p for j in jobs for p in j.parent_ids})
        parents = load_states(conn, parent_ids)
        missing = [p for p in parent_ids if p not in parents]
        if missing:
            shown = ", ".join(repr(p[:40]) for p in missing[:5])
            raise StoreError(f"parent job(s) not found: {shown}; give ids of jobs of this site (`balsamd job ls`)")
        _check_parent_owners(conn, jobs)
        seq = self.db.next_seq(conn)
        rows: list[tuple[Any, ...]] = []
        tags: list[tuple[str, str, str]] = []
        links: list[tuple[str, str]] = []
        moves: list[Move] = []
        for job in jobs:
            job.state, job.created_at, job.updated_at = S.CREATED, now, now
            # execution belongs to the site: a new job has not been claimed or run
            job.session_id = job.batch_job_id = job.return_code = job.result = None
            job.attempts, job.state_reason, job.version = 0, "", 0
            rows.append((*job_row(job), seq))
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
            conn.executemany(f"INSERT INTO jobs ({JOB_SELECT}, seq) VALUES ({', '.join('?' * len(rows[0]))})", rows)
        except apsw.ConstraintError as exc:
            raise StoreError(f"a job with one of these ids already exists: {exc}") from None
        conn.executemany("INSERT INTO job_tags (key, value, job_id) VALUES (?, ?, ?)", tags)
        conn.executemany("INSERT OR IGNORE INTO job_parents (parent_id, child_id) VALUES (?, ?)", links)
        insert_items(conn, [j for j in jobs if j.transfers], self._apps(conn), now, seq)
        finals = apply_moves(conn, moves, hooks, now, seq)
        reasons = {m.job_id: m.reason for m in moves}
        for job in jobs:
            job.state = finals[job.id]
            job.version = 1
            job.state_reason = reasons[job.id] if job.state == S.FAILED else ""
        return jobs

    def get(self, job_id: str) -> Job:
        with self.db.read() as conn:
            found = select_jobs(conn, " WHERE id = ?", [job_id])
        if not found:
            raise JobNotFound(f"no job with id {job_id} (list jobs with `balsamd job ls`)")
        return found[0]

    def resolve_id(self, text: str) -> str:
        prefix = text.strip().upper()
        if not prefix:
            raise JobNotFound("an empty job id names no job; give an id or a prefix of one")
        with self.db.read() as conn:
            rows = all_rows(
                conn,
                "SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                (prefix, prefix + "\U0010ffff"),
            )
        if not rows:
            raise JobNotFound(f"no job with id {text} (list jobs with `balsamd job ls`)")
        if len(rows) > 1:
            raise StoreError(f"id prefix {text} matches several jobs; give more characters")
        return rows[0][0]

    def filter(self, f: JobFilter | None = None) -> list[Job]:
        f = f or JobFilter()
        problem = limit_problem(f.limit)
        if problem:
            raise Refused("filter", [problem])
        where, params = queries.where_clause(f)
        with self.db.read() as conn:
            return select_jobs(conn, where, params, f.limit)

    def count(self, f: JobFilter | None = None) -> int:
        where, params = queries.where_clause(f or JobFilter())
        with self.db.read() as conn:
            return value(conn, f"SELECT COUNT(*) FROM jobs{where}", params)

    def counts_by_state(self, f: JobFilter | None = None) -> dict[str, int]:
        where, params = queries.where_clause(f or JobFilter())
        with self.db.read() as conn:
            rows = conn.execute(f"SELECT state, COUNT(*) FROM jobs{where} GROUP BY state", params)
            found = dict(rows)
        return {str(s): found[str(s)] for s in JobState if s in found}

    def events(
        self, job_id: str | None = None, after: int = 0, limit: int | None = None, f: EventFilter | None = None
    ) -> list[Event]:
        f = f or EventFilter()
        problems = [p for p in [limit_problem(limit)] if p] + queries.event_filter_problems(f, limit)
        if problems:
            raise Refused("events", problems)
        # a move holds consecutive events: those after ``after`` are in its move or later ones,
        # which the store finds by the move's id (the event id itself is computed)
        sql = "SELECT id, job_id, from_state, to_state, ts, reason FROM events WHERE move > ? AND id > ?"
        params: list[object] = [after - MAX_STEPS, after]
        if job_id is not None:
            sql += " AND job_id = ?"
            params.append(job_id)
        narrower, more = queries.event_where(f)
        sql += narrower
        params += more
        # the last N: read backwards from the newest move, and turn them around
        sql += " ORDER BY move DESC, step DESC" if f.latest is not None else " ORDER BY move, step"
        if limit is not None or f.latest is not None:
            sql += f" {LIMIT_PARAM}"
            params.append(f.latest if f.latest is not None else limit)
        with self.db.read() as conn:
            found = [event_from_row(r) for r in conn.execute(sql, params)]
        return found[::-1] if f.latest is not None else found

    # ----- jobs: what the daemon's services record ---------------------------------------

    def finish_hook(
        self, job_id: str, expected: JobState, state: JobState, reason: str = "",
        data: dict[str, Any] | None = None, now: float | None = None,
    ) -> bool:  # fmt: skip
        if data is not None:
            try:  # kept as JSON, sent to workers as msgpack
                msgspec.msgpack.encode(data)
                json_text(data)
            except (TypeError, OverflowError, msgspec.EncodeError) as exc:
                raise Refused(f"job {job_id}", [f"the data a hook left cannot be stored: {exc}"]) from None
        now = now_or(now)
        with self.db.write() as conn:
            current = load_states(conn, [job_id]).get(job_id)
            if current is None or current[0] != expected:
                return False
            columns = {} if data is None else {"data": json_text(data)}
            move = Move(job_id, expected, current[1], state, reason, columns)
            apply_moves(conn, [move], self._hooks(conn), now, self.db.next_seq(conn))
        return True

    def resolve_waiting(self, limit: int = 1000, now: float | None = None) -> int:
        now = now_or(now)
        with self.db.write() as conn:
            rows = all_rows(
                conn,
                "SELECT j.id, j.app, ("
                " SELECT p.id || ' ' || p.state FROM job_parents jp JOIN jobs p ON p.id = jp.parent_id"
                " WHERE jp.child_id = j.id AND p.state IN ('FAILED', 'KILLED') LIMIT 1),"
                " EXISTS (SELECT 1 FROM job_parents jp JOIN jobs p ON p.id = jp.parent_id"
                " WHERE jp.child_id = j.id AND p.state != 'JOB_FINISHED')"
                f" FROM jobs j WHERE j.state = 'AWAITING_PARENTS' {LIMIT_PARAM}",
                (limit,),
            )
            moves = []
            for job_id, app, failed, waiting in rows:
                if failed:
                    parent, state = failed.split(" ")
                    reason = lifecycle.parent_failure_reason(parent, S(state))
                    moves.append(Move(job_id, S.AWAITING_PARENTS, app, S.FAILED, reason))
                elif not waiting:
                    moves.append(Move(job_id, S.AWAITING_PARENTS, app, S.READY, "all parents finished"))
            if moves:
                apply_moves(conn, moves, self._hooks(conn), now, self.db.next_seq(conn))
        return len(moves)

    # ----- jobs: what users change ---------------------------------------------------------

    def kill(self, job_ids: list[str], now: float | None = None) -> dict[str, JobState]:
        now = now_or(now)
        with self.db.write() as conn:
            current = self._existing(conn, job_ids)
            moves = [Move(i, current[i][0], current[i][1], S.KILLED, "killed by user") for i in job_ids]
            return apply_moves(conn, moves, self._hooks(conn), now, self.db.next_seq(conn))

    def retry(self, job_ids: list[str], now: float | None = None) -> dict[str, JobState]:
        now = now_or(now)
        with self.db.write() as conn:
            current = self._existing(conn, job_ids)
            for i in job_ids:
                if current[i][0] not in RETRYABLE:
                    raise IllegalTransition(i, current[i][0], S.RESTART_READY)
            hooks = self._hooks(conn)
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
            failed_transfer = reset_items(conn, list(chosen), now, seq)
            moves = []
            for job_id in chosen:
                state, app, _ = current[job_id]
                target = (
                    lifecycle.retry_target((s for _, s in parents[job_id]), failed_transfer.get(job_id))
                    if job_id in requested
                    else S.AWAITING_PARENTS
                )
                moves.append(Move(job_id, state, app, target, "retried by user"))
            return apply_moves(conn, moves, hooks, now, seq)

    def delete(self, job_ids: list[str]) -> RemoveOutcome:
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
            delete_items(conn, doomed_json)
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

    def update_jobs(self, edits: dict[str, JobChanges], now: float | None = None) -> list[Job]:
        if not edits:
            raise Refused("edit", ["no job given: name the jobs to edit"])
        now = now_or(now)
        with self.db.write() as conn:
            return [self._edit(conn, job_id, changes, now) for job_id, changes in edits.items()]

    def _edit(self, conn: apsw.Connection, job_id: str, changes: JobChanges, now: float) -> Job:
        given = {k: v for k, v in msgspec.structs.asdict(changes).items() if v is not None}
        if not given:
            raise Refused(f"job {job_id}", ["nothing to edit: give parameters, tags, data or resources"])
        problems = tag_problems(changes.tags or {})
        row = conn.execute("SELECT state, session_id, app FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id} (list jobs with `balsamd job ls`); no job was edited")
        if S(row[0]) not in NOT_STARTED or row[1] is not None:
            claimed = row[1] is not None and S(row[0]) in NOT_STARTED
            held = f" (claimed by launcher session {row[1]})" if claimed else ""
            raise StoreError(
                f"job {job_id} is {row[0]}{held}; only jobs that have not started can be edited; no job was edited"
            )
        resources = {k: given.pop(k) for k in RESOURCE_CHANGES if k in given}
        if resources:
            job = select_jobs(conn, " WHERE id = ?", [job_id])[0]
            asked = msgspec.structs.replace(job, **resources)
            problems += resource_problems(asked, self.rules.nodes, self.rules.scheduler.max_wall_time_min)
        if changes.parameters is not None:
            app = self._apps(conn).get(row[2])
            if app is None:
                raise StoreError(f"job {job_id}: its app {row[2]} is no longer registered; no job was edited")
            given["parameters"], param_problems = resolve_parameters(app, changes.parameters)
            problems += param_problems
        try:
            texts = {k: json_text(v) for k, v in given.items()}
        except (TypeError, OverflowError, msgspec.EncodeError) as exc:
            problems.append(f"the values cannot be stored ({exc})")
        if problems:
            raise JobSpecError(f"job {job_id}", problems)
        values: dict[str, object] = {**texts, **resources}
        sets = ", ".join(f"{k} = ?" for k in values)
        seq = self.db.next_seq(conn)
        conn.execute(
            f"UPDATE jobs SET {sets}, version = version + 1, seq = ?, updated_at = ? WHERE id = ?",
            (*values.values(), seq, now, job_id),
        )
        if changes.tags is not None:
            conn.execute("DELETE FROM job_tags WHERE job_id = ?", (job_id,))
            conn.executemany(
                "INSERT INTO job_tags (key, value, job_id) VALUES (?, ?, ?)",
                [(k, v, job_id) for k, v in changes.tags.items()],
            )
        return select_jobs(conn, " WHERE id = ?", [job_id])[0]

    def add_parents(self, job_id: str, parent_ids: list[str], now: float | None = None) -> Job:
        parent_ids = list(parent_ids)
        if not parent_ids:
            raise Refused(f"job {job_id}", ["no parents given: name the jobs it must wait for"])
        if len(set(parent_ids)) != len(parent_ids):
            raise Refused(f"job {job_id}", ["a parent is named more than once; name each once"])
        now = now_or(now)
        with self.db.write() as conn:
            current = self._existing(conn, [job_id, *parent_ids])
            state, app, session = current[job_id]
            if state not in NOT_STARTED or session is not None:
                held = f" (claimed by launcher session {session})" if state in NOT_STARTED else ""
                raise StoreError(f"job {job_id} is {state}{held}; only a job that has not started can get parents")
            for parent in parent_ids:
                if current[parent][0] in (S.FAILED, S.KILLED):
                    raise StoreError(
                        f"parent {parent} is {current[parent][0]}: job {job_id} could never run after it; "
                        "retry the parent first, or choose another"
                    )
            loop = _ancestor_path(conn, parent_ids, job_id)
            if loop:
                raise StoreError(
                    f"job {job_id} cannot wait for {loop[1]}: {' -> '.join(loop)} would be a cycle of jobs "
                    "waiting for each other"
                )
            job = select_jobs(conn, " WHERE id = ?", [job_id])[0]
            added = [p for p in parent_ids if p not in job.parent_ids]
            job.parent_ids = [*job.parent_ids, *added]
            _check_parent_owners(conn, [msgspec.structs.replace(job, parent_ids=added)])
            seq = self.db.next_seq(conn)
            conn.execute(
                "UPDATE jobs SET parent_ids = ?, version = version + 1, seq = ?, updated_at = ? WHERE id = ?",
                (json_text(job.parent_ids), seq, now, job_id),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO job_parents (parent_id, child_id) VALUES (?, ?)", [(p, job_id) for p in added]
            )
            waiting = [p for p in added if current[p][0] != S.JOB_FINISHED]
            if waiting and state != S.AWAITING_PARENTS:
                reason = f"waits for {len(waiting)} parent(s) a user added (e.g. {waiting[0]})"
                apply_moves(conn, [Move(job_id, state, app, S.AWAITING_PARENTS, reason)], self._hooks(conn), now, seq)
            return select_jobs(conn, " WHERE id = ?", [job_id])[0]

    # ----- intents from the central database ---------------------------------------------------

    def apply_intents(self, intents: list[Intent], now: float | None = None) -> dict[str, IntentOutcome]:
        now = now_or(now)
        outcomes = {}
        for intent in intents:
            with self.db.write() as conn:
                row = conn.execute("SELECT outcome FROM applied_intents WHERE id = ?", (intent.id,)).fetchone()
                if row is not None:
                    outcomes[intent.id] = decode_outcome(row[0])
                    continue
                try:
                    with self.db.write():  # a savepoint: a refused intent leaves nothing behind
                        outcome = self._apply(conn, intent, now)
                except REFUSALS as exc:
                    outcome = IntentOutcome(status=IntentStatus.REJECTED, reason=str(exc))
                except apsw.Error:
                    raise  # the store's trouble, not the intent's: the next round tries again
                except Exception as exc:  # whatever a user wrote, the site goes on syncing
                    log.exception("intent %s could not be applied", intent.id)
                    reason = f"the site could not apply it: {type(exc).__name__}: {exc}"
                    outcome = IntentOutcome(status=IntentStatus.REJECTED, reason=reason)
                conn.execute(
                    "INSERT INTO applied_intents (id, outcome, applied_at) VALUES (?, ?, ?)",
                    (intent.id, encode_outcome(outcome), now),
                )
                outcomes[intent.id] = outcome
        return outcomes

    def intent_outcomes(self, intent_ids: list[str]) -> dict[str, IntentOutcome]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, outcome FROM applied_intents WHERE id IN (SELECT value FROM json_each(?))",
                (msgspec.json.encode(intent_ids).decode(),),
            )
            return {intent_id: decode_outcome(outcome) for intent_id, outcome in rows}

    def _apply(self, conn: apsw.Connection, intent: Intent, now: float) -> IntentOutcome:
        action = parse_intent(intent)
        if isinstance(action, InstallApp):
            return self._install(conn, intent, action, now)
        if isinstance(action, Create):
            apps = self._apps(conn)
            jobs = []
            for n, (job_id, spec) in enumerate(action.jobs):
                where = f"job {n}" if len(action.jobs) > 1 else "job"
                jobs.append(build_job(job_id, spec, apps, self.rules, where, owner=intent.owner))
            shared = shared_workdir_problems(jobs)
            if shared:
                raise JobSpecError("request", shared)
            made = self._insert_jobs(conn, jobs, now)
            return IntentOutcome(status=IntentStatus.APPLIED, created=[j.id for j in made])
        if isinstance(action, BatchCreate):
            batch = self._create_batch_job(action.batch, intent.owner, now)
            return IntentOutcome(status=IntentStatus.APPLIED, batch_jobs={batch.id: batch.state})
        if isinstance(action, BatchDelete):
            return self._delete_batch_asked(intent, action.batch_id)
        # a job is asked about only by its owner (central checks that too, as far as it knows)
        row = conn.execute("SELECT owner FROM jobs WHERE id = ?", (intent.job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {intent.job_id} (list jobs with `balsamd job ls`)")
        if row[0] != intent.owner:
            raise Refused(f"{intent.kind} intent {intent.id}", [
                f"job {intent.job_id} is not a job of {intent.owner or 'the site'}: only its owner may ask this"
            ])  # fmt: skip
        if isinstance(action, Edit):
            self.update_jobs({intent.job_id: action.changes}, now)
            return IntentOutcome(status=IntentStatus.APPLIED)
        if isinstance(action, AddParents):
            job = self.add_parents(intent.job_id, action.parent_ids, now)
            return IntentOutcome(status=IntentStatus.APPLIED, states={job.id: job.state})
        if action.kind == IntentKind.DELETE:
            removed = self.delete([intent.job_id])
            if removed.refused:
                raise StoreError(f"job {intent.job_id}: {removed.refused[intent.job_id]}")
            return IntentOutcome(status=IntentStatus.APPLIED)
        change = self.kill if action.kind == IntentKind.KILL else self.retry
        return IntentOutcome(status=IntentStatus.APPLIED, states=change([intent.job_id], now))

    def _install(self, conn: apsw.Connection, intent: Intent, action: InstallApp, now: float) -> IntentOutcome:
        row = conn.execute(f"SELECT {_DECLARED} FROM declared_apps WHERE name = ?", (action.name,)).fetchone()
        declared = None
        if row is not None:
            declared = DeclaredApp(name=row[0], owner=row[1], code=row[2], intent_id=row[3], installed_at=row[4])
        refusal = install_refusal(action, intent.owner, self.rules.accept_apps_from, self._apps(conn), declared)
        if refusal:
            raise Refused(f"app {action.name}", [refusal])
        conn.execute(
            f"INSERT OR REPLACE INTO declared_apps ({_DECLARED}) VALUES (?, ?, ?, ?, ?, 0)",
            (action.name, intent.owner, action.code, intent.id, now),
        )
        return IntentOutcome(status=IntentStatus.APPLIED)

    def _delete_batch_asked(self, intent: Intent, batch_id: str) -> IntentOutcome:
        """A central user removes only batch jobs they asked for; the site owner's are theirs."""
        batch = self.get_batch_job(batch_id)
        if batch.owner != intent.owner:
            asker = intent.owner or "the site"
            raise Refused(f"{intent.kind} intent {intent.id}", [
                f"batch job {batch_id} was not asked for by {asker}: only who asked for it may remove it"
            ])  # fmt: skip
        removed = self.remove_batch_job(batch_id)
        return IntentOutcome(status=IntentStatus.APPLIED, batch_jobs={removed.id: removed.state})

    def _existing(self, conn: apsw.Connection, job_ids: list[str]) -> dict[str, tuple[JobState, str, str | None]]:
        current = load_states(conn, job_ids)
        missing = [i for i in job_ids if i not in current]
        if missing:
            raise JobNotFound(f"no job with id {', '.join(missing)} (list jobs with `balsamd job ls`)")
        return current


def _ancestor_path(conn: apsw.Connection, parent_ids: list[str], job_id: str) -> list[str]:
    """The chain job_id -> parent -> ... -> job_id that making ``parent_ids`` its parents
    would close (empty when none would): a parent that is the job or descends from it.  The
    walk down from the job visits each descendant once (UNION), however many paths reach it."""
    parents = msgspec.json.encode(parent_ids).decode()
    found = conn.execute(
        "WITH RECURSIVE down(id) AS (SELECT ? UNION SELECT jp.child_id FROM job_parents jp JOIN down "
        "ON jp.parent_id = down.id) SELECT id FROM down WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1",
        (job_id, parents),
    ).fetchall()
    if not found:
        return []
    # only when refusing: name one chain, level by level from the job, each job reached once
    target, came_from, level = found[0][0], {job_id: job_id}, [job_id]
    while target not in came_from:
        nxt = []
        for parent, child, _state, _app in direct_children(conn, level):
            if child not in came_from:
                came_from[child] = parent
                nxt.append(child)
        level = nxt
    chain = [target]
    while chain[-1] != job_id:
        chain.append(came_from[chain[-1]])
    return [job_id, *chain]


def _check_parent_owners(conn: apsw.Connection, jobs: list[Job]) -> None:
    """A central user's job depends only on that user's jobs: a parent is a window on its
    state and output (hooks read parents), and its failure fails the child.  The site's
    owner may link any of the site's jobs."""
    asked = sorted({p for j in jobs if j.owner for p in j.parent_ids})
    if not asked:
        return
    rows = conn.execute(
        "SELECT id, owner FROM jobs WHERE id IN (SELECT value FROM json_each(?))",
        (msgspec.json.encode(asked).decode(),),
    )
    owners = dict(rows)
    for job in jobs:
        foreign = [p for p in job.parent_ids if job.owner and owners.get(p) != job.owner]
        if foreign:
            shown = ", ".join(repr(p[:40]) for p in foreign[:5])
            raise StoreError(
                f"parent job(s) {shown} are not jobs of {job.owner}: a job may depend only on its owner's "
                "jobs; give ids of your own jobs"
            )
