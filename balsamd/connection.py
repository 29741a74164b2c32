"""One Python API, local and remote: what ``balsamd.connect(...)`` returns, declared once.

``connect(SITE_PATH)`` gives the site through its store (``api.Site``: the store file on the
daemon's host, the daemon's RPC elsewhere); ``connect("postgresql://...")`` gives the central
database as the connecting user (``sync.remote.CentralConnection``).  Both keep the protocols
below, and ``tests/test_connection.py`` runs one suite over both.  Where the two must differ it
is in what an action returns: a site acts at once and says where it left each job; central
records the request as an intent (its id) that the site applies and answers
(``jobs.intent_outcome``).

``ApplicationDefinition.submit`` and ``.sync`` use the connection given to them, else the most
recent ``balsamd.connect(...)`` of this process, else ``$BALSAMD_CENTRAL`` (a DSN).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from balsamd.models import App, Event, Job
from balsamd.transfers.records import TransferItem

if TYPE_CHECKING:
    from balsamd.store.queries import EventFilter

CENTRAL_ENV = "BALSAMD_CENTRAL"


class JobView(Protocol):
    """A job as either side hands it out: its fields as attributes, and these."""

    @property
    def id(self) -> str: ...

    @property
    def record(self) -> Job: ...

    @property
    def site(self) -> str:
        """The name of the site the job is at."""
        ...

    def refresh(self) -> JobView: ...

    def events(self) -> list[Event]: ...

    def result(self, timeout: float | None = None, poll: float = ...) -> Any:
        """The run's return value (read as data, never unpickled); raises the exception it raised."""
        ...


class _Sited(Protocol):
    @property
    def site(self) -> str: ...

    @property
    def record(self) -> Job: ...


class BalsamNames:
    """Balsam's names for a job's site and app, on the jobs either side hands out.  Sites are
    known by name, never by number, so ``site_id`` is the site's name too: a script passing
    ``site_id=job.site_id`` on reaches the same site."""

    __slots__ = ()

    @property
    def site_id(self: _Sited) -> str:
        return self.site

    @property
    def site_name(self: _Sited) -> str:
        return self.site

    @property
    def app_id(self: _Sited) -> str:
        return self.record.app


# a job's id, or a job this same connection handed out (each side takes its own kind)
JobRef = Any


