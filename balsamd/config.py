"""Site settings: ``SITE/settings.toml`` decoded into one msgspec Struct.

Unknown keys are errors (a typo must not silently fall back to a default), and every error
names the file, the line and the key, says what is wrong and what to do.  Every value is
bounded: numbers to what a machine can have or a daemon can wait, words to what a scheduler, a
shell or PostgreSQL reads as one word, so that nothing downstream meets a value it cannot take.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from balsamd.dsn import dsn_problem
from balsamd.explain import explain
from balsamd.tags import tag_problems
from balsamd.transfers.locations import NAME as LOCATION_NAME
from balsamd.transfers.locations import LocationError, parse_location

# a scheduler's queue or project name: one word that a job script or a command line cannot read
# as more than that (empty: the scheduler's default)
SCHEDULER_WORD = r"[A-Za-z0-9_][A-Za-z0-9_.@+:\[\]-]{0,127}"
SchedulerWord = Annotated[str, msgspec.Meta(pattern=f"^({SCHEDULER_WORD})?$")]
LAUNCH_PARAM = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
# a scheduler option a batch job may give (reservation, qos, constraint, ...), without dashes
SCHEDULER_OPTION = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# a site's name: its identity in the central database and in the daemon's handshake; one word
SITE_NAME = r"[^\s\"'\\\x00-\x1f\x7f]{1,64}"
# a central user's name (a PostgreSQL role): also the directory of the site's data/ holding
# that user's jobs, so letters, digits and a few marks
CENTRAL_USER = r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}"
# a Globus client or collection id
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# what each pattern means, for the error that names a key whose value does not match (msgspec's
# message quotes the pattern as repr() gives it)
PATTERN_HINTS = {
    repr(f"^({SCHEDULER_WORD})?$"): "expected one word of letters, digits and _.@+:[]- (a scheduler's name "
    "for it), without spaces, quotes or line breaks",
    repr(LAUNCH_PARAM): "expected an option name of letters, digits, _ and -, as the MPI launcher takes it",
    repr(SCHEDULER_OPTION): "expected a scheduler option's name without dashes (letters, digits, _ and -), "
    "such as reservation",
    repr(ENV_NAME): "expected an environment variable's name (letters, digits and _, not starting with a digit), "
    "such as CUDA_VISIBLE_DEVICES",
    repr(f"^{CENTRAL_USER}$"): "expected a central user's name (their PostgreSQL role) of letters, digits and "
    "_.@-, at most 64 characters",
    repr(f"^{LOCATION_NAME}$"): "expected a location's name: a letter, then letters, digits, _ and -, at most 64 "
    "characters",
    repr(f"^({UUID})?$"): "expected a UUID such as 0a1b2c3d-0000-1111-2222-333344445555",
    repr(f"^({SITE_NAME})?$"): "expected a name of at most 64 characters without spaces, quotes, backslashes or "
    "control characters",
}
# bounds: beyond them a value is a typo, and would overflow what keeps it or spin what uses it
MAX_NODES = 200_000  # nodes of one machine (Fugaku, the largest, has 158,976)
MAX_CPUS, MAX_GPUS = 1 << 16, 1024  # per node
MAX_MINUTES = 366 * 24 * 60  # a year: the longest wall time or wait anyone means
MAX_SECONDS = MAX_MINUTES * 60.0
MIN_PERIOD = 0.001  # seconds between a service's steps; shorter only spins
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Minutes = Annotated[int, msgspec.Meta(ge=1, le=MAX_MINUTES)]
Period = Annotated[float, msgspec.Meta(ge=MIN_PERIOD, le=MAX_SECONDS)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
Count = Annotated[int, msgspec.Meta(ge=1, le=10_000)]

MpiFlavor = Literal["mpich", "openmpi", "srun", "aprun", "jsrun", "pbs-cray"]
SchedulerKind = Literal["local", "slurm", "pbs", "cobalt", "lsf"]
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _refuse(key: str, problem: str) -> None:
    """A problem found after decoding, told as the key it is about (see ``_describe``)."""
    raise ValueError(f"{key}: {problem}")


class SiteInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=f"^({SITE_NAME})?$")] = ""
    group_readable: bool = False  # what balsamd makes is readable by the site's group, never writable


class NodeSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cpus_per_node: Annotated[int, msgspec.Meta(ge=1, le=MAX_CPUS)] = 1
    gpus_per_node: Annotated[int, msgspec.Meta(ge=0, le=MAX_GPUS)] = 0
    max_nodes: Annotated[int, msgspec.Meta(ge=1, le=MAX_NODES)] = 1


class SchedulerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: SchedulerKind = "local"
    allowed_queues: list[SchedulerWord] = []
    allowed_projects: list[SchedulerWord] = []
    default_queue: SchedulerWord = ""
    default_project: SchedulerWord = ""
    max_wall_time_min: Minutes = 1440
    max_queued: Count = 20
    # the scheduler options batch jobs may give (each a directive of the job script, written as
    # the site's owner): none unless listed
    optional_params: list[Annotated[str, msgspec.Meta(pattern=SCHEDULER_OPTION)]] = []

    def __post_init__(self) -> None:
        for field, allowed in (("queue", self.allowed_queues), ("project", self.allowed_projects)):
            default = getattr(self, f"default_{field}")
            if allowed and default and default not in allowed:
                _refuse(f"default_{field}", f"{default!r} is not in allowed_{field}s ({', '.join(allowed)}); "
                        f"add it there or choose one of them")  # fmt: skip


class LauncherSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mpi: MpiFlavor = "mpich"
    mpiexec: str = "mpiexec"
    gpu_env: list[Annotated[str, msgspec.Meta(pattern=ENV_NAME)]] = msgspec.field(
        default_factory=lambda: ["CUDA_VISIBLE_DEVICES"]
    )
    heartbeat_sec: Period = 60.0
    session_expiry_sec: Period = 300.0
    idle_ttl_sec: Seconds = 300.0
    claim_batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 512
    timeout_grace_sec: Seconds = 30.0
    stop_claiming_min: Annotated[float, msgspec.Meta(ge=0, le=MAX_MINUTES)] = 1.0
    node_workers: Literal["auto", "all", "none"] = "auto"
    # the only launch parameters jobs may give (each becomes --KEY VALUE of the MPI launcher, which
    # runs as the site's owner: a flag like task-prolog or outfile-pattern runs code or writes files)
    allowed_launch_params: list[Annotated[str, msgspec.Meta(pattern=LAUNCH_PARAM)]] = []

    def __post_init__(self) -> None:
        if not self.mpiexec or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in self.mpiexec):
            _refuse("mpiexec", f"{self.mpiexec!r} is not a program: give the MPI launcher's name on PATH or its "
                    "path, one word without spaces (its options come from the mpi shape)")  # fmt: skip
        if self.heartbeat_sec >= self.session_expiry_sec:
            _refuse("heartbeat_sec", f"{self.heartbeat_sec:g} s is not shorter than session_expiry_sec "
                    f"({self.session_expiry_sec:g} s), so a launcher's session would expire between its "
                    "heartbeats and its runs be stopped; make heartbeat_sec a fraction of session_expiry_sec "
                    "(a fifth is usual)")  # fmt: skip


class SyncSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    central: str = ""
    period_sec: Period = 10.0

    def __post_init__(self) -> None:
        problem = dsn_problem(self.central) if self.central else None
        if problem:
            _refuse("central", f"not a PostgreSQL DSN: {problem}")


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a host name (None when it is one)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            return f"{host!r:.80} is neither an IP address nor a host name"
        if all(label.isdigit() for label in labels):
            return f"{host!r} is not a valid IP address"
    return None


class DaemonSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bind: str = "0.0.0.0"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    processing_period_sec: Period = 1.0
    hook_timeout_sec: Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)] = 300.0
    hook_workers: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 2
    reaper_period_sec: Period = 10.0
    scheduler_period_sec: Period = 10.0
    apps_period_sec: Period = 2.0
    apps_load_timeout_sec: Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)] = 60.0

    def __post_init__(self) -> None:
        problem = host_problem(self.bind)
        if problem:
            _refuse("bind", f"{problem}; give 0.0.0.0 (every interface), 127.0.0.1 (this host only) or this "
                    "host's address towards the compute nodes")  # fmt: skip


class ElasticSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    period_sec: Period = 60.0
    queue: SchedulerWord = ""  # empty: the scheduler's default_queue
    project: SchedulerWord = ""  # empty: the scheduler's default_project
    job_mode: Literal["mpi", "serial"] = "mpi"
    filter_tags: dict[str, str] = {}
    min_nodes: Annotated[int, msgspec.Meta(ge=1, le=MAX_NODES)] = 1
    max_nodes: Annotated[int, msgspec.Meta(ge=1, le=MAX_NODES)] = 1
    min_wall_time_min: Minutes = 35
    max_wall_time_min: Minutes = 360
    wall_time_pad_min: Annotated[int, msgspec.Meta(ge=0, le=MAX_MINUTES)] = 5
    max_queue_wait_min: Annotated[float, msgspec.Meta(gt=0, le=MAX_MINUTES)] = 10.0
    max_queued: Count = 20
    use_backfill: bool = False
    max_failures: Count = 3  # submission failures in a row before it pauses itself
    pause_min: Annotated[float, msgspec.Meta(gt=0, le=MAX_MINUTES)] = 30.0

    def __post_init__(self) -> None:
        if self.min_nodes > self.max_nodes:
            _refuse("min_nodes", f"{self.min_nodes} exceeds max_nodes ({self.max_nodes}); lower it or raise max_nodes")
        if self.min_wall_time_min > self.max_wall_time_min:
            _refuse("min_wall_time_min", f"{self.min_wall_time_min} exceeds max_wall_time_min "
                    f"({self.max_wall_time_min}); lower it or raise max_wall_time_min")  # fmt: skip
        if self.wall_time_pad_min >= self.min_wall_time_min:
            _refuse("wall_time_pad_min", f"{self.wall_time_pad_min} must be smaller than min_wall_time_min "
                    f"({self.min_wall_time_min}), or batch jobs would have no time left to run jobs; "
                    "lower it")  # fmt: skip
        problems = tag_problems(self.filter_tags, "filter tag")
        if problems:
            _refuse("filter_tags", "; ".join(problems))


class AppsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # central users whose declared apps (ApplicationDefinition classes sent from their scripts)
    # this site installs in apps/ and runs as its owner: nobody unless named
    accept_from: list[Annotated[str, msgspec.Meta(pattern=f"^{CENTRAL_USER}$")]] = []


class GlobusSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # the native app's client id (registered at app.globus.org/settings/developers) that
    # `balsamd site globus-login` asks consent for; "" when the site uses no Globus location
    client_id: Annotated[str, msgspec.Meta(pattern=f"^({UUID})?$")] = ""
    # this site's own collection: where workdirs under data/ are seen by Globus
    endpoint: Annotated[str, msgspec.Meta(pattern=f"^({UUID})?$")] = ""
    # a directory on this host -> the same directory as the site's collection shows it
    path_map: dict[str, str] = {}

    def __post_init__(self) -> None:
        for local, seen in self.path_map.items():
            for key, path in ((local, local), (local, seen)):
                if not path.startswith("/") or ".." in path.split("/"):
                    _refuse(f"globus.path_map.{key}", f"{path!r:.80} is not an absolute path without '..'; "
                            "map an absolute directory of this host to the collection's path for it")  # fmt: skip


class TransferSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # name -> URL of a base directory jobs' transfer items are taken inside (transfers.locations)
    locations: dict[Annotated[str, msgspec.Meta(pattern=f"^{LOCATION_NAME}$")], str] = {}
    # tasks (batches of items one way to one location) in flight at once, and items per task
    max_concurrent_transfers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 5
    transfer_batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    # tries of an item before its job fails with the backend's error, the first wait between them
    # (doubling each time)
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    retry_backoff_s: Seconds = 10.0
    # how file:// items are moved: a copy, or a hard link (same filesystem; the job then shares
    # the file with the location, and a run that writes its input changes the original)
    file_method: Literal["copy", "hardlink"] = "copy"
    # the ssh that rsync logs in with (rsync -e): argv, never through a shell
    ssh: list[Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]] = msgspec.field(
        default_factory=lambda: ["ssh", "-o", "BatchMode=yes"]
    )
    # tasks to one host share one ssh connection (ssh's ControlMaster): one login, not one a task
    ssh_multiplex: bool = True
    # rsync gives up on a connection silent this long (its --timeout; 0: never), and the task is retried
    io_timeout_s: Annotated[int, msgspec.Meta(ge=0, le=86_400)] = 600
    globus: GlobusSettings = msgspec.field(default_factory=GlobusSettings)

    def __post_init__(self) -> None:
        for name, url in self.locations.items():
            try:
                parse_location(url)
            except LocationError as exc:
                _refuse(f"locations.{name}", str(exc))
        if not self.ssh:
            _refuse("ssh", 'is empty; give the ssh program and its options, e.g. ["ssh", "-o", "BatchMode=yes"]')
        if any("\0" in a or "\n" in a for a in self.ssh):
            _refuse("ssh", "an argument holds NUL or a line break; give plain arguments")


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
    apps: AppsSettings = msgspec.field(default_factory=AppsSettings)
    transfers: TransferSettings = msgspec.field(default_factory=TransferSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)

    def __post_init__(self) -> None:
        e, s = self.elastic, self.scheduler
        if not e.enabled:  # its limits matter only to batch jobs it submits
            return
        if e.max_nodes > self.nodes.max_nodes:
            _refuse("elastic.max_nodes", f"{e.max_nodes} exceeds [nodes] max_nodes ({self.nodes.max_nodes}), so "
                    "its batch jobs would be refused; lower it or raise [nodes] max_nodes")  # fmt: skip
        if e.max_wall_time_min > s.max_wall_time_min:
            _refuse("elastic.max_wall_time_min", f"{e.max_wall_time_min} exceeds [scheduler] max_wall_time_min "
                    f"({s.max_wall_time_min}), so its batch jobs would be refused; lower it or raise that")  # fmt: skip
        for field, allowed in (("queue", s.allowed_queues), ("project", s.allowed_projects)):
            value = getattr(e, field) or getattr(s, f"default_{field}")
            if allowed and value not in allowed:
                _refuse(f"elastic.{field}", f"{value!r} is not in [scheduler] allowed_{field}s "
                        f"({', '.join(allowed)}); use one of them")  # fmt: skip


class SettingsError(Exception):
    """The settings file is missing or malformed; the message names file, line and key."""


MAX_FILE = 1024 * 1024  # a settings file is a few kB; more is not one


def load_settings(path: Path) -> Settings:
    return parse_settings(_read(path), path)


def parse_settings(text: str, path: Path) -> Settings:
    """Settings from the text of ``path`` (named in every error)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(_describe_toml_error(path, text, str(exc))) from None
    except RecursionError:
        raise SettingsError(f"{path}: values are nested too deeply to read; flatten them ({_FRESH})") from None
    try:
        return msgspec.convert(raw, Settings)
    except msgspec.ValidationError as exc:
        raise SettingsError(_describe(path, text, raw, str(exc))) from None


