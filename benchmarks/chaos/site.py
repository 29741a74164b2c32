"""A round's site: made with ``balsamd site init``, its daemon started with ``balsamd start``, its
batch jobs local processes submitted by the daemon (the elastic queue for serial work, the
runner through ``balsamd queue submit`` for MPI work)."""

from __future__ import annotations

import enum
import json
import re
import shutil
import sys
from pathlib import Path

import msgspec

import balsamd
from balsamd.config import load_settings
from balsamd.models import BATCH_ACTIVE, BatchJob, JobMode
from balsamd.rpc.record import read_record
from balsamd.states import FINAL, JobState
from balsamd.store.queries import JobFilter
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules
from benchmarks.chaos import processes
from benchmarks.chaos.apps import write_apps
from benchmarks.chaos.campaign import CPUS_PER_NODE, Lane, Planned, levels
from benchmarks.chaos.cli import balsamd_cli, clean_env

BATCH_WALL_MIN = 30  # far beyond a round: launchers end when idle, not when out of time
LANE_MODES = {Lane.SERIAL: JobMode.SERIAL, Lane.MPI: JobMode.MPI}


class Transport(enum.StrEnum):
    """How a round's launchers reach the store (they share the daemon's host)."""

    STORE = "store"  # the file itself, through the launcher's store process
    RPC = "rpc"  # the daemon's RPC, as launchers on compute nodes do


class Launcher(msgspec.Struct, kw_only=True):
    """A live batch job of the local scheduler and the launcher inside it."""

    batch_id: str
    mode: JobMode
    group: int  # the batch job's process group (its script's pid)
    leader: int | None  # the launcher's pid, once the script has started it


def settings_for(session_expiry: float, mpiexec: str) -> dict[str, object]:
    """Short periods everywhere: a round is about a minute."""
    return {
        "nodes.cpus_per_node": CPUS_PER_NODE,
        "nodes.max_nodes": 1,
        "launcher.mpiexec": mpiexec,
        "launcher.heartbeat_sec": 0.5,
        "launcher.session_expiry_sec": session_expiry,
        "launcher.idle_ttl_sec": 3.0,
        "launcher.timeout_grace_sec": 1.0,
        "sync.period_sec": 0.5,
        "daemon.bind": "127.0.0.1",
        "daemon.processing_period_sec": 0.2,
        "daemon.reaper_period_sec": 0.5,
        "daemon.scheduler_period_sec": 0.5,
        "daemon.hook_timeout_sec": 10.0,
        "elastic.enabled": True,
        "elastic.period_sec": 0.5,
        "elastic.job_mode": "serial",
        "elastic.filter_tags": {"lane": str(Lane.SERIAL)},
        "elastic.max_nodes": 1,
        "elastic.min_wall_time_min": 2,
        "elastic.max_wall_time_min": BATCH_WALL_MIN,
        "elastic.wall_time_pad_min": 1,
        # two serial batch jobs, and the MPI one beside them
        "elastic.max_queued": 3,
    }