class Jobs(Protocol):
    """``conn.jobs``."""

    def create(self, app: str, workdir: str, site: str | None = None, **fields: Any) -> Any: ...

    def bulk_create(self, specs: Iterable[dict[str, Any]], site: str | None = None) -> list[Any]:
        """All of them or none; numpy arrays among the parameters are sent as arrays."""
        ...

    def get(self, job_id: str) -> Any: ...

    def filter(
        self, *, site: str | None = None, state: str | Iterable[str] | None = None, tags: dict[str, str] | None = None,
        app: str | None = None, ids: Iterable[str] | None = None, limit: int | None = None,
    ) -> list[Any]: ...  # fmt: skip

    def count(
        self, *, site: str | None = None, state: str | Iterable[str] | None = None, tags: dict[str, str] | None = None,
        app: str | None = None,
    ) -> int: ...  # fmt: skip

    def counts_by_state(
        self, *, site: str | None = None, tags: dict[str, str] | None = None, app: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> dict[str, int]:  # fmt: skip
        """Jobs by state, in the order of the states (states with none left out)."""
        ...

    def update(self, job: JobRef, **changes: Any) -> Any:
        """Edit parameters, tags, data or resources of a job that has not started."""
        ...

    def add_parents(self, job: JobRef, parents: Iterable[JobRef]) -> Any:
        """Give a job that has not started more parents; it waits for them."""
        ...

    def kill(self, jobs: Iterable[JobRef]) -> Any: ...

    def retry(self, jobs: Iterable[JobRef]) -> Any: ...

    def delete(self, jobs: Iterable[JobRef]) -> Any: ...

    def as_completed(self, jobs: Iterable[Any], timeout: float | None = None, poll: float = ...) -> Iterator[Any]:
        """Each job once it is final (JOB_FINISHED, FAILED, KILLED), as it becomes so; one query
        per poll for all that are pending.  TimeoutError naming how many are not."""
        ...

    def wait(self, jobs: Iterable[Any], timeout: float | None = None) -> list[Any]:
        """The jobs, in the order given, once every one is final."""
        ...

    def wait_for(
        self, jobs: Iterable[JobRef] | None = None, *, tags: dict[str, str] | None = None, app: str | None = None,
        timeout: float | None = None, progress: Any = None,
    ) -> Any:  # fmt: skip
        """Until every job given (or with these tags, of this app; every one when none is named)
        is final, or ``timeout`` seconds passed: a ``waiting.WaitOutcome`` (counts, and a
        screenful of the failed jobs with their reasons), polling only counts by state."""
        ...


class Apps(Protocol):
    def list(self, site: str | None = None) -> list[App]:
        """The apps the site (each site, for central) publishes, by name."""
        ...


# a batch job's id, or a batch job this same connection handed out
BatchRef = Any


class BatchJobs(Protocol):
    """``conn.batch_jobs``: allocations of a site's scheduler that run its jobs.  A site records
    a request at once and returns the batch job; central records it as an intent the site
    checks against its rules and applies (a batch job pending submission until then, read
    from its intent), and ``delete`` returns the intents' ids."""

    def create(self, num_nodes: int, wall_time_min: int, site: str | None = None, **fields: Any) -> Any:
        """Ask for a batch job (``job_mode``, ``queue``, ``project``, ``filter_tags``,
        ``partitions``, ``optional_params``), checked against the site's rules."""
        ...

    def get(self, batch_id: str, site: str | None = None) -> Any: ...

    def filter(
        self, *, site: str | None = None, state: Any = None, ids: Iterable[str] | None = None, mine: bool = False
    ) -> list[Any]:
        """Batch jobs in a state (or one of several), with these ids, or only those you asked
        for (``mine``), oldest first."""
        ...

    def delete(self, batch_jobs: Iterable[BatchRef]) -> Any:
        """Remove each (withdrawn if not submitted yet, cancelled if queued or running); only
        batch jobs you asked for."""
        ...


class Transfers(Protocol):
    """``conn.transfers``: the files jobs bring in and send out (their app's slots, each filled
    with LOCATION:/path), as their site moves them.  Items are read here, never changed: the
    site's transfer service moves them, and a retry of the job tries the failed ones again.
    Through central, the items of the jobs you own; each names its site."""

    def filter(
        self, *, site: str | None = None, state: str | Iterable[str] | None = None, job: Any = None,
        task: str | None = None, direction: str | None = None, location: str | None = None,
        limit: int | None = None,
    ) -> list[TransferItem]:  # fmt: skip
        """Items in a state (or one of several), of a job (a JobRef, or a list of them), of a
        task, going one way ("in" or "out"), to or from one location; oldest first."""
        ...

    def counts(self, *, site: str | None = None) -> dict[str, int]:
        """Items by state."""
        ...


class Connection(Protocol):
    @property
    def jobs(self) -> Jobs: ...

    @property
    def apps(self) -> Apps: ...

    @property
    def batch_jobs(self) -> BatchJobs: ...

    @property
    def transfers(self) -> Transfers: ...

    @property
    def declared(self) -> dict[str, str]:
        """The module text of each app this connection declared, by name: sent again only
        when it changed."""
        ...

    def events(
        self, job: JobRef | None = None, limit: int | None = None, where: EventFilter | None = None
    ) -> list[Event]:
        """State changes (of ``job``; those ``where`` means), oldest first."""
        ...

    def follow_events(self, job: JobRef | None = None, where: EventFilter | None = None, poll: float = ...,
                      sleep: Any = ...) -> Iterator[Event]:  # fmt: skip
        """What ``events`` lists, then each new one as it arrives, polling every ``poll`` seconds."""
        ...

    def install(self, app: App, site: str | None, code: str, timeout: float) -> App:
        """Install a declared app (``app``: as described here; ``code``: its module) at ``site``
        and return it as the site published it; AppRefused with the site's reason, TimeoutError
        when the site did not answer within ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


class NoConnection(LookupError):
    pass


_recent: list[Connection] = []  # the most recent connect() of this process, for submit() and sync()


def remember(conn: Connection) -> None:
    _recent[:] = [conn]


def forget(conn: Connection) -> None:
    """A closed connection is not used again."""
    if _recent and _recent[0] is conn:
        _recent.clear()


def current(given: Connection | None = None) -> Connection:
    """The connection ``submit`` and ``sync`` use: ``given``, else the most recent
    ``balsamd.connect(...)``, else one to ``$BALSAMD_CENTRAL``."""
    if given is not None:
        return given
    if _recent:
        return _recent[0]
    dsn = os.environ.get(CENTRAL_ENV)
    if dsn:
        from balsamd.api import connect

        return connect(dsn)
    raise NoConnection(
        f"no connection to send the app through: call balsamd.connect(SITE_PATH or DSN) first, set {CENTRAL_ENV} "
        "to the central database's DSN, or pass conn=..."
    )
