"""What a site accepts: every write to the store is checked here, whoever makes it.

The store calls these inside its operations, so the CLI, the Python API, the RPC, the
launcher's store process and the central database's intents all meet the same checks and get
the same messages.  Pure functions: every problem is collected and reported at once, each
saying what to change.

Types are checked where values enter Python from outside (the RPC's decoder, ``job_spec`` for
dicts from users and the central database); meanings are checked here.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable, Mapping
from math import isfinite
from typing import Any

import msgspec

from balsamd import arrays, config
from balsamd.cleanup import glob_problems
from balsamd.config import NodeSettings, SchedulerSettings, Settings
from balsamd.explain import a_kind, explain
from balsamd.jsonvalues import text_problem, value_problems
from balsamd.lifecycle import HOOK_NAMED
from balsamd.models import (
    SPEC_FIELDS,
    App,
    AppKind,
    BatchJob,
    ClaimLimits,
    ClaimOrder,
    Job,
    JobMode,
    JobSpec,
    StateUpdate,
    TransferSlot,
)
from balsamd.states import JobState
from balsamd.tags import tag_problems
from balsamd.templates import PLACEHOLDER, template_problems
from balsamd.transfers.items import transfer_problems
from balsamd.transfers.locations import parse_location

# ids the site makes its own (batch jobs, sessions) travel into file names, job scripts and
# command lines: letters, digits and a few marks, never a path or a line of their own
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# a scheduler's queue, project or job id: what its tools print and take, nothing a shell or a
# job script would read as more than one word
SCHEDULER_WORD = re.compile(config.SCHEDULER_WORD)
SCHEDULER_OPTION = re.compile(config.SCHEDULER_OPTION)
MAX_PARTITIONS = 64
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# a central user's name, as a directory of the site's data/ holding that user's jobs
USER_NAME = re.compile(config.CENTRAL_USER)
USERS_DIR = "users"
LAUNCH_PARAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MAX_TEXT = 64 * 1024  # a reason or status text kept with a record
# Sizes a job's fields may take: every job crosses the store, the RPC and a launcher's loop, where
# one huge job would hold up the runs of all the others.
MAX_VALUES = 1024 * 1024  # a job's parameters, and its data, each as JSON
MAX_WORKDIR = 1024  # characters; and each directory name at most 255 bytes, as filesystems take
MAX_LAUNCH_VALUE = 1024
MAX_COUNT = 1 << 20  # nodes, ranks, threads or jobs sharing a node: beyond any machine
MAX_SHOWN = 3  # workdirs told of when many jobs of a request share them
# what a launcher reports of a run; everything after it is the site's own bookkeeping
REPORTABLE = frozenset({JobState.RUNNING, JobState.RUN_DONE, JobState.RUN_ERROR, JobState.RUN_TIMEOUT})


class SiteRules(msgspec.Struct, kw_only=True):
    """The settings every write is checked against: the nodes' shape and the scheduler's limits."""

    nodes: NodeSettings = msgspec.field(default_factory=NodeSettings)
    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    allowed_launch_params: list[str] = []
    # central users whose declared apps the site installs ([apps] accept_from)
    accept_apps_from: list[str] = []
    # the site's transfer locations: name -> scheme ([transfers.locations]; never their URLs,
    # which name hosts, users and directories central users have no need to see)
    transfer_locations: dict[str, str] = {}

    @classmethod
    def of(cls, settings: Settings) -> SiteRules:
        return cls(
            nodes=settings.nodes, scheduler=settings.scheduler,
            allowed_launch_params=settings.launcher.allowed_launch_params,
            accept_apps_from=settings.apps.accept_from,
            transfer_locations=location_kinds(settings.transfers.locations),
        )  # fmt: skip


def location_kinds(locations: Mapping[str, str]) -> dict[str, str]:
    """name -> scheme of the locations settings.toml names (Settings refuse one that cannot be parsed)."""
    return {name: parse_location(url).scheme for name, url in locations.items()}


class Refused(ValueError):
    """A request the site does not accept; ``problems`` lists every reason."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(f"{where}: " + "; ".join(problems))
        self.where = where
        self.problems = problems


class JobSpecError(Refused):
    """A job request that cannot be accepted."""


