"""The Python API over a local site: ``site = balsamd.connect(PATH)``.

Every object hangs off the Site it came from, and two sites can be open at once in one
program.  A Site keeps the interface a connection to the central database keeps too
(``balsamd.connection``); ``connect`` remembers the most recent one for ``MyApp.submit``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from balsamd import arrays, ids
from balsamd.apps import register_apps
from balsamd.batchspec import batch_job, batch_spec, batch_states
from balsamd.config import Settings
from balsamd.connection import BalsamNames, forget, remember
from balsamd.explain import a_kind, explain
from balsamd.models import (
    App,
    BatchJob,
    Event,
    Job,
    JobChanges,
    JobSpec,
    RemoveOutcome,
    declared_app_file,
)
from balsamd.modes import PRIVATE, replace_file
from balsamd.reports.build import Reports, StoreRows
from balsamd.results import await_value
from balsamd.site import SiteError, SiteLayout, find_site, open_store
from balsamd.states import FINAL, JobState
from balsamd.store.contract import Store
from balsamd.store.queries import EventFilter, JobFilter
from balsamd.transfers.filters import job_refs, transfer_filter
from balsamd.transfers.records import TransferItem
from balsamd.validate import JobSpecError, Refused, explained, id_list, job_requests, job_spec, unknown_app_message
from balsamd.waiting import WaitOutcome, wait_criteria, wait_for

if TYPE_CHECKING:
    from balsamd.sync.remote import CentralConnection

_JOB_FIELDS = set(Job.__struct_fields__)


def connect(target: str | os.PathLike[str] | None = None) -> Site | CentralConnection:
    """Open a site by path (or the one found from $BALSAMD_SITE / the current directory), or
    the central database by its postgresql:// DSN."""
    conn: Site | CentralConnection
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        from balsamd.sync.remote import CentralConnection  # PostgreSQL's client: only when asked for

        conn = CentralConnection(target)
    elif target is not None and not isinstance(target, str | os.PathLike):
        raise SiteError(
            f"connect() takes a site directory or a postgresql:// DSN, not {a_kind(target)}; "
            "give e.g. balsamd.connect('~/sites/theta')"
        )
    else:
        conn = Site(find_site(target))
    remember(conn)
    return conn


class JobHandle(BalsamNames):
    """A job as the API hands it out: its fields as attributes, plus events() and refresh()."""

    __slots__ = ("_record", "_site")

    def __init__(self, site: Site, record: Job) -> None:
        self._site = site
        self._record = record

    def __getattr__(self, name: str) -> Any:
        if name in _JOB_FIELDS or name in ("footprint",):
            return getattr(self._record, name)
        raise AttributeError(name)

    @property
    def record(self) -> Job:
        return self._record

    @property
    def site(self) -> str:
        return self._site.name

    def refresh(self) -> JobHandle:
        self._record = self._site.store.get(self._record.id)
        return self

    def events(self) -> list[Event]:
        return self._site.store.events(self._record.id)

    def result(self, timeout: float | None = None, poll: float = 0.2) -> Any:
        """A Python app's return value; raises the exception its run raised on the site.

        With a timeout, waits up to that many seconds for the job to have a result or reach
        a final state; raises ResultNotReady when it has none.
        """
        return await_value(lambda: self.refresh().record, timeout, poll)

    def __repr__(self) -> str:
        r = self._record
        return f"<Job {r.id} app={r.app} workdir={r.workdir} state={r.state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other._record.id == self._record.id

    def __hash__(self) -> int:
        return hash(self._record.id)


class AppManager:
    def __init__(self, site: Site) -> None:
        self._site = site

    def sync(self) -> dict[str, App]:
        """Load SITE/apps/*.py and record what changed in the store; returns name -> App (an app
        whose file cannot be used has its ``error``)."""
        return register_apps(self._site.layout.apps, self._site.store, self._site.name)

    def list(self, site: str | None = None) -> list[App]:
        self._site.check_site(site)
        return sorted(self.sync().values(), key=lambda a: a.name)

    def get(self, name: str) -> App:
        apps = self.sync()
        if name not in apps:
            raise JobSpecError(f"app {name}", [unknown_app_message(name, apps)])
        if apps[name].error:
            raise JobSpecError(f"app {name}", [apps[name].error])
        return apps[name]


