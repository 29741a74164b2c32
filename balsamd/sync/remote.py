"""The Python API from anywhere that reaches the central database.

``conn = balsamd.connect("postgresql://...")`` gives the same job API as a local site, with
jobs addressed to a named site, and batch jobs asked of it (``conn.batch_jobs``, in
``sync.remote_batch``).  Creating a job writes its row and a ``create`` intent in one
transaction; the site pulls the intent (woken by NOTIFY), creates the job and from then on
its execution fields flow back here.  Kill, retry and edits are intents too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import msgspec
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from balsamd import ids
from balsamd.connection import BalsamNames, forget
from balsamd.jsonvalues import value_problems
from balsamd.models import (
    JOB_COLUMNS,
    App,
    Event,
    IntentOutcome,
    IntentStatus,
    Job,
    JobChanges,
    JobSpec,
    declared_app_file,
    job_row,
)
from balsamd.reports.build import Reports
from balsamd.results import await_value
from balsamd.states import FINAL, JobState
from balsamd.store.queries import EventFilter, event_filter_problems
from balsamd.sync.remote_batch import RemoteBatchJobs
from balsamd.sync.remote_reports import CentralRows
from balsamd.sync.remote_transfers import RemoteTransfers
from balsamd.sync.schema import CentralError, check_version, scalar
from balsamd.tags import tag_problems
from balsamd.validate import (
    JobSpecError,
    Refused,
    SiteRules,
    build_job,
    explained,
    id_list,
    job_requests,
    job_spec,
    limit_problem,
    shared_workdir_problems,
)
from balsamd.waiting import WaitOutcome, wait_criteria, wait_for

T = TypeVar("T")
_COLUMNS = ", ".join(JOB_COLUMNS)
_SELECT = f"{_COLUMNS}, site"
_EVENT_SELECT = "e.site, e.store_id, e.id, e.job_id, e.from_state, e.to_state, e.ts, e.reason"


def _job_from_central(row: tuple[Any, ...]) -> tuple[Job, str]:
    """A job and its site from a central row (``_SELECT``'s columns)."""
    *fields, site = row
    data = dict(zip(JOB_COLUMNS, fields, strict=True))
    if data["result"] is not None:
        data["result"] = bytes(data["result"])
    return msgspec.convert(data, Job), site


class RemoteJob(BalsamNames):
    """A job seen through the central database: fields, refresh(), events(), result()."""

    def __init__(self, conn: CentralConnection, record: Job, site: str) -> None:
        self._conn, self._record, self.site = conn, record, site

    @property
    def owner(self) -> str:
        return self._record.owner

    def __getattr__(self, name: str) -> Any:
        if name in Job.__struct_fields__:
            return getattr(self._record, name)
        raise AttributeError(name)

    @property
    def record(self) -> Job:
        return self._record

    def refresh(self) -> RemoteJob:
        fresh = self._conn.jobs.get(self._record.id)
        self._record = fresh.record
        return self

    def events(self) -> list[Event]:
        rows = self._conn.execute(
            "SELECT id, job_id, from_state, to_state, ts, reason FROM balsamd.events WHERE job_id = %s ORDER BY ts, id",
            (self._record.id,),
        )
        return [_event(r) for r in rows]

    def result(self, timeout: float | None = None, poll: float = 0.25) -> Any:
        return await_value(lambda: self.refresh().record, timeout, poll)

    def __repr__(self) -> str:
        return f"<Job {self._record.id} site={self.site} app={self._record.app} state={self._record.state}>"


def _event(r: tuple[Any, ...]) -> Event:
    return Event(id=r[0], job_id=r[1], from_state=JobState(r[2]) if r[2] else None, to_state=JobState(r[3]),
                 ts=r[4], reason=r[5])  # fmt: skip


def _poll(fetch: Callable[[], T | None], deadline: float, every: float = 0.25) -> T | None:
    """What ``fetch`` returns once it is not None, or None at ``deadline``."""
    while True:
        found = fetch()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(every)


def unpublished_app_message(site: str, name: str, apps: Mapping[str, App]) -> str:
    """Why ``site`` cannot run a job of ``name``, an app it has not published."""
    if not apps:
        return (
            f"site {site} has published no apps yet: its daemon publishes the apps of its apps/ "
            "directory when it starts (`balsamd start` at the site)"
        )
    published = ", ".join(sorted(apps))
    return f"site {site} has no app {name!r:.60} (it publishes: {published}); give one of those"


class RemoteJobs:
    def __init__(self, conn: CentralConnection) -> None:
        self._conn = conn

    def create(self, app: str, workdir: str, site: str | None = None, **fields: Any) -> RemoteJob:
        return self.bulk_create([{"app": app, "workdir": workdir, **fields}], site=site)[0]

    def bulk_create(self, specs: Iterable[dict[str, Any]], site: str | None = None) -> list[RemoteJob]:
        """Check against the site's apps and rules (as the site will), then write rows and one
        intent per site in a single transaction (all or none)."""
        requests = job_requests(specs)
        by_site: dict[str, list[tuple[JobSpec, Job]]] = {}
        new = ids.new_ids(len(requests))
        for n, (raw, job_id) in enumerate(zip(requests, new, strict=True)):
            where = f"job {n}" if len(requests) > 1 else "job"
            target = site
            if isinstance(raw, Mapping) and "site" in raw:
                raw = dict(raw)
                target = raw.pop("site")
            if not target or not isinstance(target, str):
                raise JobSpecError(where, [f"no site given (site={target!r:.40}): pass site=NAME, a site's name"])
            spec = job_spec(raw, where)
            apps, rules = self._conn.site_rules(target)
            if spec.app not in apps:
                raise JobSpecError(where, [unpublished_app_message(target, spec.app, apps)])
            job = build_job(job_id, spec, apps, rules, where, owner=self._conn.user)
            by_site.setdefault(target, []).append((spec, job))
        for pairs in by_site.values():
            shared = shared_workdir_problems([job for _, job in pairs])
            if shared:
                raise JobSpecError("request", shared)
        now = time.time()
        made = []
        with self._conn.pg.transaction(), self._conn.pg.cursor() as cur:
            for target, pairs in by_site.items():
                rows = []
                for _, job in pairs:
                    job.state, job.created_at, job.updated_at, job.version = JobState.CREATED, now, now, 0
                    rows.append((target, *job_row(job)))
                marks = ", ".join(["%s"] * (len(JOB_COLUMNS) + 1))
                cur.executemany(f"INSERT INTO balsamd.jobs (site, {_COLUMNS}) VALUES ({marks})", rows)
                # the request as the user made it: the site fills in the defaults itself
                payload = {"jobs": [{**msgspec.to_builtins(spec), "id": job.id} for spec, job in pairs]}
                cur.execute(
                    "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
                    "VALUES (%s, %s, 'create', %s, %s, %s)",
                    (ids.new_id(), target, pairs[0][1].id, Jsonb(payload), now),
                )
                made += [(job, target) for _, job in pairs]
        return [RemoteJob(self._conn, job, target) for job, target in made]

    def get(self, job_id: str) -> RemoteJob:
        if not isinstance(job_id, str) or not job_id.strip():
            raise CentralError(f"{job_id!r:.40} names no job; give a job's id")
        rows = self._conn.execute(f"SELECT {_SELECT} FROM balsamd.jobs WHERE id = %s", (job_id,))
        if not rows:
            raise CentralError(f"no job with id {job_id} that you may see in the central database")
        return RemoteJob(self._conn, *_job_from_central(rows[0]))

    def filter(self, site: str | None = None, state: str | Iterable[str] | None = None,
               tags: dict[str, str] | None = None, app: str | None = None,
               ids: Iterable[str] | None = None, limit: int | None = None) -> list[RemoteJob]:  # fmt: skip
        where, params = _where(site, state, tags, app, ids)
        query = f"SELECT {_SELECT} FROM balsamd.jobs{where} ORDER BY id"
        problem = limit_problem(limit)
        if problem:
            raise Refused("filter", [problem])
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [RemoteJob(self._conn, *_job_from_central(r)) for r in self._conn.execute(query, params)]

    def count(self, site: str | None = None, state: str | Iterable[str] | None = None,
              tags: dict[str, str] | None = None, app: str | None = None) -> int:  # fmt: skip
        where, params = _where(site, state, tags, app, None)
        return self._conn.execute(f"SELECT COUNT(*) FROM balsamd.jobs{where}", params)[0][0]

    def counts_by_state(self, site: str | None = None, state: str | Iterable[str] | None = None,
                        tags: dict[str, str] | None = None, app: str | None = None,
                        ids: Iterable[str] | None = None) -> dict[str, int]:  # fmt: skip
        """Jobs by state, in the order of the states (those with none left out)."""
        where, params = _where(site, state, tags, app, ids)
        found = dict(self._conn.execute(f"SELECT state, COUNT(*) FROM balsamd.jobs{where} GROUP BY state", params))
        return {str(s): found[s] for s in JobState if s in found}

    def wait_for(
        self, jobs: Iterable[str | RemoteJob] | None = None, *, site: str | None = None,
        tags: dict[str, str] | None = None, app: str | None = None, timeout: float | None = None,
        progress: Callable[[WaitOutcome], None] | None = None,
    ) -> WaitOutcome:  # fmt: skip
        """Wait until every job given (or with these tags, of this app, at this site; all you
        own when none is named) is final as central last heard, or ``timeout`` seconds passed."""
        given = None if jobs is None else [j.id if isinstance(j, RemoteJob) else self.get(j).id for j in id_list(jobs)]
        criteria = {**wait_criteria(given, tags, app), **({"site": site} if site else {})}
        return wait_for(self, criteria=criteria, timeout=timeout, progress=progress)

    def kill(self, jobs: Iterable[str | RemoteJob]) -> list[str]:
        return self._intents("kill", jobs)

    def retry(self, jobs: Iterable[str | RemoteJob]) -> list[str]:
        return self._intents("retry", jobs)

    def update(self, job: str | RemoteJob, **changes: Any) -> str:
        """Edit parameters, tags, data or resources of a job that has not started (applied by its site)."""
        return self._intents("update", [job], _checked_changes(changes))[0]

    def add_parents(self, job: str | RemoteJob, parents: Iterable[str | RemoteJob]) -> str:
        """Give a job that has not started more parents, jobs of its site (applied by the site)."""
        child = job if isinstance(job, RemoteJob) else self.get(job)
        found = [p if isinstance(p, RemoteJob) else self.get(p) for p in id_list(parents)]
        elsewhere = [p for p in found if p.site != child.site]
        if elsewhere:
            raise Refused(f"job {child.id}", [
                f"parent {elsewhere[0].id} is at site {elsewhere[0].site}, the job at {child.site}: a job waits "
                "only for jobs of its own site"
            ])  # fmt: skip
        if not found:
            raise Refused(f"job {child.id}", ["no parents given: name the jobs it must wait for"])
        return self._intents("add_parents", [child], {"parent_ids": list(dict.fromkeys(p.id for p in found))})[0]

    def delete(self, jobs: Iterable[str | RemoteJob]) -> list[str]:
        """Remove jobs that no launcher holds (the site removes them, then central follows)."""
        return self._intents("delete", jobs)

    def _intents(self, kind: str, jobs: Iterable[str | RemoteJob], payload: dict[str, Any] | None = None) -> list[str]:
        targets = [j if isinstance(j, RemoteJob) else self.get(j) for j in id_list(jobs)]
        now = time.time()
        made = []
        with self._conn.pg.transaction(), self._conn.pg.cursor() as cur:
            for job in targets:
                intent_id = ids.new_id()
                cur.execute(
                    "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (intent_id, job.site, kind, job.id, Jsonb(payload or {}), now),
                )
                made.append(intent_id)
        return made

    def intent_outcome(self, intent_id: str) -> IntentOutcome | None:
        """What the site made of an intent; None while it has not applied it."""
        rows = self._conn.execute("SELECT outcome FROM balsamd.intents WHERE id = %s", (intent_id,))
        return msgspec.convert(rows[0][0], IntentOutcome) if rows and rows[0][0] is not None else None

    def as_completed(
        self, jobs: Iterable[RemoteJob], timeout: float | None = None, poll: float = 0.5
    ) -> Iterator[RemoteJob]:
        """Yield each job once it reaches a final state (JOB_FINISHED, FAILED, KILLED)."""
        pending = {j.id: j for j in jobs}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            for job in self.filter(ids=list(pending)):
                if job.state in FINAL:
                    del pending[job.id]
                    yield job
            if not pending:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pending)} job(s) not finished within {timeout:g} s")
            time.sleep(poll)

    def wait(self, jobs: Iterable[RemoteJob], timeout: float | None = None) -> list[RemoteJob]:
        given = list(jobs)
        done = {j.id: j for j in self.as_completed(given, timeout)}
        return [done[j.id] for j in given]


