"""The records of balsamd, each defined once as a msgspec Struct.

The same Struct is a store row, an RPC frame, a JSON line of ``--json`` output and, for the
settings, the decoded TOML.  Timestamps are float seconds since the epoch.
"""

from __future__ import annotations

import enum
import typing
from typing import Any, Literal

import msgspec

from balsamd.states import JobState


class JobSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user asks for when creating a job: the fields users own (intent).

    Every way of creating a job (CLI, Python API, RPC, the central database) sends these, and
    the store checks them against the app and the site's rules before anything is written."""

    app: str
    workdir: str
    parameters: dict[str, Any] = {}
    tags: dict[str, str] = {}
    data: dict[str, Any] = {}
    parent_ids: list[str] = []
    num_nodes: int = 1
    ranks_per_node: int = 1
    threads_per_rank: int = 1
    threads_per_core: int = 1
    gpus_per_rank: float = 0.0
    node_packing_count: int = 1
    wall_time_min: float = 0.0
    launch_params: dict[str, str] = {}
    # the app's transfer slots this job fills: slot -> "LOCATION:/path" inside the location's base
    transfers: dict[str, str] = {}


class Job(JobSpec, kw_only=True, omit_defaults=False):
    """A job as the store keeps it: the request plus what the site owns (execution)."""

    id: str
    state: JobState = JobState.CREATED
    return_code: int | None = None
    session_id: str | None = None
    batch_job_id: str | None = None
    attempts: int = 0
    state_reason: str = ""
    # a Python app's return value or exception, as data (never a pickle): see balsamd.results
    result: bytes | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 0
    # who asked for it through the central database ("" for jobs made at the site)
    owner: str = ""

    @property
    def footprint(self) -> float:
        """Share of whole nodes this job occupies: num_nodes / node_packing_count."""
        return self.num_nodes / self.node_packing_count

    @property
    def cpus_per_node(self) -> float:
        return self.ranks_per_node * self.threads_per_rank / self.threads_per_core

    @property
    def gpus_per_node(self) -> float:
        return self.ranks_per_node * self.gpus_per_rank


# The columns of a job wherever it is a row (the site store, the central database): its fields,
# those holding containers as JSON text.
JOB_COLUMNS: tuple[str, ...] = Job.__struct_fields__
JSON_COLUMNS: frozenset[str] = frozenset(
    f.name for f in msgspec.structs.fields(Job) if typing.get_origin(f.type) in (dict, list)
)
SPEC_FIELDS: tuple[str, ...] = JobSpec.__struct_fields__
_json_encode = msgspec.json.Encoder().encode


def _row(record: msgspec.Struct, columns: tuple[str, ...], json_columns: frozenset[str]) -> list[Any]:
    values = []
    for name in columns:
        value = getattr(record, name)
        if name in json_columns:
            value = _json_encode(value).decode()
        elif isinstance(value, enum.Enum):
            value = str(value)
        values.append(value)
    return values


def job_row(job: Job) -> list[Any]:
    """A job's values in JOB_COLUMNS order, as the store and the central database keep them."""
    return _row(job, JOB_COLUMNS, JSON_COLUMNS)


class Event(msgspec.Struct, kw_only=True):
    """One state change of one job: the append-only history."""

    id: int
    job_id: str
    from_state: JobState | None
    to_state: JobState
    ts: float
    reason: str = ""


class SessionState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"


class Session(msgspec.Struct, kw_only=True):
    """A launcher's lease on the jobs it claimed; kept alive by heartbeats."""

    id: str
    label: str = ""
    host: str = ""
    pid: int = 0
    batch_job_id: str | None = None
    state: SessionState = SessionState.OPEN
    created_at: float = 0.0
    heartbeat_at: float = 0.0
    ended_at: float | None = None


class BatchJobState(enum.StrEnum):
    PENDING_SUBMISSION = "pending_submission"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    SUBMIT_FAILED = "submit_failed"
    PENDING_DELETION = "pending_deletion"


_B = BatchJobState

