"""Site settings: ``SITE/settings.toml`` decoded into one msgspec Struct.

Unknown keys are errors (a typo must not silently fall back to a default), and every error
names the file, the line and the key, and says what is expected there.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Literal

import msgspec

# a scheduler's queue or project name: one word that a job script or a command line cannot read
# as more than that (empty: the scheduler's default)
SCHEDULER_WORD = r"[A-Za-z0-9_][A-Za-z0-9_.@+:\[\]-]{0,127}"
SchedulerWord = Annotated[str, msgspec.Meta(pattern=f"^({SCHEDULER_WORD})?$")]
LAUNCH_PARAM = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
# what each pattern means, for the error that names a key whose value does not match (msgspec's
# message quotes the pattern as repr() gives it)
PATTERN_HINTS = {
    repr(f"^({SCHEDULER_WORD})?$"): "expected one word of letters, digits and _.@+:[]- (a scheduler's name "
    "for it), without spaces, quotes or line breaks",
    repr(LAUNCH_PARAM): "expected an option name of letters, digits, _ and -, as the MPI launcher takes it",
}
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]

MpiFlavor = Literal["mpich", "openmpi", "srun", "aprun", "jsrun", "pbs-cray"]
SchedulerKind = Literal["local", "slurm", "pbs", "cobalt", "lsf"]


class SiteInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str = ""
    group_readable: bool = False  # what balsamd makes is readable by the site's group, never writable


class NodeSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cpus_per_node: Positive = 1
    gpus_per_node: NonNegative = 0
    max_nodes: Positive = 1


class SchedulerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: SchedulerKind = "local"
    allowed_queues: list[SchedulerWord] = []
    allowed_projects: list[SchedulerWord] = []
    default_queue: SchedulerWord = ""
    default_project: SchedulerWord = ""
    max_wall_time_min: Positive = 1440
    max_queued: Positive = 20


class LauncherSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mpi: MpiFlavor = "mpich"
    mpiexec: str = "mpiexec"
    gpu_env: list[str] = msgspec.field(default_factory=lambda: ["CUDA_VISIBLE_DEVICES"])
    heartbeat_sec: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    session_expiry_sec: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    idle_ttl_sec: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    claim_batch: Positive = 512
    timeout_grace_sec: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    stop_claiming_min: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    node_workers: Literal["auto", "all", "none"] = "auto"
    # the only launch parameters jobs may give (each becomes --KEY VALUE of the MPI launcher, which
    # runs as the site's owner: a flag like task-prolog or outfile-pattern runs code or writes files)
    allowed_launch_params: list[Annotated[str, msgspec.Meta(pattern=LAUNCH_PARAM)]] = []


class SyncSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    central: str = ""
    period_sec: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class DaemonSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bind: str = "0.0.0.0"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    processing_period_sec: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    hook_timeout_sec: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    hook_workers: Positive = 2
    reaper_period_sec: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    scheduler_period_sec: Annotated[float, msgspec.Meta(gt=0)] = 10.0


class ElasticSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    period_sec: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    queue: SchedulerWord = ""  # empty: the scheduler's default_queue
    project: SchedulerWord = ""  # empty: the scheduler's default_project
    job_mode: Literal["mpi", "serial"] = "mpi"
    filter_tags: dict[str, str] = {}
    min_nodes: Positive = 1
    max_nodes: Positive = 1
    min_wall_time_min: Positive = 35
    max_wall_time_min: Positive = 360
    wall_time_pad_min: NonNegative = 5
    max_queue_wait_min: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    max_queued: Positive = 20
    use_backfill: bool = False
    max_failures: Positive = 3  # submission failures in a row before it pauses itself
    pause_min: Annotated[float, msgspec.Meta(gt=0)] = 30.0

    def __post_init__(self) -> None:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) exceeds max_nodes ({self.max_nodes})")
        if self.min_wall_time_min > self.max_wall_time_min:
            raise ValueError(
                f"min_wall_time_min ({self.min_wall_time_min}) exceeds max_wall_time_min ({self.max_wall_time_min})"
            )
        if self.wall_time_pad_min >= self.min_wall_time_min:
            raise ValueError(
                f"wall_time_pad_min ({self.wall_time_pad_min}) must be smaller than min_wall_time_min "
                f"({self.min_wall_time_min}), or batch jobs would have no time left to run jobs"
            )


class LoggingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # each log (the daemon's, each launcher's) rotates at this size, keeping this many old files
    max_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 20 * 1024 * 1024
    backups: NonNegative = 5


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    site: SiteInfo = msgspec.field(default_factory=SiteInfo)
    nodes: NodeSettings = msgspec.field(default_factory=NodeSettings)
    scheduler: SchedulerSettings = msgspec.field(default_factory=SchedulerSettings)
    launcher: LauncherSettings = msgspec.field(default_factory=LauncherSettings)
    sync: SyncSettings = msgspec.field(default_factory=SyncSettings)
    daemon: DaemonSettings = msgspec.field(default_factory=DaemonSettings)
    elastic: ElasticSettings = msgspec.field(default_factory=ElasticSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)


class SettingsError(Exception):
    """The settings file is missing or malformed; the message names file, line and key."""


def load_settings(path: Path) -> Settings:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SettingsError(
            f"{path}: settings file not found; is this a site directory? Create one with `balsamd site init DIR`."
        ) from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(_describe_toml_error(path, text, str(exc))) from None
    try:
        return msgspec.convert(raw, Settings)
    except msgspec.ValidationError as exc:
        raise SettingsError(_describe(path, text, str(exc))) from None


def _describe_toml_error(path: Path, text: str, message: str) -> str:
    """``Invalid value (at line 3, column 9)`` into ``file:3: key nodes.x: not valid TOML: ...``."""
    where = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if where:
        line, detail = int(where.group(1)), f"{message[: where.start()]} (column {where.group(2)})"
    else:
        line = len(text.rstrip().splitlines()) or 1
        detail = message
    keys = dict(_key_lines(text)).get(line)
    key = f" key {'.'.join(keys)}:" if keys else ""
    return f"{path}:{line}:{key} not valid TOML: {detail}"


def _describe(path: Path, text: str, message: str) -> str:
    """Turn msgspec's ``... - at `$.a.b``` into ``file:line: key a.b: ...``."""
    where = re.search(r" - at `\$\.?([^`]*)`$", message)
    keys = where.group(1).split(".") if where and where.group(1) else []
    keys = [re.sub(r"\[\d+\]$", "", k) for k in keys]
    detail = message[: where.start()] if where else message
    unknown = re.match(r"Object contains unknown field `([^`]+)`", detail)
    if unknown:
        keys = [*keys, unknown.group(1)]
        known = _known_keys(keys[:-1])
        close = difflib.get_close_matches(keys[-1], known, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        detail = f"unknown key ({guess}known keys: {', '.join(known)})"
    elif detail.startswith("Invalid enum value"):
        allowed = _allowed_values(keys)
        if allowed:
            detail = f"{detail}; use one of {', '.join(repr(v) for v in allowed)}"
    elif "matching regex" in detail:
        detail = PATTERN_HINTS.get(detail.split("matching regex ", 1)[1], detail)
    line = _find_line(text, keys)
    dotted = ".".join(keys) or "(top level)"
    at = f"{path}:{line}" if line else str(path)
    return f"{at}: key {dotted}: {detail}"


def _field_type(keys: list[str]) -> object:
    kind: object = Settings
    for key in keys:
        fields = _struct_fields(kind)
        if key not in fields:
            return None
        kind = fields[key]
    return kind


def _struct_fields(kind: object) -> dict[str, object]:
    """Field name -> type of a settings table; empty for a value that is no table."""
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return {f.name: f.type for f in msgspec.structs.fields(kind)}
    return {}


def _known_keys(section: list[str]) -> list[str]:
    return list(_struct_fields(_field_type(section)))


def _allowed_values(keys: list[str]) -> tuple[object, ...]:
    kind = _field_type(keys)
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else ()


_KEY_PART = r"""(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_HEADER = re.compile(rf"^\[\[?\s*({_DOTTED})\s*\]\]?")
_ASSIGN = re.compile(rf"^({_DOTTED})\s*=")


def _split_key(dotted: str) -> list[str]:
    return [part.strip("\"'") for part in re.findall(_KEY_PART, dotted)]


def _key_lines(text: str) -> list[tuple[int, list[str]]]:
    """(line number, full dotted key) for every table header and key assignment."""
    out = []
    table: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            table = _split_key(header.group(1))
            out.append((number, table))
            continue
        assign = _ASSIGN.match(line)
        if assign:
            out.append((number, [*table, *_split_key(assign.group(1))]))
    return out


def _find_line(text: str, keys: list[str]) -> int | None:
    """The line defining ``keys``, else the line of its closest enclosing key (an inline table)."""
    if not keys:
        return None
    best, best_len = None, 0
    for number, path in _key_lines(text):
        if path == keys:
            return number
        if len(path) > best_len and keys[: len(path)] == path:
            best, best_len = number, len(path)
    return best


def default_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


SETTINGS_TEMPLATE = """\
# balsamd site settings. Every key is optional; the value shown is the default unless noted.
# Edit and restart the daemon for changes to take effect.

[site]
# The site's identity in the central database (defaults to the directory name).
name = "{name}"
# false: the site is yours alone (directories 0700, files 0600).  true: the site directory's
# group may read it (0750, 0640; `chgrp -R GROUP` the site to choose the group) but never write
# it, and the secret stays yours alone.  `balsamd site init --group-readable` sets it from the
# start; changed later, it applies to what balsamd makes from then on.
group_readable = {group_readable}

[nodes]
# Shape of one compute node. Jobs that can never fit this shape are refused at creation.
cpus_per_node = {cpus}      # detected on this host at `site init`
gpus_per_node = 0
# Largest number of nodes one job (and one batch job) may ask for.
max_nodes = 1

[scheduler]
# local | slurm | pbs | cobalt | lsf
kind = "{scheduler}"
allowed_queues = []     # empty: any queue
allowed_projects = []   # empty: any project
default_queue = "{queue}"      # empty: the scheduler's own default
default_project = "{project}"
max_wall_time_min = 1440
max_queued = 20

[launcher]
# MPI launch command shape: mpich | openmpi | srun | aprun | jsrun | pbs-cray
mpi = "mpich"
mpiexec = "mpiexec"          # program used by the mpich / openmpi / pbs-cray shapes
# Variables that receive the GPU ids bound to a run (add ROCR_VISIBLE_DEVICES or ZE_AFFINITY_MASK).
gpu_env = ["CUDA_VISIBLE_DEVICES"]
heartbeat_sec = 60.0         # how often a launcher renews its session
session_expiry_sec = 300.0   # a session silent this long is expired; its runs become RUN_TIMEOUT
idle_ttl_sec = 300.0         # a launcher with nothing to run for this long exits
claim_batch = 512            # jobs claimed in one round trip (more when runs end faster)
timeout_grace_sec = 30.0     # between SIGTERM and SIGKILL when time runs out
stop_claiming_min = 1.0      # stop claiming this many minutes before the wall time ends
# serial mode: start a worker on each node through the MPI launcher (auto: on every node that
# is not this host; all: on this host too; none: run everything from this host)
node_workers = "auto"
# launch parameters jobs may give (--launch-param KEY=VALUE becomes --KEY VALUE of the MPI
# launcher, run as you): none unless listed, e.g. ["cpu-bind", "depth"]
allowed_launch_params = []

[sync]
# PostgreSQL DSN of the central database; empty = this site runs standalone.  The site's
# name ([site] name) is its identity there.  The daemon syncs every period_sec, and within
# about a second of a job being created for this site while it runs.
central = "{central}"
period_sec = 10.0

[daemon]
# Where `balsamd start` listens for launchers and commands on other hosts (port 0: any free
# port; the chosen one is recorded in daemon.json in the site directory).
bind = "0.0.0.0"
port = 0
processing_period_sec = 1.0   # how often hooks and dependencies are looked at
hook_timeout_sec = 300.0      # a hook running longer fails its job
hook_workers = 2              # processes running hooks
reaper_period_sec = 10.0      # how often silent launcher sessions are looked for
scheduler_period_sec = 10.0   # how often batch jobs are submitted and their status polled

[elastic]
# The elastic queue submits batch jobs sized to the runnable backlog (Balsam's algorithm).
enabled = false
period_sec = 60.0
queue = ""                 # empty: [scheduler] default_queue
project = ""               # empty: [scheduler] default_project
job_mode = "mpi"           # mpi | serial
filter_tags = {{}}           # only jobs with these tags count, and only they run in its batch jobs
min_nodes = 1
max_nodes = 1
min_wall_time_min = 35
max_wall_time_min = 360
wall_time_pad_min = 5      # subtracted from the wall time so launchers end before the allocation
max_queue_wait_min = 10.0  # queued batch jobs of the elastic queue waiting longer are withdrawn
max_queued = 20            # most batch jobs queued or running at once
use_backfill = false       # size batch jobs to the scheduler's backfill windows
max_failures = 3           # submission failures in a row before it pauses itself ...
pause_min = 30.0           # ... for this long (see `balsamd status`)

[logging]
# The daemon's log (log/daemon.log) and each launcher's (log/launcher-SESSION.log) start a new
# file at max_bytes, keeping this many old ones (daemon.log.1 ...): at most 120 MB each by default.
max_bytes = 20971520       # at least 4096
backups = 5
"""