class JobManager:
    def __init__(self, site: Site) -> None:
        self._site = site

    def create(self, app: str, workdir: str, site: str | None = None, **fields: Any) -> JobHandle:
        return self.bulk_create([{"app": app, "workdir": workdir, **fields}], site)[0]

    def bulk_create(self, specs: Iterable[dict[str, Any] | JobSpec], site: str | None = None) -> list[JobHandle]:
        """Create all of them in one transaction, or none (the store checks every one first)."""
        self._site.check_site(site)
        specs = job_requests(specs)
        checked = [job_spec(spec, f"job {n}" if len(specs) > 1 else "job") for n, spec in enumerate(specs)]
        self._site.apps.sync()
        return [JobHandle(self._site, j) for j in self._site.store.create_jobs(checked)]

    def get(self, job_id: str) -> JobHandle:
        return JobHandle(self._site, self._site.store.get(self._site.store.resolve_id(job_id)))

    def filter(self, **criteria: Any) -> list[JobHandle]:
        return [JobHandle(self._site, j) for j in self._site.store.filter(self._filter(criteria))]

    def count(self, **criteria: Any) -> int:
        return self._site.store.count(self._filter(criteria))

    def counts_by_state(self, **criteria: Any) -> dict[str, int]:
        return self._site.store.counts_by_state(self._filter(criteria))

    def _filter(self, criteria: dict[str, Any]) -> JobFilter:
        self._site.check_site(criteria.pop("site", None))
        return _filter(criteria)

    def update(self, job: str | JobHandle, **changes: Any) -> JobHandle:
        """Edit parameters, tags, data or resources of a job that has not started."""
        return self.update_many({job: changes})[0]

    def update_many(self, edits: Mapping[str | JobHandle, Mapping[str, Any]]) -> list[JobHandle]:
        """Edit several jobs that have not started, each its own way, all or none: one job
        refused leaves every job as it was."""
        checked: dict[str, JobChanges] = {}
        for job_id, changes in zip(self.full_ids(list(edits)), edits.values(), strict=True):
            checked[job_id] = _changes(changes)
        return [JobHandle(self._site, job) for job in self._site.store.update_jobs(checked)]

    def add_parents(self, job: str | JobHandle, parents: Iterable[str | JobHandle]) -> JobHandle:
        """Make ``parents`` parents of a job that has not started; it waits for them."""
        [job_id] = self.full_ids([job])
        return JobHandle(self._site, self._site.store.add_parents(job_id, self.full_ids(parents)))

    def as_completed(
        self, jobs: Iterable[JobHandle], timeout: float | None = None, poll: float = 0.2
    ) -> Iterator[JobHandle]:
        """Yield each job once it reaches a final state (JOB_FINISHED, FAILED, KILLED)."""
        pending = {j.id: j for j in jobs}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            for job in self._site.store.filter(JobFilter(ids=list(pending), states=list(FINAL))):
                del pending[job.id]
                yield JobHandle(self._site, job)
            if not pending:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pending)} job(s) not finished within {timeout:g} s")
            time.sleep(poll)

    def wait(self, jobs: Iterable[JobHandle], timeout: float | None = None) -> list[JobHandle]:
        given = list(jobs)
        done = {j.id: j for j in self.as_completed(given, timeout)}
        return [done[j.id] for j in given]

    def wait_for(
        self, jobs: Iterable[str | JobHandle] | None = None, *, tags: dict[str, str] | None = None,
        app: str | None = None, timeout: float | None = None, progress: Callable[[WaitOutcome], None] | None = None,
    ) -> WaitOutcome:  # fmt: skip
        """Wait until every job given (or with these tags, of this app; all jobs when none is
        named) is final, or ``timeout`` seconds passed; says how many finished, failed, were
        killed or are left, and why a screenful of them failed."""
        criteria = wait_criteria(None if jobs is None else self.full_ids(jobs), tags, app)
        return wait_for(self, criteria=criteria, timeout=timeout, progress=progress)

    def kill(self, job_ids: Iterable[str | JobHandle]) -> dict[str, JobState]:
        return self._site.store.kill(self.full_ids(job_ids))

    def retry(self, job_ids: Iterable[str | JobHandle]) -> dict[str, JobState]:
        return self._site.store.retry(self.full_ids(job_ids))

    def delete(self, job_ids: Iterable[str | JobHandle]) -> RemoveOutcome:
        return self._site.store.delete(self.full_ids(job_ids))

    def full_ids(self, items: Iterable[str | JobHandle]) -> list[str]:
        """Full ids of jobs or id prefixes, each once, in the order given."""
        found = (i.id if isinstance(i, JobHandle) else self._site.store.resolve_id(i) for i in id_list(items))
        return list(dict.fromkeys(found))

    def __iter__(self) -> Iterator[JobHandle]:
        return iter(self.filter())