def _control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def normalize_workdir(workdir: str) -> str:
    """Workdirs are relative to the site's data/ directory and may not climb out of it."""
    if not workdir or not workdir.strip():
        raise ValueError("workdir is empty; give a path relative to the site's data/ directory")
    problem = text_problem(workdir, f"workdir {workdir[:60]!r}")
    if problem:
        raise ValueError(problem)
    if workdir.startswith("/"):
        raise ValueError(f"workdir {workdir!r} is absolute; give a path relative to the site's data/")
    if ".." in workdir.split("/"):
        raise ValueError(f"workdir {workdir!r} contains '..'; give a path inside the site's data/ directory without it")
    if _control(workdir):
        raise ValueError(f"workdir {workdir!r} contains a control character; give a plain relative path")
    if len(workdir) > MAX_WORKDIR or any(len(part.encode()) > 255 for part in workdir.split("/")):
        raise ValueError(
            f"workdir of {len(workdir)} characters is too long: at most {MAX_WORKDIR}, and 255 bytes a directory name"
        )
    norm = posixpath.normpath(workdir)
    if norm == ".":
        raise ValueError(f"workdir {workdir!r} is data/ itself; give each job its own directory below it")
    return norm


def resolve_parameters(app: App, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Parameters with defaults filled in, and the problems found."""
    problems = []
    unknown = sorted(set(given) - set(app.parameters))
    if unknown:
        known = ", ".join(sorted(app.parameters)) or "none"
        problems.append(
            f"unknown parameter(s) {', '.join(unknown)} for app {app.name} (it takes: {known}); "
            "correct the name or leave it out"
        )
    resolved = dict(given)
    for name, spec in app.parameters.items():
        if name in given:
            continue
        if spec.required:
            hint = f" ({spec.help})" if spec.help else ""
            problems.append(f"missing required parameter {name}{hint}: add -p {name}=VALUE")
        else:
            resolved[name] = spec.default
    return resolved, problems


def number_problems(job: JobSpec) -> list[str]:
    """Numbers no job can have, whatever the site: checked before a request travels anywhere
    (an integer beyond 64 bits could not even be sent to the daemon)."""
    problems = []
    for field in _INT_FIELDS:
        if not 1 <= getattr(job, field) <= MAX_COUNT:
            problems.append(
                f"{field} must be a whole number from 1 to {MAX_COUNT} (got {getattr(job, field)}); "
                "give one in that range"
            )
    for field in ("gpus_per_rank", "wall_time_min"):
        value = getattr(job, field)
        if not math.isfinite(value) or value < 0:
            problems.append(f"{field} must be a finite number, 0 or more (got {value}); give one")
    return problems


def resource_problems(job: JobSpec, nodes: NodeSettings, max_wall_time_min: float | None = None) -> list[str]:
    """Why a job could never run on this site's nodes, or within its longest batch job
    (empty when it fits)."""
    problems = number_problems(job)
    if problems:
        return problems
    if job.num_nodes > nodes.max_nodes:
        problems.append(
            f"num_nodes={job.num_nodes} exceeds the site's max_nodes={nodes.max_nodes} "
            "(lower --num-nodes, or raise [nodes] max_nodes in settings.toml)"
        )
    cpus = job.ranks_per_node * job.threads_per_rank / job.threads_per_core
    if cpus > nodes.cpus_per_node:
        problems.append(
            f"{job.ranks_per_node} ranks x {job.threads_per_rank} threads / {job.threads_per_core} "
            f"threads per core needs {cpus:g} CPUs per node but nodes have {nodes.cpus_per_node} "
            "(lower --ranks-per-node or --threads-per-rank, or spread over more nodes)"
        )
    gpus = job.ranks_per_node * job.gpus_per_rank
    if gpus > nodes.gpus_per_node + 1e-9:
        problems.append(
            f"{job.ranks_per_node} ranks x {job.gpus_per_rank:g} GPUs needs {gpus:g} GPUs per node "
            f"but nodes have {nodes.gpus_per_node} (lower --gpus-per-rank, or set [nodes] "
            "gpus_per_node in settings.toml if the nodes have GPUs)"
        )
    if max_wall_time_min is not None and job.wall_time_min > max_wall_time_min:
        problems.append(
            f"wall_time_min={job.wall_time_min:g} is longer than the site's longest batch job "
            f"(max_wall_time_min={max_wall_time_min:g}; lower --wall-time-min, or raise [scheduler] "
            "max_wall_time_min in settings.toml)"
        )
    if job.num_nodes > 1 and job.node_packing_count > 1:
        problems.append("node_packing_count > 1 only applies to single-node jobs; set it to 1")
    return problems


def launch_param_problems(params: Mapping[str, str], allowed: list[str]) -> list[str]:
    """Launch parameters become options of the MPI launcher, which runs as the site's owner: only
    those the site allows, each an option name."""
    problems = []
    for key, value in params.items():
        if len(value) > MAX_LAUNCH_VALUE:
            problems.append(
                f"launch parameter {key[:40]!r} has a value of {len(value)} characters; at most {MAX_LAUNCH_VALUE}"
            )
        elif not LAUNCH_PARAM.fullmatch(key):
            problems.append(
                f"launch parameter {key[:40]!r} is not an option name: give the MPI launcher's option without "
                "dashes, of letters, digits, _ and - (e.g. --launch-param cpu-bind=core)"
            )
        elif problem := text_problem(value, f"launch parameter {key}'s value"):
            problems.append(problem)
        elif key not in allowed:
            listed = ", ".join(allowed) or "none"
            problems.append(
                f"launch parameter {key!r} is not allowed at this site (allowed: {listed}); its owner may add "
                "it to [launcher] allowed_launch_params in settings.toml"
            )
    return problems


def unknown_app_message(name: str, apps: Mapping[str, App]) -> str:
    known = ", ".join(sorted(apps)) or "none yet"
    if not IDENTIFIER.fullmatch(name):
        return f"app {name[:60]!r} is not an app's name (letters, digits and _); use one of: {known}"
    return f"unknown app {name!r} (known: {known}); create it with `balsamd app create {name} --command ...`"


def job_spec(raw: Any, where: str = "job") -> JobSpec:
    """A JobSpec from a request written as a dict (the CLI, the Python API, an intent in the
    central database), or JobSpecError naming the field that is wrong.  A JobSpec given as it is
    is checked too: it may carry values no transport can send (a set, an object).  numpy arrays
    among the parameters are encoded as tagged values (``balsamd.arrays``)."""
    if isinstance(raw, JobSpec):
        try:
            raw = msgspec.structs.replace(raw, parameters=arrays.encode(raw.parameters))
        except arrays.ArrayError as exc:
            raise JobSpecError(where, [str(exc)]) from None
    else:
        if not isinstance(raw, Mapping):
            raise JobSpecError(where, [
                f"a job request is a dict of fields, not {a_kind(raw)}; give e.g. "
                "{'app': 'hello', 'workdir': 'runs/1', 'parameters': {...}}"
            ])  # fmt: skip
        bad_keys = [k for k in raw if not isinstance(k, str)]
        unknown = sorted(map(str, bad_keys)) or sorted(set(raw) - set(SPEC_FIELDS))
        if unknown:
            raise JobSpecError(where, [
                f"unknown field(s) {unknown}; correct or remove them (a job request takes {sorted(SPEC_FIELDS)})"
            ])  # fmt: skip
        fields = {k: v for k, v in raw.items() if v is not None or k not in ("parameters", "parent_ids")}
        try:
            if "parameters" in fields:
                fields["parameters"] = arrays.encode(fields["parameters"])
        except arrays.ArrayError as exc:
            raise JobSpecError(where, [str(exc)]) from None
        try:
            raw = msgspec.convert(fields, JobSpec)
        except msgspec.ValidationError as exc:
            raise JobSpecError(where, [explained(str(exc))]) from None
    problems = spec_problems(raw)
    if problems:
        raise JobSpecError(where, problems)
    return raw


def job_requests(specs: Any) -> list[Any]:
    """The job requests of a bulk create: a list of them, not one request or something else."""
    if isinstance(specs, Mapping | JobSpec):
        raise JobSpecError("bulk_create", ["it takes a list of job requests, not one; give [request] or use create()"])
    if isinstance(specs, str | bytes) or not isinstance(specs, Iterable):
        raise JobSpecError("bulk_create", [
            f"it takes a list of job requests (dicts of fields), not {a_kind(specs)}"
        ])  # fmt: skip
    return list(specs)


def id_list(items: Any) -> list[Any]:
    """Job ids given to kill, retry or delete: a list, not a string (whose letters are no ids)."""
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise JobSpecError("job ids", [f"give a list of job ids (e.g. [{items!r:.40}]), not {a_kind(items)}"])
    return list(items)


def explained(message: str) -> str:
    """A msgspec ValidationError about a request, as ``field: what is wrong; what to do``."""
    told = explain(message)
    return f"{told.field}: {told.problem}; {told.fix}"


_TEXT_FIELDS = ("app", "workdir")
_INT_FIELDS = ("num_nodes", "ranks_per_node", "threads_per_rank", "threads_per_core", "node_packing_count")
_DICT_FIELDS = ("parameters", "data")
_WORD_DICTS = ("tags", "launch_params", "transfers")


def spec_problems(spec: JobSpec) -> list[str]:
    """Why a request's values cannot be taken whatever they mean: a value of another type than
    its field declares (a JobSpec made in Python is not checked when made), or one its parameters
    and data cannot keep (``jsonvalues``), or text that is not text."""
    if not _plain_types(spec):
        try:
            msgspec.convert(msgspec.structs.asdict(spec), JobSpec)
        except msgspec.ValidationError as exc:
            return [explained(str(exc))]
        except (TypeError, ValueError) as exc:  # a value msgspec cannot even look at
            return [f"a field holds a value that is not plain data ({exc}); give the types a JobSpec declares"]
    problems = number_problems(spec)
    problems += [p for f in _TEXT_FIELDS if (p := text_problem(getattr(spec, f), f"{f} {getattr(spec, f)[:60]!r}"))]
    for field in _WORD_DICTS:
        for key, value in getattr(spec, field).items():
            problem = text_problem(key, f"{field} key {key[:40]!r}") or text_problem(value, f"{field}[{key[:40]!r}]")
            if problem:
                problems.append(problem)
    problems += [p for parent in spec.parent_ids if (p := text_problem(parent, f"parent id {parent[:40]!r}"))]
    for field in _DICT_FIELDS:
        problems += value_problems(getattr(spec, field), field)
    return problems


def _plain_types(spec: JobSpec) -> bool:
    """Whether every field holds exactly its declared type (the common case, decided quickly)."""
    return (
        type(spec.app) is str
        and type(spec.workdir) is str
        and all(type(getattr(spec, f)) is int for f in _INT_FIELDS)
        and type(spec.gpus_per_rank) in (float, int)
        and type(spec.wall_time_min) in (float, int)
        and type(spec.parameters) is dict
        and type(spec.data) is dict
        and type(spec.parent_ids) is list
        and all(type(p) is str for p in spec.parent_ids)
        and all(type(d) is dict and all(type(k) is str and type(v) is str for k, v in d.items())
                for d in (spec.tags, spec.launch_params, spec.transfers))
    )  # fmt: skip


def build_job(
    job_id: str, spec: JobSpec, apps: Mapping[str, App], rules: SiteRules, where: str, owner: str = ""
) -> Job:
    """The Job a valid request becomes (parameters with their defaults), or JobSpecError
    listing every problem.  A central user's job (``owner``) works under ``users/OWNER/`` of the
    site's data: users' jobs never share, nor overwrite, each other's or the site's directories."""
    problems = spec_problems(spec)
    if problems:  # the checks below would trip over values of another type
        raise JobSpecError(where, problems)
    app = apps.get(spec.app)
    if app is None:
        raise JobSpecError(where, [unknown_app_message(spec.app, apps)])
    if app.error:
        raise JobSpecError(where, [f"app {app.name} cannot be used until its file is fixed: {app.error}"])
    try:
        workdir = normalize_workdir(spec.workdir)
    except ValueError as exc:
        problems.append(str(exc))
        workdir = spec.workdir
    if owner:
        if USER_NAME.fullmatch(owner):
            workdir = f"{USERS_DIR}/{owner}/{workdir}"
        else:
            problems.append(f"owner {owner!r} cannot name a directory of the site; only letters, digits and _.@-")
    elif workdir == USERS_DIR or workdir.startswith(f"{USERS_DIR}/"):
        problems.append(f"workdir {workdir!r}: {USERS_DIR}/ of data/ is kept for the jobs of central users; "
                        "give another")  # fmt: skip
    params, param_problems = resolve_parameters(app, spec.parameters)
    problems += param_problems
    if app.kind == AppKind.COMMAND:
        problems += [
            f"parameter {name} holds a numpy array, which only a Python app's run() receives; give text or numbers"
            for name, value in spec.parameters.items()
            if arrays.holds_array(value)
        ]
    problems += resource_problems(spec, rules.nodes, rules.scheduler.max_wall_time_min)
    problems += tag_problems(spec.tags)
    problems += launch_param_problems(spec.launch_params, rules.allowed_launch_params)
    problems += transfer_problems(spec.transfers, app, rules.transfer_locations)
    if len(set(spec.parent_ids)) != len(spec.parent_ids):
        problems.append("parent_ids names a job more than once; give each parent once")
    if problems:
        raise JobSpecError(where, problems)
    fields = {name: getattr(spec, name) for name in SPEC_FIELDS}
    job = Job(id=job_id, **{**fields, "workdir": workdir, "parameters": params}, owner=owner)
    try:  # the job travels as msgpack (RPC, warm workers) and is kept as JSON: it must fit both
        msgspec.msgpack.encode(job)
        sizes = {"parameters": len(msgspec.json.encode(job.parameters)), "data": len(msgspec.json.encode(job.data))}
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError) as exc:
        raise JobSpecError(where, [f"the job cannot be stored ({exc}); give plain values"]) from None
    problems += [
        f"{field} take {size / 1e6:.1f} MB; a job keeps at most {MAX_VALUES / 1e6:.1f} MB of them "
        "(pass large inputs as files in its workdir)"
        for field, size in sizes.items()
        if size > MAX_VALUES
    ]
    if problems:
        raise JobSpecError(where, problems)
    return job


def shared_workdir_problems(jobs: list[Job]) -> list[str]:
    """Jobs of one request that would work in the same directory, writing over each other's
    files (told of the first few)."""
    first: dict[str, int] = {}
    problems: list[str] = []
    for n, job in enumerate(jobs):
        if job.workdir in first and len(problems) < MAX_SHOWN:
            problems.append(f"jobs {first[job.workdir]} and {n} have the same workdir {job.workdir!r}; "
                            "give each job its own")  # fmt: skip
        first.setdefault(job.workdir, n)
    return problems


def limit_problem(limit: int | None) -> str | None:
    """Why ``limit`` cannot bound a listing (None when it can; None means no limit)."""
    if limit is None or (type(limit) is int and 0 <= limit <= 1 << 62):
        return None
    return f"limit must be a whole number, 0 or more (got {limit!r}); give none for no limit"


def batch_problems(batch: BatchJob, rules: SiteRules, active: int) -> list[str]:
    """Everything that keeps this batch job from being submitted, each saying what to change."""
    s = rules.scheduler
    problems = []
    if batch.num_nodes < 1:
        problems.append(f"--num-nodes must be at least 1 (got {batch.num_nodes}); give 1 or more")
    elif batch.num_nodes > rules.nodes.max_nodes:
        problems.append(
            f"--num-nodes {batch.num_nodes} exceeds the site's max_nodes={rules.nodes.max_nodes} "
            "(lower it, or raise [nodes] max_nodes in settings.toml)"
        )
    if batch.wall_time_min < 1:
        problems.append(f"--wall-time-min must be at least 1 (got {batch.wall_time_min}); give 1 or more")
    elif batch.wall_time_min > s.max_wall_time_min:
        problems.append(
            f"--wall-time-min {batch.wall_time_min} exceeds [scheduler] max_wall_time_min={s.max_wall_time_min}"
        )
    for field, allowed in (("queue", s.allowed_queues), ("project", s.allowed_projects)):
        value = getattr(batch, field)
        if allowed and value not in allowed:
            problems.append(f"{field} {value!r} is not allowed here; use one of: {', '.join(allowed)}")
    problems += partition_problems(batch)
    problems += optional_param_problems(batch.optional_params, s.optional_params)
    problems += script_word_problems(batch)
    if batch.origin not in ("user", "elastic"):
        problems.append(f"origin {batch.origin!r} is neither 'user' nor 'elastic'")
    if active >= s.max_queued:
        problems.append(
            f"{active} batch jobs are already pending, queued or running ([scheduler] max_queued={s.max_queued}); "
            "wait for one to finish or remove one with `balsamd queue rm ID`"
        )
    return problems


_JOB_MODES = frozenset(JobMode)


def partition_problems(batch: BatchJob) -> list[str]:
    """Partitions that share out the batch job's nodes: each at least one node, together no more
    than the batch job has, each in a known mode."""
    if not batch.partitions:
        return []
    problems = []
    if len(batch.partitions) > MAX_PARTITIONS:
        problems.append(f"{len(batch.partitions)} partitions is too many; give at most {MAX_PARTITIONS}")
    for n, part in enumerate(batch.partitions):
        if type(part.num_nodes) is not int or part.num_nodes < 1:
            problems.append(f"partition {n}: num_nodes must be a whole number, 1 or more (got {part.num_nodes!r})")
        if part.job_mode not in _JOB_MODES:
            problems.append(f"partition {n}: job_mode {part.job_mode!r} is not one of {', '.join(JobMode)}")
    total = sum(p.num_nodes for p in batch.partitions if type(p.num_nodes) is int)
    if total > batch.num_nodes:
        shares = " + ".join(str(p.num_nodes) for p in batch.partitions)
        problems.append(
            f"partitions take {shares} = {total} nodes, more than the batch job's num_nodes={batch.num_nodes}; "
            "shrink them or ask for more nodes"
        )
    if batch.filter_tags:
        problems.append("filter_tags apply to a batch job without partitions; give each partition its filter_tags")
    return problems


def optional_param_problems(params: Mapping[str, str], allowed: list[str]) -> list[str]:
    """Optional scheduler parameters become directives of the job script, which runs as the site's
    owner: only those the site allows (the values are checked as words by script_word_problems)."""
    listed = ", ".join(allowed) or "none"
    return [
        f"optional parameter {key[:40]!r} is not allowed at this site (allowed: {listed}); its owner may add it "
        "to [scheduler] optional_params in settings.toml"
        for key in params
        if key not in allowed
    ]


def script_word_problems(batch: BatchJob) -> list[str]:
    """A batch job's fields that go into its job script and the scheduler's command line: each one
    word of a strict pattern, so none can add a line or an option."""
    problems = []
    if not TOKEN.fullmatch(batch.id):
        problems.append(
            f"id {batch.id!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    for field in ("queue", "project"):
        value = getattr(batch, field)
        if value and not SCHEDULER_WORD.fullmatch(value):
            problems.append(
                f"{field} {value!r} is not a scheduler's {field} name (letters, digits and _.@+:-, one word); "
                "give the scheduler's name for it"
            )
    for key, value in batch.optional_params.items():
        if not SCHEDULER_OPTION.fullmatch(key):
            problems.append(
                f"optional parameter {key[:40]!r} is not a scheduler option's name (letters, digits, _ and -, "
                "without dashes in front); give the option's name, e.g. reservation"
            )
        elif not SCHEDULER_WORD.fullmatch(value):
            problems.append(
                f"optional parameter {key}'s value {value[:60]!r} is not one word of letters, digits and _.@+:[]-; "
                "give the value the scheduler takes, without spaces, quotes or line breaks"
            )
    problems += tag_problems(batch.filter_tags, "filter tag")
    for n, part in enumerate(batch.partitions):
        problems += tag_problems(part.filter_tags, f"partition {n}'s filter tag")
    return problems


def batch_update_problems(
    scheduler_id: str | None, status_info: str | None, times: Iterable[float | None]
) -> list[str]:
    """What a scheduler service may record of a batch job: an id its tools print, text, times."""
    problems = []
    if scheduler_id is not None and not SCHEDULER_WORD.fullmatch(scheduler_id):
        problems.append(f"scheduler id {scheduler_id!r} is not one word of letters, digits and _.@+:[]-")
    if status_info is not None and len(status_info) > MAX_TEXT:
        problems.append(f"status_info is {len(status_info)} characters; keep it under {MAX_TEXT}")
    problems += [f"time {t!r} is not a finite number of seconds" for t in times if t is not None and not _finite(t)]
    return problems


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def app_problems(app: App) -> list[str]:
    """An app record the store can validate jobs against and launchers can run."""
    problems = []
    if not IDENTIFIER.fullmatch(app.name):
        problems.append(f"name {app.name!r} must be a Python identifier (letters, digits and _)")
    if app.error:  # a broken app is recorded to say why; nothing of it is run
        if len(app.error) > MAX_TEXT:
            problems.append(f"its error is {len(app.error)} characters; keep it under {MAX_TEXT}")
        return problems
    if app.kind == AppKind.COMMAND:
        if not app.command_template.strip():
            problems.append("a command app needs a command_template")
        used = set(PLACEHOLDER.findall(app.command_template))
        problems += [f"parameter {p!r} is not used in the command template" for p in sorted(set(app.parameters) - used)]
        problems += [f"placeholder {{{{ {p} }}}} is not a parameter" for p in sorted(used - set(app.parameters))]
        problems += template_problems(app.command_template)
    if app.kind == AppKind.PYTHON:
        if not app.source or "/" in app.source or app.source.startswith(".") or not app.source.endswith(".py"):
            problems.append(f"source {app.source!r} must be the name of a .py file in the site's apps/ directory")
        if not IDENTIFIER.fullmatch(app.class_name):
            problems.append(f"class_name {app.class_name!r} must be a Python identifier")
    problems += [
        f"parameter name {p!r} must be a Python identifier" for p in app.parameters if not IDENTIFIER.fullmatch(p)
    ]
    problems += [f"unknown hook {h!r}; hooks are {', '.join(HOOK_NAMED)}" for h in app.hooks if h not in HOOK_NAMED]
    problems += [f"environment variable name {k!r} is not a name a shell accepts" for k in app.environment
                 if not IDENTIFIER.fullmatch(k)]  # fmt: skip
    problems += [p for pattern in app.cleanup_files for p in glob_problems(pattern)]
    problems += [p for slot, spec in app.transfers.items() for p in slot_problems(slot, spec)]
    return problems


def slot_problems(slot: str, spec: TransferSlot) -> list[str]:
    """A transfer slot whose file stays inside its job's workdir."""
    problems = []
    if not IDENTIFIER.fullmatch(slot):
        problems.append(f"transfers: slot name {slot[:40]!r} must be a Python identifier")
    local = spec.local_path
    if local and (local.startswith("/") or ".." in local.split("/") or not local.isprintable() or len(local) > 4096):
        problems.append(f"transfers[{slot!r}]: local_path {local[:80]!r} must be a relative path inside the job's "
                        "workdir, without '..' or control characters (or empty: the item's file name)")  # fmt: skip
    return problems


_ORDERS = frozenset(ClaimOrder)


def claim_problems(limits: ClaimLimits) -> list[str]:
    problems = []
    if limits.max_jobs < 0:
        problems.append(f"max_jobs must not be negative (got {limits.max_jobs})")
    if limits.max_nodes_per_job is not None and limits.max_nodes_per_job < 1:
        problems.append(f"max_nodes_per_job must be at least 1 (got {limits.max_nodes_per_job})")
    for field in ("max_aggregate_nodes", "max_wall_time_min"):
        value = getattr(limits, field)
        if value is not None and not (_finite(value) and value >= 0):
            problems.append(f"{field} must be a non-negative number (got {value})")
    if limits.order not in _ORDERS:
        problems.append(f"unknown claim order {limits.order!r}; use one of {sorted(ClaimOrder)}")
    return problems


def update_problem(update: StateUpdate) -> str:
    """Why one launcher report cannot be recorded ("" when it can).  Every report of every run
    passes here: the common case is decided first, in a few comparisons."""
    ts, started = update.ts, update.started_at
    try:
        if (
            update.state in REPORTABLE
            and isfinite(ts)
            and (started is None or isfinite(started))
            and len(update.reason) <= MAX_TEXT
        ):
            return ""
    except TypeError:
        pass
    if update.state not in REPORTABLE:
        return f"a launcher reports {', '.join(sorted(REPORTABLE))}, not {update.state}"
    if not _finite(ts) or (started is not None and not _finite(started)):
        return "its times must be finite numbers of seconds"
    return f"its reason is {len(update.reason)} characters; keep it under {MAX_TEXT}"


def session_problems(label: str, host: str | None, pid: int | None, batch_job_id: str | None) -> list[str]:
    problems = []
    if _control(label) or len(label) > 1024:
        problems.append("label must be one line of at most 1024 characters")
    if host is not None and (not host or _control(host) or " " in host or len(host) > 255):
        problems.append(f"host {host!r} is not a host name")
    if pid is not None and pid < 0:
        problems.append(f"pid must not be negative (got {pid})")
    if batch_job_id is not None and not TOKEN.fullmatch(batch_job_id):
        problems.append(f"batch_job_id {batch_job_id!r} is not a batch job id")
    return problems