class RemoteApps:
    def __init__(self, conn: CentralConnection) -> None:
        self._conn = conn

    def list(self, site: str | None = None) -> list[App]:
        """The apps each site (or ``site``) publishes, by name."""
        where, params = (" WHERE site = %s", [site]) if site is not None else ("", [])
        rows = self._conn.execute(f"SELECT spec FROM balsamd.apps{where} ORDER BY name, site", params)
        return [msgspec.convert(spec, App) for (spec,) in rows]


def _checked_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """An edit as its site will read it, refused here with the same words if it cannot be."""
    try:
        edit = msgspec.convert(changes, JobChanges)
    except msgspec.ValidationError as exc:
        raise Refused("edit", [explained(str(exc))]) from None
    given = {k: v for k, v in msgspec.structs.asdict(edit).items() if v is not None}
    if not given:
        raise Refused("edit", ["nothing to edit: give parameters, tags, data or resources"])
    problems = tag_problems(edit.tags or {})
    for field in ("parameters", "data"):
        problems += value_problems(given.get(field, {}), field)
    if problems:
        raise Refused("edit", problems)
    return given


def _states(state: str | Iterable[str] | None) -> list[str] | None:
    """Job states to filter on, each one a state (a typo would match nothing, silently)."""
    if state is None:
        return None
    given = [state] if isinstance(state, str) else list(state)
    unknown = [s for s in given if s not in JobState.__members__.values()]
    if unknown:
        raise Refused("filter", [f"{unknown[0]!r} is not a job state; use one of {', '.join(JobState)}"])
    return [str(s) for s in given]