def _filter(criteria: dict[str, Any]) -> JobFilter:
    known = set(JobFilter.__struct_fields__) | {"state", "parent", "workdir"}
    unknown = set(criteria) - known
    if unknown:
        raise TypeError(f"unknown filter(s) {sorted(unknown)}; use {sorted(known)}")
    c = dict(criteria)
    if "state" in c:
        state = c.pop("state")
        c["states"] = [state] if isinstance(state, str) else list(state)
    if "parent" in c:
        c["parent_id"] = c.pop("parent")
    if "workdir" in c:
        c["workdir_contains"] = c.pop("workdir")
    if isinstance(c.get("states"), str) or isinstance(c.get("ids"), str):
        raise Refused("job filter", ["give states and ids as lists, or one state as state=..."])
    try:
        return msgspec.convert(c, JobFilter)
    except msgspec.ValidationError as exc:
        raise Refused("job filter", [_filter_problem(str(exc))]) from None


def _filter_problem(message: str) -> str:
    told = explain(message)
    if told.kind == "enum" and told.path[:1] == ["states"]:
        return f"{told.detail} is not a job state; use one of {', '.join(s.value for s in JobState)}"
    return explained(message)


def _newest_event(store: Store, after: int) -> int:
    """The id of the store's newest event, or ``after`` when it has none after that."""
    newest = store.events(after=after, f=EventFilter(latest=1))
    return newest[-1].id if newest else after


class BatchJobManager:
    """Batch jobs of this site, with the interface of the central one (``conn.batch_jobs``)."""

    def __init__(self, site: Site) -> None:
        self._site = site

    def create(self, num_nodes: int, wall_time_min: int, site: str | None = None, **fields: Any) -> BatchJob:
        """Ask for a batch job (``job_mode``, ``queue``, ``project``, ``filter_tags``,
        ``partitions``, ``optional_params``); the daemon's scheduler service submits it."""
        if site is not None and site != self._site.name:
            raise Refused("batch job", [f"site={site!r:.60} is not this site ({self._site.name}); leave it out, "
                                        "or connect to the central database to ask another site"])  # fmt: skip
        spec = batch_spec({"num_nodes": num_nodes, "wall_time_min": wall_time_min, **fields},
                          self._site.settings.scheduler)  # fmt: skip
        return self._site.store.create_batch_job(batch_job(ids.new_id(), spec))

    def get(self, batch_id: str, site: str | None = None) -> BatchJob:
        self._site.check_site(site)
        return self._site.store.get_batch_job(batch_id)

    def filter(self, *, site: str | None = None, state: Any = None, ids: Iterable[str] | None = None,
               mine: bool = False) -> list[BatchJob]:  # fmt: skip
        """Batch jobs in a state (or one of several), with these ids, or only those the site's
        owner asked for (``mine``: not a central user), or all of them, oldest first."""
        self._site.check_site(site)
        wanted = None if ids is None else set(id_list(ids))
        return [
            b
            for b in self._site.store.batch_jobs(batch_states(state))
            if (wanted is None or b.id in wanted) and (not mine or b.owner == "")
        ]

    def delete(self, batch_jobs: Iterable[str | BatchJob]) -> list[BatchJob]:
        """Remove each: withdrawn if not submitted yet, cancelled if queued or running."""
        given = [b.id if isinstance(b, BatchJob) else b for b in id_list(batch_jobs)]
        return [self._site.store.remove_batch_job(batch_id) for batch_id in dict.fromkeys(given)]