def find_mpiexec() -> str:
    """The mpiexec beside this interpreter (the mpich wheel), else the one on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("the chaos runner needs mpiexec for its MPI jobs: `pip install mpich`")
    return found


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def configure(path: Path, values: dict[str, object]) -> None:
    """Set keys of settings.toml, each named ``section.key`` (every key must be in the file)."""
    text = path.read_text()
    for dotted, value in values.items():
        section, key = dotted.split(".")
        table = re.search(rf"(?ms)^\[{section}\]\n(.*?)(?=^\[|\Z)", text)
        if table is None:
            raise ValueError(f"no [{section}] in {path}")
        body, found = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {_toml(value)} ", table.group(1))
        if found != 1:
            raise ValueError(f"{key} is not a key of [{section}] in {path}")
        text = text[: table.start(1)] + body + text[table.end(1) :]
    path.write_text(text)


class ChaosSite:
    def __init__(self, base: Path, name: str, central_dsn: str, transport: Transport) -> None:
        self.base = base
        self.root = base / "site"
        self.markers = base / "markers"
        self.name = name
        self.central_dsn = central_dsn
        self.transport = transport
        self._store: SiteStore | None = None

    # ----- making it ----------------------------------------------------------------------

    def init(self, settings: dict[str, object]) -> None:
        balsamd_cli(
            "site", "init", str(self.root), "--name", self.name, "--scheduler", "local", "--central", self.central_dsn
        )
        configure(self.root / "settings.toml", settings)
        self.markers.mkdir()
        bin_dir = self.base / "bin"
        bin_dir.mkdir()
        write_apps(self.root / "apps", bin_dir, self.markers)
        with balsamd.connect(self.root) as site:
            site.apps.sync()

    def create(self, jobs: list[Planned]) -> dict[str, str]:
        """Create ``jobs`` at the site, parents first; returns each key's job id."""
        ids: dict[str, str] = {}
        with balsamd.connect(self.root) as site:
            assert isinstance(site, balsamd.Site)
            for level in levels(jobs):
                made = site.jobs.bulk_create([j.spec([ids[p] for p in j.parents]) for j in level])
                ids.update((j.key, h.id) for j, h in zip(level, made, strict=True))
        return ids

    # ----- the daemon ----------------------------------------------------------------------

    def start_daemon(self) -> None:
        extra = {"BALSAMD_RPC": "1"} if self.transport == Transport.RPC else {}
        # the daemon's batch jobs inherit its environment, and with it the launchers' transport
        balsamd_cli("--site", str(self.root), "start", env=clean_env(**extra), cwd=self.base)

    def daemon_pid(self) -> int | None:
        record = read_record(self.root)
        if record is None or not processes.alive(record.pid) or str(self.root) not in processes.cmdline(record.pid):
            return None
        return record.pid

    def daemon_log(self, chars: int = 3000) -> str:
        try:
            return (self.root / "log" / "daemon.log").read_text()[-chars:]
        except OSError:
            return ""

    # ----- reading it ----------------------------------------------------------------------

    @property
    def store(self) -> SiteStore:
        """The store file itself, read beside the daemon (this is its host)."""
        if self._store is None:
            rules = SiteRules.of(load_settings(self.root / "settings.toml"))
            self._store = SiteStore(self.root / "balsamd.db", rules)
        return self._store

    def unfinished(self, lane: Lane) -> int:
        alive = [s for s in JobState if s not in FINAL]
        return self.store.count(JobFilter(states=alive, tags={"lane": str(lane)}))

    def launchers(self, mode: JobMode) -> list[Launcher]:
        """The live batch jobs of ``mode``, in the order they were made."""
        found = []
        for batch in self.store.batch_jobs(sorted(BATCH_ACTIVE)):
            group = _local_group(batch)
            if batch.job_mode == mode and group is not None:
                leaders = [p for p in processes.children(group) if " launcher " in processes.cmdline(p)]
                found.append(Launcher(batch_id=batch.id, mode=mode, group=group, leader=(leaders or [None])[0]))
        return found

    def submit_batch_job(self, lane: Lane) -> None:
        """A batch job for ``lane``, as a user asks for one."""
        balsamd_cli(
            "--site", str(self.root), "queue", "submit", "--num-nodes", "1", "--wall-time-min", str(BATCH_WALL_MIN),
            "--job-mode", str(LANE_MODES[lane]), "--tag", f"lane={lane}", cwd=self.base,
        )  # fmt: skip

    def batch_jobs_active(self, lane: Lane) -> int:
        return sum(1 for b in self.store.batch_jobs(sorted(BATCH_ACTIVE)) if b.job_mode == LANE_MODES[lane])

    # ----- the end -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the daemon and kill whatever the round left running on the site."""
        if self.daemon_pid() is not None:
            balsamd_cli("--site", str(self.root), "stop", check=False)
        pid = self.daemon_pid()
        if pid is not None:
            processes.kill(pid)
        groups = [g for g in map(_local_group, self.store.batch_jobs()) if g is not None]
        for group in groups:
            processes.kill_group(group)
        if self._store is not None:
            self._store.close()
            self._store = None
        # runs, workers and watchdogs of killed launchers: each in a group or session of its own
        strays = set(processes.working_in(self.root))
        strays.update(p for p in _all_pids() if str(self.root) in processes.cmdline(p))
        for pid in strays:
            processes.kill(pid)
        processes.wait_gone(sorted(strays))


def _local_group(batch: BatchJob) -> int | None:
    """The process group of a live local batch job (its id is PID:STARTTIME)."""
    pid, _, started = (batch.scheduler_id or "").partition(":")
    if not pid.isdigit() or processes.start_time(int(pid)) != started:
        return None
    return int(pid)


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
