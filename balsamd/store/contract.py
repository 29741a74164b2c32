"""The site store's contract: every operation, declared once.

``Store`` lists what can be done to a site's jobs, apps, sessions, batch jobs and sync state,
each operation with its arguments and result as types.  Everything else is made from it:

- the local store (``SiteStore``) implements it, and checks every write inside (``validate``);
- the RPC's method table, the daemon's handlers and the client's stubs are generated from
  ``OPERATIONS`` (``balsamd.rpc``), as is the launcher's store process;
- one test suite runs over every transport of it (``tests/store``).

A new operation is one method here and its implementation in ``SiteStore``.

Arguments travel as a Struct per operation (made from the signature), so a transport decodes
exactly the declared types and refuses anything else.  ``now`` is the caller's clock where an
operation depends on time (tests choose it; ``None`` is the store's own clock).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NewType, Protocol

import msgspec

from balsamd.models import (
    App,
    BatchJob,
    BatchJobState,
    ClaimLimits,
    DeclaredApp,
    Event,
    Intent,
    IntentOutcome,
    Job,
    JobChanges,
    JobSpec,
    RemoveOutcome,
    Session,
    StateUpdate,
    UpdateOutcome,
)
from balsamd.reports.records import BusyBin, CountBin, FailureEvent, ReportFilter, RunSpan
from balsamd.states import JobState
from balsamd.store.batch import BacklogStats
from balsamd.store.queries import EventFilter, JobFilter
from balsamd.store.watch import Activity, Failure, RunningLoad
from balsamd.transfers.backend import Direction, ItemResult
from balsamd.transfers.records import (
    TransferBacklog,
    TransferFilter,
    TransferItem,
    TransferOutcome,
    TransferTask,
)

# A claim's jobs as the one JSON document SQLite builds of them: passed on by every transport as
# it is and decoded once, by the launcher, with ``store.queries.claimed_jobs``.
ClaimedJobs = NewType("ClaimedJobs", str)

# the job rows sync pushes (``models.JOB_COLUMNS``, containers as JSON text), and the store's
# change counter up to which they are complete
JobRows = tuple[list[tuple[Any, ...]], int]
# the transfer item rows sync pushes (``transfers.records.ITEM_COLUMNS`` and each row's seq), and
# the seq up to which they are complete
TransferRows = tuple[list[tuple[Any, ...]], int]

F = typing.TypeVar("F", bound=Callable[..., Any])


def operation(*, write: bool, hot: bool = False, durable: bool = False) -> Callable[[F], F]:
    """Mark a method of a contract as an operation: ``write`` ones are one write transaction,
    ``hot`` ones are the short calls of a launcher's loop (a server may answer them at once).

    ``durable`` ones are on disk before they return (the WAL is synced at their commit, and with
    it every commit before).  The others survive the death of any process, but a power loss may
    take back their last commits (never corrupting the store).  An operation is durable when its
    caller acts on the answer outside the store, where nothing would find the loss: it tells a
    person or the central database that something is done, or it starts runs.  What is done
    again when lost is not: heartbeats, releases, the opening and ending of sessions (a
    session's first claim syncs its opening with it), hooks' outcomes (the hook runs again),
    apps (recorded again from ``apps/``) and sync's cursors (the next round finds the loss)."""

    def mark(fn: F) -> F:
        fn.__operation__ = (write, hot, durable)  # type: ignore[attr-defined]
        return fn

    return mark


class Store(Protocol):
    """Every operation on a site store.  Each is one transaction and says what it does."""

    # ----- apps ---------------------------------------------------------------------------

    @operation(write=True)
    def put_apps(self, apps: list[App], replace_all: bool = False, now: float | None = None) -> None:
        """Insert or update app records; with replace_all, drop the apps not given."""
        ...

    @operation(write=False)
    def apps(self) -> dict[str, App]:
        """Every registered app by name."""
        ...

    @operation(write=False)
    def declared_apps(self) -> list[DeclaredApp]:
        """Apps central users declared and the site accepted (``apply_intents``), by name."""
        ...

    @operation(write=True)  # lost, the file is written again: the same text
    def declared_app_written(self, name: str, intent_id: str) -> bool:
        """Record that the daemon wrote the declared app to apps/ as ``intent_id`` installed it;
        False when a later declaration replaced it meanwhile (it is written next)."""
        ...

    # ----- jobs: create and read ------------------------------------------------------------

    @operation(write=True, durable=True)  # the caller is told the jobs exist; nothing else holds them
    def create_jobs(self, specs: list[JobSpec], now: float | None = None) -> list[Job]:
        """Check every request against its app and the site's rules, then create all of them
        or none (JobSpecError lists every problem).  A job whose parent failed is created
        FAILED; one with unfinished parents AWAITING_PARENTS; others settle as far as their
        default hooks go."""
        ...

    @operation(write=False, hot=True)
    def get(self, job_id: str) -> Job: ...

    @operation(write=False, hot=True)
    def resolve_id(self, text: str) -> str:
        """A full id from an id or a unique prefix of one (ids are long to type)."""
        ...

    @operation(write=False)
    def filter(self, f: JobFilter | None = None) -> list[Job]:
        """The jobs the filter means, oldest first."""
        ...

    @operation(write=False, hot=True)
    def count(self, f: JobFilter | None = None) -> int: ...

    @operation(write=False, hot=True)
    def counts_by_state(self, f: JobFilter | None = None) -> dict[str, int]: ...

    @operation(write=False)
    def events(
        self, job_id: str | None = None, after: int = 0, limit: int | None = None, f: EventFilter | None = None
    ) -> list[Event]:
        """State changes after event id ``after``, in order: the first ``limit`` of them, or
        with ``f.latest`` the last so many; only those ``f`` means (states, times, tags, app)."""
        ...

    # ----- jobs: what a live view watches (each read follows an index, none reads all jobs) --------

    @operation(write=False)
    def activity(self, f: JobFilter | None = None, after_move: int = 0, since: float = 0.0) -> Activity:
        """With ``after_move`` 0: jobs by state (of the filter's app and tags), and the runs that
        reached JOB_FINISHED from ``since`` on, by minute.  Else what the moves after
        ``after_move`` changed: each state's net change, and those finished runs among them."""
        ...

    @operation(write=False)
    def recent_failures(self, f: JobFilter | None = None, limit: int = 10) -> list[Failure]:
        """Jobs now FAILED, RUN_ERROR or RUN_TIMEOUT (of the filter's app and tags), the latest first."""
        ...

    @operation(write=False)
    def running_load(self) -> dict[str, RunningLoad]:
        """Per batch job id ("" for launchers outside one): its RUNNING jobs and the nodes they occupy."""
        ...

    @operation(write=False)
    def finished_counts(self, f: ReportFilter, bin_sec: float) -> list[CountBin]:
        """Jobs of the filter that finished (JOB_FINISHED) in [f.since, f.until), counted per
        bin of ``bin_sec`` from ``f.since`` (bins without any are left out)."""
        ...

    @operation(write=False)
    def run_spans(self, f: ReportFilter) -> list[RunSpan]:
        """Runs of the filter's jobs that overlap [f.since, f.until): each from its RUNNING to
        the state that ended it (none while it runs, or when that came after the window), with
        the job's app and nodes.  Ordered by start."""
        ...

    @operation(write=False)
    def busy_time(self, f: ReportFilter, bin_sec: float) -> list[BusyBin]:
        """How busy the filter's runs kept nodes in each bin of ``bin_sec`` from ``f.since``:
        the runs of ``run_spans``, summed per bin in the store (bins without any left out)."""
        ...

    @operation(write=False)
    def failure_events(self, f: ReportFilter, limit: int = 10_000) -> list[FailureEvent]:
        """Failed runs (RUN_ERROR, RUN_TIMEOUT) and jobs failed otherwise (FAILED not after a
        failed run) in [f.since, f.until), the most recent first, at most ``limit``."""
        ...

    # ----- jobs: what users change ------------------------------------------------------------

    @operation(write=True, durable=True)  # a person is told
    def kill(self, job_ids: list[str], now: float | None = None) -> dict[str, JobState]:
        """Kill jobs (all or none); a running one is stopped by its launcher at its next heartbeat."""
        ...

    @operation(write=True, durable=True)  # a person is told
    def retry(self, job_ids: list[str], now: float | None = None) -> dict[str, JobState]:
        """FAILED / RUN_ERROR / RUN_TIMEOUT -> RESTART_READY (or back to waiting on parents);
        descendants that failed only because of a retried job wait for it again."""
        ...

    @operation(write=True, durable=True)  # a person is told
    def delete(self, job_ids: list[str]) -> RemoveOutcome:
        """Remove jobs with their events; refuses, per job and saying why, jobs a launcher
        holds or that unfinished jobs outside the request depend on."""
        ...

    @operation(write=True, durable=True)  # a person is told
    def update_jobs(self, edits: dict[str, JobChanges], now: float | None = None) -> list[Job]:
        """Edit parameters, tags, data or resources (nodes, ranks per node, wall time) of jobs
        that have not started, all or none: the new values are checked as a new job's would be,
        and one job refused leaves every job as it was.  Returns the jobs, edited, in order."""
        ...

    @operation(write=True, durable=True)  # a person is told
    def add_parents(self, job_id: str, parent_ids: list[str], now: float | None = None) -> Job:
        """Make more jobs parents of a job that has not started (Balsam's ``dep``): unless they
        all finished, it waits for them again (AWAITING_PARENTS), released as parents are.
        Refuses unknown ids, a cycle, a child that started or ended, a parent that failed or
        was killed; adds all of them or none."""
        ...

    # ----- jobs: what the daemon's services record ----------------------------------------------

    @operation(write=True)
    def finish_hook(
        self, job_id: str, expected: JobState, state: JobState, reason: str = "",
        data: dict[str, Any] | None = None, now: float | None = None,
    ) -> bool:  # fmt: skip
        """Record a hook's outcome if the job is still where the hook found it (a user may
        have killed it meanwhile); returns whether it was applied."""
        ...

    @operation(write=True)
    def resolve_waiting(self, limit: int = 1000, now: float | None = None) -> int:
        """Release or fail AWAITING_PARENTS jobs whose parents settled without them noticing
        (children that arrived later through sync); returns how many moved."""
        ...

    # ----- transfers: what the transfer service asks and records ------------------------------

    @operation(write=False)
    def transfer_work(self, limit: int, now: float | None = None) -> list[TransferItem]:
        """Pending items whose job waits for them (READY for inbound, POSTPROCESSED for
        outbound) and whose next try is due, at most ``limit``: those of the oldest jobs, by id."""
        ...

    # a backend acts on the task outside the store: lost, a restart would not resume it
    @operation(write=True, durable=True)
    def start_transfer_task(
        self, task_id: str, direction: Direction, location: str, item_ids: list[int], now: float | None = None
    ) -> TransferTask:
        """Bind those of the items that are still pending, going ``direction`` to or from
        ``location``, with their job still waiting for them, to a new task; returns the task with
        its items (none bound: no task is recorded)."""
        ...

    @operation(write=True, durable=True)  # recorded before the backend submits with it
    def transfer_external_id(self, task_id: str, external_id: str) -> None:
        """Record the backend's own id for a task (Globus's submission id), so a resumed task
        submits with it again and is never run twice."""
        ...

    @operation(write=True)  # lost, the resumed task places the files again and records them then
    def transfer_items_done(self, task_id: str, results: list[ItemResult], now: float | None = None) -> TransferOutcome:
        """Record items of a running task as moved before the task ends (all ``results`` must be
        ok), so that their jobs move on as finishing the task would move them; the task stays
        running and its finish leaves these items as they are.  Items not running in the task
        (recorded before) are left as they are."""
        ...

    @operation(write=True, durable=True)  # the backend's work is done: lost, it would be done again
    def finish_transfer_task(
        self, task_id: str, results: list[ItemResult], max_attempts: int, backoff_s: float, now: float | None = None
    ) -> TransferOutcome:
        """Record a task's results: done items; failed ones wait ``backoff_s`` (doubling) for
        another try, or after ``max_attempts`` fail their job with the backend's error.  A job
        whose items that way are all done moves on (STAGED_IN, or STAGED_OUT then
        JOB_FINISHED).  A task finished before is left as it is."""
        ...

    @operation(write=False)
    def transfer_tasks(self) -> list[TransferTask]:
        """Tasks recorded and not finished, with their items: what a restarted daemon resumes."""
        ...

    @operation(write=False)
    def transfers(self, f: TransferFilter | None = None) -> list[TransferItem]:
        """The transfer items the filter means, oldest first."""
        ...

    @operation(write=False)
    def transfer_counts(self) -> dict[str, int]:
        """Transfer items by state."""
        ...

    @operation(write=False)
    def transfer_backlog(self) -> dict[str, TransferBacklog]:
        """Per direction, the pending items whose job waits for them, and since when the oldest did."""
        ...

    # ----- launcher sessions ------------------------------------------------------------------

    @operation(write=True)
    def open_session(
        self, label: str = "", batch_job_id: str | None = None, host: str | None = None,
        pid: int | None = None, now: float | None = None,
    ) -> Session:  # fmt: skip
        """A launcher's lease on what it claims (host and pid: the caller's, else the store's)."""
        ...

    @operation(write=False)
    def get_session(self, session_id: str) -> Session: ...

    @operation(write=False)
    def sessions(self, open_only: bool = False) -> list[Session]: ...

    @operation(write=True, hot=True)
    def heartbeat(
        self, session_id: str, running: Sequence[str] = (), waiting: Sequence[str] = (), now: float | None = None
    ) -> list[str]:
        """Renew the session; returns those of ``running`` the launcher must stop (killed,
        or no longer bound to this session) and those of ``waiting`` (claimed, not started)
        it must not start (no longer bound to it).  SessionGone when it is not open."""
        ...

    # the launcher runs what it claimed: a claim the store forgot could be claimed again by
    # another launcher, and the same job would run twice at once
    @operation(write=True, hot=True, durable=True)
    def claim(self, session_id: str, limits: ClaimLimits, now: float | None = None) -> ClaimedJobs:
        """Bind up to ``limits.max_jobs`` fitting runnable jobs to the session.  Two claimers
        never get the same job; a claim resent with the same request id returns what the first
        bound.  Claimed jobs keep their state until reported RUNNING; ``release`` gives back
        unstarted ones."""
        ...

    @operation(write=True, hot=True)
    def release(self, session_id: str, job_ids: list[str], now: float | None = None) -> int:
        """Hand back claimed jobs this session did not start; returns how many went back."""
        ...

    # the launcher forgets what was acknowledged: a lost end means running the job again (for
    # hours, perhaps), a lost start a heartbeat telling the launcher to stop a run the store
    # does not know is running
    @operation(write=True, hot=True, durable=True)
    def update_states(self, session_id: str, updates: list[StateUpdate], now: float | None = None) -> UpdateOutcome:
        """Apply a launcher's batch of state reports, in order.  Idempotent: a report recorded
        before is a duplicate; one for a job this session does not hold, or not allowed from its
        state, is rejected with the reason.  One bad report never blocks the batch."""
        ...

    @operation(write=True)
    def close_session(self, session_id: str, now: float | None = None) -> None:
        """End a session: unstarted claims go back, runs still marked RUNNING time out."""
        ...

    @operation(write=True)
    def expire_sessions(self, expiry_sec: float, now: float | None = None) -> list[str]:
        """Expire sessions silent for ``expiry_sec``; each one's RUNNING jobs become
        RUN_TIMEOUT exactly once.  None expires within ``expiry_sec`` of the store finding its
        disk full: heartbeats could not be recorded then."""
        ...

    # ----- batch jobs ---------------------------------------------------------------------------

    @operation(write=True, durable=True)  # a person is told
    def create_batch_job(self, batch: BatchJob, now: float | None = None) -> BatchJob:
        """Record a batch job request (checked against the site's limits) as pending submission."""
        ...

    @operation(write=False)
    def batch_jobs(self, states: list[BatchJobState] | None = None) -> list[BatchJob]: ...

    @operation(write=False)
    def get_batch_job(self, batch_id: str) -> BatchJob: ...

    @operation(write=True, durable=True)  # records a submission to the scheduler: lost, it is made again
    def update_batch_job(
        self, batch_id: str, state: BatchJobState | None = None, expect: BatchJobState | None = None,
        scheduler_id: str | None = None, status_info: str | None = None, start_time: float | None = None,
        end_time: float | None = None,
    ) -> BatchJob:  # fmt: skip
        """Change a batch job's state (checked against the batch transition table) and the
        fields given (None leaves a field as it is).  With ``expect``, nothing happens unless it
        is still in that state (a user may have removed it while it was being submitted)."""
        ...

    @operation(write=True, durable=True)  # a person is told
    def remove_batch_job(self, batch_id: str) -> BatchJob:
        """A user's removal: never submitted -> finished at once; queued or running -> pending
        deletion, which the scheduler service cancels."""
        ...

    @operation(write=False)
    def backlog_stats(self, max_nodes: int, max_wall_time_min: float, filter_tags: dict[str, str]) -> BacklogStats:
        """Runnable work as the elastic queue sees it, split by what its limits allow."""
        ...

    # ----- sync with the central database ---------------------------------------------------------

    @operation(write=False)
    def store_id(self) -> str:
        """This store's identity: a replaced or restored store has another."""
        ...

    @operation(write=False)
    def meta_get(self, key: str) -> str | None: ...

    @operation(write=True)
    def meta_set(self, values: dict[str, str]) -> None: ...

    @operation(write=False)
    def max_seq(self) -> int:
        """The store's change counter: every write transaction stamps its rows with the next."""
        ...

    @operation(write=False)
    def job_rows_changed(self, after_seq: int, limit: int) -> JobRows:
        """Job rows stamped after ``after_seq``, whole transactions at a time, and the seq up
        to which the batch is complete."""
        ...

    @operation(write=False)
    def transfer_rows_changed(self, after_seq: int, up_to_seq: int, limit: int) -> TransferRows:
        """Transfer item rows stamped in (``after_seq``, ``up_to_seq``], whole transactions at a
        time (more than ``limit`` only when one transaction alone has more), and the seq up to
        which the batch is complete.  Sync pushes items only as far as it pushed their jobs."""
        ...

    @operation(write=False)
    def jobs_finished(self, after_seq: int, up_to_seq: int, apps: list[str]) -> list[Job]:
        """Jobs of ``apps`` that are JOB_FINISHED and whose rows were stamped in
        (``after_seq``, ``up_to_seq``]: those that finished in that window, for the daemon's
        cleanup of their files."""
        ...

    @operation(write=False)
    def batch_jobs_changed(self, after_seq: int, up_to_seq: int) -> list[BatchJob]: ...

    @operation(write=False)
    def jobs_deleted(self, after_seq: int, up_to_seq: int) -> list[str]: ...

    @operation(write=False)
    def apps_changed(self, after_seq: int, up_to_seq: int) -> list[App]: ...

    @operation(write=True, durable=True)  # acknowledged to the central database right after
    def apply_intents(self, intents: list[Intent], now: float | None = None) -> dict[str, IntentOutcome]:
        """Apply requests from the central database, each at most once (its outcome is kept
        with it, so one seen again returns the outcome recorded then).  Every field is checked:
        a malformed intent is rejected with the reason, never raised."""
        ...

    @operation(write=False)
    def intent_outcomes(self, intent_ids: list[str]) -> dict[str, IntentOutcome]:
        """The outcome recorded for each of these intents the store applied; one it has no
        record of (never applied, or lost with the store's last commits) is left out."""
        ...

    def close(self) -> None:
        """Release the transport (not an operation)."""
        ...


@dataclass(frozen=True)
class Operation:
    """One operation of a contract, as transports need it."""

    name: str
    args: type[msgspec.Struct]  # the arguments, in the signature's order
    result: Any  # the declared result type (None for none)
    write: bool
    hot: bool
    durable: bool

    def bind(self, target: object) -> Callable[[Any], Any]:
        """A handler: decoded arguments in, ``target``'s answer out."""
        method = getattr(target, self.name)
        astuple = msgspec.structs.astuple
        return lambda args: method(*astuple(args))


def declare(contract: type) -> dict[str, Operation]:
    """The operations of a contract class, with Structs made from their signatures."""
    ops = {}
    for name, fn in vars(contract).items():
        marks = getattr(fn, "__operation__", None)
        if marks is None:
            continue
        hints = typing.get_type_hints(fn)
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for param in list(inspect.signature(fn).parameters.values())[1:]:
            if param.kind is not param.POSITIONAL_OR_KEYWORD:
                raise TypeError(f"{contract.__name__}.{name}: operations take plain parameters, not {param}")
            hint = hints[param.name]
            fields.append((param.name, hint) if param.default is param.empty else (param.name, hint, param.default))
        camel = "".join(part.title() for part in name.split("_"))
        args = msgspec.defstruct(f"{camel}Args", fields, forbid_unknown_fields=True)
        ops[name] = Operation(name, args, hints["return"], *marks)
    return ops


OPERATIONS: dict[str, Operation] = declare(Store)


def missing_operations(implementation: type) -> list[str]:
    """Operations ``implementation`` lacks or takes other parameters for (its own may add
    keyword-only ones after them); empty when it implements the whole contract."""
    wrong = []
    for name in OPERATIONS:
        mine = getattr(implementation, name, None)
        if mine is None:
            wrong.append(name)
            continue
        declared = list(inspect.signature(getattr(Store, name)).parameters)
        params = [p.name for p in inspect.signature(mine).parameters.values() if p.kind is not p.KEYWORD_ONLY]
        if params != declared:
            wrong.append(f"{name}{tuple(params[1:])}, declared {tuple(declared[1:])}")
    return wrong