class TransferManager:
    """The transfer items of this site's jobs as its transfer service moves them, with the
    interface of the central one (``conn.transfers``)."""

    def __init__(self, site: Site) -> None:
        self._site = site

    def filter(self, *, site: str | None = None, state: str | Iterable[str] | None = None,
               job: str | JobHandle | Iterable[str | JobHandle] | None = None, task: str | None = None,
               direction: str | None = None, location: str | None = None,
               limit: int | None = None) -> list[TransferItem]:  # fmt: skip
        """Items in a state (or one of several), of a job (an id, a unique prefix, a job, or a
        list of them), of a task, going one way, to or from one location; oldest first."""
        self._site.check_site(site)
        job_ids = None if job is None else self._site.jobs.full_ids(job_refs(job))
        found = self._site.store.transfers(transfer_filter(state, job_ids, task, direction, location, limit))
        return [msgspec.structs.replace(item, site=self._site.name) for item in found]

    def counts(self, *, site: str | None = None) -> dict[str, int]:
        """Items by state."""
        self._site.check_site(site)
        return self._site.store.transfer_counts()


class Site:
    """An open local site: settings, store, apps, jobs, batch jobs, transfer items and reports."""

    def __init__(self, layout: SiteLayout) -> None:
        self.layout = layout
        self.settings: Settings = layout.load_settings()
        self.store: Store = open_store(layout, self.settings)
        self.apps = AppManager(self)
        self.jobs = JobManager(self)
        self.batch_jobs = BatchJobManager(self)
        self.transfers = TransferManager(self)
        self.reports = Reports(StoreRows(self.store, layout.data, self.name, self.check_site))
        self.declared: dict[str, str] = {}

    def check_site(self, site: str | None) -> None:
        """A site named to this connection must be this one."""
        if site is not None and site != self.name:
            raise SiteError(f"this connection is to site {self.name}, not {site!r}; connect to that site, or to the "
                            "central database to reach any site")  # fmt: skip

    def events(
        self, job: str | JobHandle | None = None, limit: int | None = None, where: EventFilter | None = None
    ) -> list[Event]:
        return self.store.events(self._job_id(job), limit=limit, f=where)

    def follow_events(
        self, job: str | JobHandle | None = None, where: EventFilter | None = None, poll: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[Event]:  # fmt: skip
        """The events ``events`` lists, then each new one as it happens, until the caller stops.

        A poll reads on from the newest event seen or passed over (ids only grow, in the order
        of commits), so one that matches nothing costs a look at the store's newest event."""
        job_id, where = self._job_id(job), where or EventFilter()
        cursor = _newest_event(self.store, 0)
        for event in self.store.events(job_id, f=where):
            cursor = max(cursor, event.id)
            yield event
        where = msgspec.structs.replace(where, latest=None)
        while True:
            sleep(poll)
            newest = _newest_event(self.store, cursor)  # before the read: what comes after it is read next time
            for event in self.store.events(job_id, after=cursor, f=where):
                newest = max(newest, event.id)
                yield event
            cursor = newest

    def _job_id(self, job: str | JobHandle | None) -> str | None:
        return None if job is None else job.id if isinstance(job, JobHandle) else self.store.resolve_id(job)

    def install(self, app: App, site: str | None, code: str, timeout: float) -> App:
        """Write a declared app to apps/ (this site is the caller's own) and record it."""
        from balsamd.declare import AppRefused

        self.check_site(site)
        file = declared_app_file(app.name)
        existing = self.apps.sync().get(app.name)
        if existing is not None and existing.source != file:
            raise AppRefused(f"the site has its own app {app.name} (apps/{existing.source}), which a declared app "
                             "never replaces; rename your class")  # fmt: skip
        replace_file(self.layout.apps / file, code, PRIVATE.file)
        installed = self.apps.sync()[app.name]
        if installed.error:
            raise AppRefused(installed.error)
        return installed

    @property
    def path(self) -> Path:
        return self.layout.root

    @property
    def name(self) -> str:
        return self.layout.name(self.settings)

    def close(self) -> None:
        forget(self)
        self.store.close()

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _changes(changes: Mapping[str, Any]) -> JobChanges:
    """A user's edit as the store takes it: arrays encoded, fields checked."""
    given = dict(changes)
    if "parameters" in given:
        try:
            given["parameters"] = arrays.encode(given["parameters"])
        except arrays.ArrayError as exc:
            raise Refused("edit", [str(exc)]) from None
    try:
        return msgspec.convert(given, JobChanges)
    except msgspec.ValidationError as exc:
        raise Refused("edit", [explained(str(exc))]) from None