def _where(site, state, tags, app, job_ids) -> tuple[str, list[Any]]:
    parts, params = [], []
    state = _states(state)
    if tags is not None and not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        raise Refused("filter", ["tags is a dict of strings, e.g. tags={'experiment': 'a'}"])
    if job_ids is not None:
        job_ids = id_list(job_ids)
    if site is not None:
        parts.append("site = %s")
        params.append(site)
    if state is not None:
        parts.append("state = ANY(%s)")
        params.append(state)
    for key, value in (tags or {}).items():
        parts.append("tags ->> %s = %s")
        params += [key, value]
    if app is not None:
        parts.append("app = %s")
        params.append(app)
    if job_ids is not None:
        parts.append("id = ANY(%s)")
        params.append(list(job_ids))
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


class CentralConnection:
    """A connection to the central database with the job API of a site."""

    def __init__(self, dsn: str) -> None:
        try:
            self.pg = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise CentralError(f"cannot reach the central database: {str(exc).strip()}") from None
        try:
            self.user: str = scalar(self.pg, "SELECT current_user")
            if scalar(self.pg, "SELECT to_regnamespace('balsamd')") is None:
                raise CentralError("the central database has no balsamd schema; run `balsamd central init DSN`")
            try:
                row = self.pg.execute("SELECT value FROM balsamd.meta WHERE key = 'schema_version'").fetchone()
            except psycopg.errors.InsufficientPrivilege:
                raise CentralError(
                    f"role {self.user} may not use the central database; its administrator allows it with "
                    f"`balsamd central add-user DSN {self.user}`"
                ) from None
            check_version(int(row[0]) if row else 1)
        except BaseException:
            self.pg.close()
            raise
        self.jobs = RemoteJobs(self)
        self.apps = RemoteApps(self)
        self.batch_jobs = RemoteBatchJobs(self)
        self.transfers = RemoteTransfers(self)
        self.reports = Reports(CentralRows(self))
        self.declared: dict[str, str] = {}

    def events(
        self, job: str | RemoteJob | None = None, limit: int | None = None, where: EventFilter | None = None
    ) -> list[Event]:
        """State changes of the jobs you own (of ``job``; those ``where`` means), oldest first."""
        return [_event(r[2:]) for r in self._event_rows(job, limit, where or EventFilter())]

    def follow_events(
        self, job: str | RemoteJob | None = None, where: EventFilter | None = None, poll: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[Event]:  # fmt: skip
        """The events ``events`` lists, then each new one as the sites' syncs bring it.

        Each site's store numbers its events and sync brings them in that order, so a cursor
        per site's store (the newest id seen) finds what is new through the primary key."""
        where = where or EventFilter()
        cursors: dict[str, int] = {
            f"{site} {store}": newest or 0
            for site, store, newest in self.execute(
                "SELECT s.name, s.store_id, (SELECT max(e.id) FROM balsamd.events e WHERE e.site = s.name "
                "AND e.store_id = s.store_id) FROM balsamd.sites s WHERE s.store_id IS NOT NULL"
            )
        }
        listed = self._event_rows(job, None, where)
        conds, params = self._event_conditions(job, msgspec.structs.replace(where, latest=None))
        while True:
            for row in listed:
                key = f"{row[0]} {row[1]}"
                cursors[key] = max(cursors.get(key, 0), row[2])
                yield _event(row[2:])
            sleep(poll)
            listed = self.execute(
                f"SELECT {_EVENT_SELECT} FROM balsamd.sites s JOIN balsamd.events e ON e.site = s.name "
                "AND e.store_id = s.store_id "
                "AND e.id > COALESCE((%s::jsonb ->> (s.name || ' ' || s.store_id))::bigint, 0)"
                f"{conds} ORDER BY e.ts, e.id",
                [Jsonb(cursors), *params],
            )

    def _event_rows(self, job: str | RemoteJob | None, limit: int | None, where: EventFilter) -> list[tuple[Any, ...]]:
        """Event rows (``_EVENT_SELECT``) oldest first, checked as the site's store checks them."""
        problems = [p for p in [limit_problem(limit)] if p] + event_filter_problems(where, limit)
        if problems:
            raise Refused("events", problems)
        conds, params = self._event_conditions(job, where)
        query = f"SELECT {_EVENT_SELECT} FROM balsamd.events e{conds}"
        if where.latest is not None:
            return self.execute(f"{query} ORDER BY e.ts DESC, e.id DESC LIMIT {int(where.latest)}", params)[::-1]
        bound = "" if limit is None else f" LIMIT {int(limit)}"
        return self.execute(f"{query} ORDER BY e.ts, e.id{bound}", params)

    def _event_conditions(self, job: str | RemoteJob | None, where: EventFilter) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if job is not None:
            parts.append("e.job_id = %s")
            params.append((job if isinstance(job, RemoteJob) else self.jobs.get(job)).id)
        for column, states in (("to_state", where.states), ("from_state", where.from_states)):
            if states:
                parts.append(f"e.{column} = ANY(%s)")
                params.append([str(s) for s in states])
        if where.since is not None:
            parts.append("e.ts >= %s")
            params.append(where.since)
        if where.until is not None:
            parts.append("e.ts <= %s")
            params.append(where.until)
        for key, value in sorted(where.tags.items()):
            parts.append("e.job_id IN (SELECT id FROM balsamd.jobs WHERE tags ->> %s = %s)")
            params += [key, value]
        if where.app is not None:
            parts.append("e.job_id IN (SELECT id FROM balsamd.jobs WHERE app = %s)")
            params.append(where.app)
        return (" WHERE " + " AND ".join(parts)) if parts else "", params

    def install(self, app: App, site: str | None, code: str, timeout: float) -> App:
        """Ask ``site`` to install a declared app, wait for its answer, then for the app as it
        publishes it (see balsamd.declare)."""
        from balsamd.declare import AppRefused

        if not site:
            known = ", ".join(self.sites()) or "none"
            raise JobSpecError(
                f"app {app.name}", [f"it names no site: set site = 'NAME' in the class (known: {known})"]
            )
        self.site_rules(site)  # an unknown site is told at once
        intent_id = ids.new_id()
        self.execute(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
            "VALUES (%s, %s, 'app', '', %s, %s)",
            (intent_id, site, Jsonb({"name": app.name, "code": code}), time.time()),
        )
        deadline = time.monotonic() + timeout
        outcome = _poll(lambda: self.jobs.intent_outcome(intent_id), deadline)
        if outcome is None:
            raise TimeoutError(
                f"site {site} has not answered within {timeout:g} s: its daemon applies requests when it syncs with "
                f"the central database (is it running? `balsamd status` at the site); request {intent_id} stays "
                "pending and is applied when it does"
            )
        if outcome.status == IntentStatus.REJECTED:
            raise AppRefused(f"site {site} refused {outcome.reason}")
        published = _poll(lambda: self._published(site, app), deadline)
        if published is None:
            raise TimeoutError(f"site {site} accepted app {app.name} but has not published it within {timeout:g} s "
                               "(its daemon loads apps/ every [daemon] apps_period_sec)")  # fmt: skip
        if published.error:
            raise AppRefused(f"site {site} installed app {app.name}, which cannot be used: {published.error}")
        return published

    def _published(self, site: str, app: App) -> App | None:
        """The app as ``site`` publishes it once it publishes this version (its shape), else None."""
        rows = self.execute("SELECT spec FROM balsamd.apps WHERE site = %s AND name = %s", (site, app.name))
        if not rows:
            return None
        found = msgspec.convert(rows[0][0], App)
        if found.source != declared_app_file(app.name):
            return found if found.error else None
        if found.error:
            return found
        same = (found.kind, found.parameters, found.hooks, found.command_template)
        return found if same == (app.kind, app.parameters, app.hooks, app.command_template) else None

    def execute(self, query: str | sql.Composed, params: Any = ()) -> list[tuple[Any, ...]]:
        with self.pg.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def sites(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT name FROM balsamd.sites ORDER BY name")]

    def site_rules(self, site: str) -> tuple[dict[str, App], SiteRules]:
        """What ``site`` checks requests against, as it last published it."""
        rows = self.execute("SELECT rules FROM balsamd.sites WHERE name = %s", (site,))
        if not rows:
            known = ", ".join(self.sites()) or "none"
            raise JobSpecError("job", [f"unknown site {site!r:.60} (known: {known}); give one of them"])
        rules = msgspec.convert(rows[0][0] or {}, SiteRules)
        apps = {
            name: msgspec.convert(spec, App)
            for name, spec in self.execute("SELECT name, spec FROM balsamd.apps WHERE site = %s", (site,))
        }
        return apps, rules

    def close(self) -> None:
        forget(self)
        self.pg.close()

    def __enter__(self) -> CentralConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