_FRESH = "`balsamd site init` in an empty directory writes a fresh settings.toml to compare with"


def _read(path: Path) -> str:
    """The file's text; a directory, a pipe, a huge file or bytes that are not UTF-8 are errors
    saying so (a pipe would block the read for ever)."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise SettingsError(f"{path}: is a directory, not a settings file; remove it and restore the file "
                                f"({_FRESH})")  # fmt: skip
        if not stat.S_ISREG(st.st_mode):
            raise SettingsError(f"{path}: is not a regular file (a pipe or a device?); replace it with the "
                                f"settings file ({_FRESH})")  # fmt: skip
        if st.st_size > MAX_FILE:
            raise SettingsError(f"{path}: is {st.st_size} bytes, not a settings file (a few kB); restore the file "
                                f"({_FRESH})")  # fmt: skip
        data = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(
            f"{path}: settings file not found; is this a site directory? Create one with `balsamd site init DIR`."
        ) from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror}; make it a file you can read "
                            f"({_FRESH})") from None  # fmt: skip
    try:
        return data.decode("utf-8-sig")  # editors may begin UTF-8 with a byte-order mark
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SettingsError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8")\
            from None  # fmt: skip


# tomllib's words for what is wrong, and what to do about each
_TOML_FIXES = {
    "Cannot overwrite a value": "a key is given twice, or a table twice; keep one",
    "Cannot declare": "a table is declared twice; keep one",
    "Illegal character": "write control characters as escapes (\\n, \\t) inside double quotes",
    "Invalid value": "put strings in double quotes, numbers and true/false without",
    "Unclosed": "close it on the same line",
}


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
    fix = next((f for start, f in _TOML_FIXES.items() if message.startswith(start)), "correct the TOML syntax there")
    return f"{path}:{line}:{key} not valid TOML: {detail}; {fix}"


def _describe(path: Path, text: str, raw: dict[str, Any], message: str) -> str:
    """Turn msgspec's ``... - at `$.a.b``` into ``file:line: key a.b: what is wrong; what to do``."""
    told = explain(message, toml=True)
    keys = [k for k in told.path if not k.isdigit()]
    problem, fix = told.problem, ""
    if told.kind == "unknown":
        known = _known_keys(keys[:-1])
        close = difflib.get_close_matches(keys[-1], known, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        problem, fix = "unknown key", f"{guess}remove it or correct its name (known keys: {', '.join(known)})"
    elif told.kind == "enum":
        allowed = _allowed_values(keys)
        problem = f"{told.detail} is not one of its values"
        fix = f"use one of {', '.join(repr(v) for v in allowed)}" if allowed else told.fix
    elif told.kind == "pattern":
        problem = PATTERN_HINTS.get(told.detail, problem)
    elif told.kind == "other":  # a check of our own: "key: problem; what to do"
        own = re.match(r"([a-z_]+(?:\.[A-Za-z0-9_-]+)*): (.*)$", problem, re.S)
        if own and _field_type([*keys, *own.group(1).split(".")]) is not None:
            keys, problem = [*keys, *own.group(1).split(".")], own.group(2)
    if not fix and told.kind != "other":
        got = _value_at(raw, told.path)
        problem += f" (got {_toml_value(got)})" if got is not None and told.kind != "type" else ""
        fix = _default_fix(keys, told.fix)
    line = _find_line(text, keys)
    dotted = ".".join(keys) or "(top level)"
    at = f"{path}:{line}" if line else str(path)
    return f"{at}: key {dotted}: {problem}" + (f"; {fix}" if fix else "")


def _default_fix(keys: list[str], fix: str) -> str:
    """What to do about a bad value: msgspec's kind of fix, or leaving the key to its default."""
    if len(keys) < 2:
        return fix
    section = _field_type(keys[:-1])
    for f in msgspec.structs.fields(section) if isinstance(section, type) else ():
        if f.name == keys[-1]:
            default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
            return f"{fix}, or remove the line to use the default ({keys[-1]} = {_toml_value(default)})"
    return fix


def _value_at(raw: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(raw, dict) and key in raw:
            raw = raw[key]
        elif isinstance(raw, list) and key.isdigit() and int(key) < len(raw):
            raw = raw[int(key)]
        else:
            return None
    return raw if isinstance(raw, str | int | float) else None


_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quoted, with backslashes, quotes and every control
    character escaped, so whatever a user gave reads back as itself."""
    out = ['"']
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[c])
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _field_type(keys: list[str]) -> object:
    kind: object = Settings
    for key in keys:
        if typing.get_origin(kind) is dict:  # a table of names (transfers.locations): any key
            kind = typing.get_args(kind)[1]
            continue
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
name = {name}
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
kind = {scheduler}
allowed_queues = []     # empty: any queue
allowed_projects = []   # empty: any project
default_queue = {queue}      # empty: the scheduler's own default
default_project = {project}
max_wall_time_min = 1440
max_queued = 20
# scheduler options batch jobs may give (each becomes a directive of the job script, e.g.
# #SBATCH --reservation=VALUE): none unless listed, e.g. ["reservation", "qos"]
optional_params = []

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
central = {central}
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
apps_period_sec = 2.0         # how often apps/ is looked at (its files' times), to publish what changed
apps_load_timeout_sec = 60.0  # an app file whose import takes longer is recorded as broken

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

[apps]
# Central users whose apps this site installs when they declare them from a script or notebook
# (`MyApp.sync()`, or their first `MyApp.submit(...)`): each app becomes a file of apps/ and
# runs as you, so list only people you would let write there.  Empty: nobody.
accept_from = []

[transfers]
# The daemon moves jobs' transfer items in tasks: items going the same way between this site and
# one location, up to transfer_batch_size in one task (one rsync, one Globus task), and at most
# max_concurrent_transfers tasks at once.
max_concurrent_transfers = 5
transfer_batch_size = 5000
max_attempts = 3           # tries of an item before its job fails with the error
retry_backoff_s = 10.0     # the wait before the second try, doubling after each
file_method = "copy"       # file:// items: "copy", or "hardlink" (same filesystem; the job shares the file)
# how rsync logs in to rsync:// locations (rsync -e, never through a shell): keys come from
# ssh's own configuration or agent; a location's port is added as -p
ssh = ["ssh", "-o", "BatchMode=yes"]
ssh_multiplex = true       # tasks to one host share one ssh connection (one login, not one per task)
io_timeout_s = 600         # rsync gives up on a connection silent this long; the task is tried again

[transfers.globus]
# For globus:// locations: a native app's client id (register one at
# https://app.globus.org/settings/developers) that `balsamd site globus-login` asks consent
# for, and this site's own collection.  Workdirs under data/ must be visible through it: map
# each local directory to the path the collection shows for it, in [transfers.globus.path_map]
# ("/lus/grand/projects/p" = "/p").
client_id = ""
endpoint = ""

[transfers.locations]
# Where jobs' transfer items are, by name: "file:///base/dir", "rsync://user@host/base/dir" (over
# ssh; user@host:2222 for another port) or "globus://ENDPOINT_UUID/base/dir".  A job's item
# NAME:/path is always taken inside that base directory.  None: jobs name no transfer items.
# far = "file:///data/far"

[logging]
# The daemon's log (log/daemon.log) and each launcher's (log/launcher-SESSION.log) start a new
# file at max_bytes, keeping this many old ones (daemon.log.1 ...): at most 120 MB each by default.
max_bytes = 20971520       # at least 4096
backups = 5
"""


def render_settings(
    name: str, scheduler: str, central: str = "", group_readable: bool = False, queue: str = "", project: str = ""
) -> str:
    """A new site's settings.toml: the template with these values written as TOML strings."""
    return SETTINGS_TEMPLATE.format(
        name=toml_string(name), group_readable=str(group_readable).lower(), cpus=default_cpus(),
        scheduler=toml_string(scheduler), queue=toml_string(queue), project=toml_string(project),
        central=toml_string(central),
    )  # fmt: skip