# who moves a batch job: the CLI (submit, rm), the scheduler service (submit, status polls)
BATCH_TRANSITIONS: dict[BatchJobState, frozenset[BatchJobState]] = {
    _B.PENDING_SUBMISSION: frozenset({_B.QUEUED, _B.SUBMIT_FAILED, _B.FINISHED}),
    _B.QUEUED: frozenset({_B.RUNNING, _B.FINISHED, _B.PENDING_DELETION}),
    _B.RUNNING: frozenset({_B.FINISHED, _B.PENDING_DELETION}),
    _B.PENDING_DELETION: frozenset({_B.FINISHED}),
    _B.SUBMIT_FAILED: frozenset(),
    _B.FINISHED: frozenset(),
}
BATCH_ACTIVE = frozenset({_B.PENDING_SUBMISSION, _B.QUEUED, _B.RUNNING, _B.PENDING_DELETION})


class JobMode(enum.StrEnum):
    MPI = "mpi"
    SERIAL = "serial"


class Partition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A share of a batch job's nodes run by a launcher of its own (Balsam 0.7's partitions)."""

    job_mode: JobMode
    num_nodes: int
    filter_tags: dict[str, str] = {}


class BatchSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a user asks for when requesting a batch job: the fields users own.  The CLI, the
    Python APIs and the central database's intents send these; the store checks them against
    the site's rules before anything is written."""

    num_nodes: int
    wall_time_min: int
    job_mode: JobMode = JobMode.MPI
    project: str = ""
    queue: str = ""
    filter_tags: dict[str, str] = {}
    # with partitions, each runs its own launcher on its share of the nodes, in its own mode,
    # with its own tags; the batch job's job_mode and filter_tags are then unused
    partitions: list[Partition] = []
    # scheduler options, only those the site lists in [scheduler] optional_params
    optional_params: dict[str, str] = {}


class BatchJob(BatchSpec, kw_only=True):
    """A batch job as the store keeps it: the request plus what the site owns."""

    id: str
    state: BatchJobState = BatchJobState.PENDING_SUBMISSION
    scheduler_id: str | None = None
    status_info: str = ""
    created_at: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    origin: str = "user"  # or "elastic": submitted by the elastic queue
    # the central user who asked for it ("" for the site's owner), the only one who may remove
    # it through the central database
    owner: str = ""


# a batch job's columns in the site store and the central database, as for jobs
BATCH_COLUMNS: tuple[str, ...] = BatchJob.__struct_fields__
BATCH_JSON_COLUMNS: frozenset[str] = frozenset(
    f.name for f in msgspec.structs.fields(BatchJob) if typing.get_origin(f.type) in (dict, list)
)
BATCH_SPEC_FIELDS: tuple[str, ...] = BatchSpec.__struct_fields__


def batch_row(batch: BatchJob) -> list[Any]:
    return _row(batch, BATCH_COLUMNS, BATCH_JSON_COLUMNS)


class AppKind(enum.StrEnum):
    COMMAND = "command"
    PYTHON = "python"


class AppParameter(msgspec.Struct, kw_only=True):
    required: bool = True
    default: Any = None
    help: str = ""


class TransferSlot(msgspec.Struct, kw_only=True):
    """A file a job of the app brings in or sends out (Balsam's ``transfers`` entries)."""

    direction: Literal["in", "out"]
    local_path: str = ""
    description: str = ""
    required: bool = False
    recursive: bool = False


class App(msgspec.Struct, kw_only=True):
    """What the store knows of an ApplicationDefinition: enough to validate and run jobs, and
    what the site publishes of it to central."""

    name: str
    kind: AppKind = AppKind.COMMAND
    command_template: str = ""
    parameters: dict[str, AppParameter] = {}
    environment: dict[str, str] = {}
    cleanup_files: list[str] = []
    shell_preamble: str = ""
    # shell_preamble is a method: called for each run, with the run's job (its text is then "")
    preamble_per_job: bool = False
    transfers: dict[str, TransferSlot] = {}
    description: str = ""
    # which lifecycle hooks the class overrides; default hooks are applied inline by the store
    hooks: list[str] = []
    source: str = ""  # file under SITE/apps the class came from
    class_name: str = ""
    # what of the app file balsamd records but does not act on (yet), each naming the attribute
    warnings: list[str] = []
    # why the app cannot be used (its file, what is wrong, what to do); "" when it can
    error: str = ""


class ClaimOrder(enum.StrEnum):
    """Which runnable jobs a claim takes first (its SQL and sort key: ``store.queries.ORDERS``)."""

    SMALL_FIRST = "small_first"  # fewest nodes, then oldest: packs serial work
    LONG_LARGE_FIRST = "long_large_first"  # longest, then widest: fills a large allocation early


class ClaimLimits(msgspec.Struct, kw_only=True):
    """What a launcher can take right now (Balsam's "session acquire" parameters)."""

    max_jobs: int = 1000
    max_nodes_per_job: int | None = None
    max_aggregate_nodes: float | None = None
    max_wall_time_min: float | None = None
    serial_only: bool = False
    filter_tags: dict[str, str] = {}
    apps: list[str] = []
    order: ClaimOrder = ClaimOrder.SMALL_FIRST
    # a claim resent with the same id (its reply was lost) returns the session's unstarted jobs
    # instead of binding more: nothing stays bound to a launcher that does not know it holds it
    request_id: str = ""


class StateUpdate(msgspec.Struct, kw_only=True, array_like=True):
    """A launcher's report of one job's state change (batched over the wire)."""

    job_id: str
    state: JobState
    ts: float
    return_code: int | None = None
    reason: str = ""
    result: bytes | None = None
    # when the run started, if its RUNNING goes with this report of its end (one report per
    # short run instead of two)
    started_at: float | None = None


class UpdateOutcome(msgspec.Struct, kw_only=True):
    """What the store made of a launcher's batch of state reports."""

    applied: list[str] = []
    duplicate: list[str] = []  # recorded before (a report resent after a lost reply)
    rejected: dict[str, str] = {}  # job id -> why


class RemoveOutcome(msgspec.Struct, kw_only=True):
    removed: list[str] = []
    refused: dict[str, str] = {}  # job id -> why, and what to do


class JobChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A user's edit of a job that has not started: the fields given replace the job's."""

    parameters: dict[str, Any] | None = None
    tags: dict[str, str] | None = None
    data: dict[str, Any] | None = None
    num_nodes: int | None = None
    ranks_per_node: int | None = None
    wall_time_min: float | None = None


# the fields of JobChanges that are a job's resources: kept as numbers, checked against the site
RESOURCE_CHANGES = ("num_nodes", "ranks_per_node", "wall_time_min")


class IntentKind(enum.StrEnum):
    """What a user asks of a site through the central database."""

    CREATE = "create"
    KILL = "kill"
    RETRY = "retry"
    UPDATE = "update"
    BATCH_CREATE = "batch_create"
    BATCH_DELETE = "batch_delete"
    DELETE = "delete"
    APP = "app"  # install a declared app (``balsamd.declare``), if the site accepts its author's
    ADD_PARENTS = "add_parents"  # more parents for a job of the author's (Balsam's ``dep``)


def declared_app_file(name: str) -> str:
    """The file of ``SITE/apps/`` a declared app of this name is installed as."""
    return f"declared_{name}.py"


class DeclaredApp(msgspec.Struct, kw_only=True):
    """An app a central user declared and the site accepted: the module text to install as
    ``apps/declared_NAME.py``, and whether the daemon has written it there yet."""

    name: str
    owner: str
    code: str
    intent_id: str
    installed_at: float
    written: bool = False

    @property
    def file(self) -> str:
        return declared_app_file(self.name)


class CentralRow(msgspec.Struct, kw_only=True, frozen=True):
    """What the central database holds under a job id that a create intent names, as sync read
    it there: a row at this site and its owner, or a row at another site (whose owner this site
    does not see)."""

    here: bool
    owner: str = ""


class Intent(msgspec.Struct, kw_only=True):
    """One request from the central database, as its row reads: the site checks every field
    (users write intents with plain SQL)."""

    id: str
    kind: str
    job_id: str
    payload: Any = {}
    owner: str = ""
    # for a create: the central rows under the ids it names, by id (none for an id central
    # does not hold); a create may make only jobs whose rows are here and its owner's
    central: dict[str, CentralRow] = {}


class IntentStatus(enum.StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"


class IntentOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What became of an intent, recorded at the site and in the central database as JSON."""

    status: IntentStatus
    reason: str = ""  # why it was rejected
    created: list[str] = []  # jobs a create made
    states: dict[str, JobState] = {}  # where a kill or retry left each job
    batch_jobs: dict[str, BatchJobState] = {}  # where a batch-job create or delete left it
