"""Real sites, apps and launcher processes for the launcher's integration tests.

Runs are real processes and MPI jobs go through the mpich wheel's real ``mpiexec``; "nodes"
are posed with ``--nodes``: any names in serial mode (runs are local processes), names that
``mpiexec`` reaches on this host in mpi mode.  Each run records what it saw as ``@`` lines in
its output, which the tests read back.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import balsamd
from balsamd.launch.leader import main as launch_main
from balsamd.launch.leader.resources import NodeManager
from balsamd.launch.leader.summary import Summary
from balsamd.launch.running.protocol import Placement
from balsamd.models import Event, Job, JobMode, Session
from balsamd.site import init_site

BIN = Path(sys.executable).parent
LAUNCHER_TIMEOUT = 60.0  # a launcher still running after this is a failure, not a slow machine
WAIT_TIMEOUT = 20.0
HOST_CANDIDATES = ("localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


# ----- mpiexec ------------------------------------------------------------------------------


def require_mpiexec() -> str:
    """The mpiexec beside this interpreter (the mpich wheel's), else the one on PATH.

    Without one the calling test fails when CI is "true" and is skipped elsewhere.
    """
    beside = BIN / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec")
    if found:
        return found
    message = (
        f"no mpiexec in {BIN} or on PATH; install the test extra (pip install -e '.[test]' "
        "brings the mpich wheel) or load an MPI module"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return False
    return True


def mpiexec_reaches(mpiexec: str, host: str) -> bool:
    """Whether ``mpiexec --hosts HOST`` starts a rank (a local name, or one ssh reaches)."""
    if not _resolves(host):
        return False
    # a session of its own: no terminal for ssh to prompt on, and one group to stop
    probe = subprocess.Popen(
        [mpiexec, "-n", "1", "--hosts", host, "true"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        return probe.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        os.killpg(probe.pid, signal.SIGKILL)
        probe.wait()
        return False


def _primary_address() -> str | None:
    """This host's address on its default route (connecting a UDP socket sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))
            return sock.getsockname()[0]
    except OSError:
        return None


@functools.cache
def local_mpi_hosts(mpiexec: str) -> tuple[str, ...]:
    """Distinct host names that ``mpiexec`` launches ranks on, to pose as separate nodes."""
    names = [*HOST_CANDIDATES, socket.gethostname(), _primary_address()]
    return tuple(h for h in dict.fromkeys(n for n in names if n) if mpiexec_reaches(mpiexec, h))


@pytest.fixture
def mpiexec() -> str:
    return require_mpiexec()


# ----- what runs record ---------------------------------------------------------------------


def stamp(label: str) -> str:
    """Shell printing ``@LABEL JOB RANK HOST TIME``: the posed host is PMI_HOSTNAME under
    mpiexec ("-" for a serial run), the time is seconds since the epoch."""
    return f'echo "@{label} $BALSAMD_JOB_ID ${{PMI_RANK:-0}} ${{PMI_HOSTNAME:--}} $(date +%s.%N)"'


def timed(body: str = "sleep 0.3") -> str:
    """A command template recording its start and end around ``body``."""
    return f"{stamp('start')}; {body}; {stamp('end')}"


@dataclass(frozen=True)
class Run:
    """One rank of one run as it recorded itself."""

    job_id: str
    rank: int
    host: str
    start: float
    end: float

    def overlaps(self, other: Run) -> bool:
        return self.start < other.end and other.start < self.end


def records(text: str, label: str) -> list[list[str]]:
    """The fields after ``@LABEL`` of each such line."""
    return [line.split()[1:] for line in text.splitlines() if line.startswith(f"@{label} ")]


def runs_in(text: str) -> list[Run]:
    """Pair each rank's @start and @end records."""
    starts = {(j, int(r)): (h, float(t)) for j, r, h, t in records(text, "start")}
    ends = {(j, int(r)): float(t) for j, r, _h, t in records(text, "end")}
    assert starts.keys() == ends.keys(), f"unpaired records in:\n{text}"
    return [Run(j, r, h, start, ends[j, r]) for (j, r), (h, start) in sorted(starts.items())]


def max_overlap(runs: Sequence[Run]) -> int:
    """Most runs recorded running at one instant."""
    return max((sum(1 for r in runs if r.start <= x.start < r.end) for x in runs), default=0)


# ----- a site -------------------------------------------------------------------------------


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


class LaunchSite:
    """A fresh site directory with helpers to shape it, fill it and run launchers on it."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.scratch = scratch
        self.processes: list[subprocess.Popen[bytes]] = []
        self._workdirs = 0

    # shape and apps

    def configure(self, **values: object) -> None:
        """Set keys of settings.toml (a key name in several sections: its first, e.g. [nodes] max_nodes)."""
        path = self.root / "settings.toml"
        text = path.read_text()
        for key, value in values.items():
            text, found = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {_toml(value)} ", text, count=1)
            assert found == 1, f"{key} is not a key of settings.toml"
        path.write_text(text)

    def command_app(self, name: str, template: str, **attributes: object) -> None:
        lines = [
            "from balsamd import ApplicationDefinition", "", "",
            f"class {name}(ApplicationDefinition):", f"    command_template = {template!r}",
            *(f"    {key} = {value!r}" for key, value in attributes.items()),
        ]  # fmt: skip
        (self.root / "apps" / f"{name.lower()}.py").write_text("\n".join(lines) + "\n")

    def python_app(self, name: str, source: str) -> None:
        (self.root / "apps" / f"{name.lower()}.py").write_text(source)

    # jobs

    def create(self, app: str, count: int = 1, **fields: Any) -> list[str]:
        """Create ``count`` jobs of ``app`` alike but for their workdirs; returns their ids."""
        specs = []
        for _ in range(count):
            self._workdirs += 1
            specs.append({"app": app, "workdir": f"{app}/{self._workdirs:03d}", **fields})
        with balsamd.connect(self.root) as site:
            return [handle.id for handle in site.jobs.bulk_create(specs)]

    def job(self, job_id: str) -> Job:
        with balsamd.connect(self.root) as site:
            return site.store.get(job_id)

    def states(self, job_ids: Sequence[str]) -> list[str]:
        with balsamd.connect(self.root) as site:
            return [str(site.store.get(i).state) for i in job_ids]

    def events(self, job_id: str) -> list[Event]:
        with balsamd.connect(self.root) as site:
            return site.store.events(job_id)

    def path(self, job_id: str) -> list[str]:
        """The states a job went through, in order."""
        return [str(e.to_state) for e in self.events(job_id)]

    def sessions(self) -> list[Session]:
        with balsamd.connect(self.root) as site:
            return site.store.sessions()

    def session_of(self, pid: int) -> Session:
        found = [s for s in self.sessions() if s.pid == pid]
        assert len(found) == 1, f"sessions of pid {pid}: {found}"
        return found[0]

    def output(self, job_id: str) -> str:
        path = self.data / self.job(job_id).workdir / "job.out"
        return path.read_text() if path.exists() else ""

    def runs(self, job_ids: Sequence[str]) -> list[Run]:
        return [run for job_id in job_ids for run in runs_in(self.output(job_id))]

    # launchers

    def launcher_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "balsamd", "--site", str(self.root), "launcher", *args]

    def start_launcher(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``balsamd launcher ARGS`` in its own session; stderr goes to a file."""
        n = len(self.processes)
        with (self.scratch / f"launcher-{n}.err").open("wb") as err:
            proc = subprocess.Popen(
                self.launcher_argv(*args), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                cwd=self.scratch, env=_child_env(), start_new_session=True,
            )  # fmt: skip
        self.processes.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[bytes], code: int | None = 0) -> str:
        """Wait for a launcher started here; check its exit code, return its stderr."""
        try:
            proc.wait(timeout=LAUNCHER_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"the launcher did not exit within {LAUNCHER_TIMEOUT:g} s\n{self.diagnostics()}")
        err = (self.scratch / f"launcher-{self.processes.index(proc)}.err").read_text()
        if code is not None:
            assert proc.returncode == code, f"exit {proc.returncode}\n{err}\n{self.diagnostics()}"
        return err

    def launch(self, *args: str, code: int | None = 0) -> str:
        """Run ``balsamd launcher ARGS`` to its end; returns its stderr (its summary)."""
        return self.finish(self.start_launcher(*args), code)

    def diagnostics(self) -> str:
        logs = sorted((self.root / "log").glob("launcher-*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in logs)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting until {what}\n{self.diagnostics()}")
            time.sleep(0.02)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "BALSAMD_SITE"}


@contextlib.contextmanager
def new_site(base: Path) -> Iterator[LaunchSite]:
    """A site in ``base`` with nodes of 4 CPUs, no GPUs, jobs of up to 4 nodes and a short
    drain (tests change what they pose); launchers still running at the end are stopped."""
    scratch = base / "scratch"
    scratch.mkdir()
    made = LaunchSite(init_site(base / "site", name="launchtest").root, scratch)
    made.configure(cpus_per_node=4, gpus_per_node=0, max_nodes=4, timeout_grace_sec=5.0)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LaunchSite]:
    with new_site(tmp_path) as made:
        yield made


# ----- a launcher in this process, its placements recorded ----------------------------------


class RecordingNodes(NodeManager):
    """A node manager that keeps, in order, every placement it made and released."""

    def __init__(self, hosts: Sequence[str], cpus_per_node: int, gpus_per_node: int) -> None:
        super().__init__(hosts, cpus_per_node, gpus_per_node)
        self.history: list[tuple[str, Placement]] = []

    def place(self, job: Any) -> Placement | None:
        placement = super().place(job)
        if placement is not None:
            self.history.append(("place", placement))
        return placement

    def release(self, job_id: str) -> Placement:
        placement = super().release(job_id)
        self.history.append(("release", placement))
        return placement

    def placement_of(self) -> dict[str, Placement]:
        return {p.job_id: p for kind, p in self.history if kind == "place"}

    def held_together(self) -> list[list[Placement]]:
        """The placements held right after each placement was made."""
        held: dict[str, Placement] = {}
        snapshots = []
        for kind, placement in self.history:
            if kind == "place":
                held[placement.job_id] = placement
                snapshots.append(list(held.values()))
            else:
                del held[placement.job_id]
        return snapshots


@dataclass
class InProcessRun:
    summary: Summary
    nodes: RecordingNodes


@pytest.fixture
def run_in_process(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InProcessRun]:
    """run(site, hosts, mode): the launcher wired as `balsamd launcher` wires it, in this
    process, with a node manager that records where each run was placed."""
    made: list[RecordingNodes] = []

    def recording(hosts: Sequence[str], cpus_per_node: int, gpus_per_node: int) -> RecordingNodes:
        made.append(RecordingNodes(hosts, cpus_per_node, gpus_per_node))
        return made[-1]

    monkeypatch.setattr(launch_main, "NodeManager", recording)

    def run(
        site: LaunchSite, hosts: Sequence[str], mode: JobMode = JobMode.SERIAL, idle_ttl: float = 0.5
    ) -> InProcessRun:
        with balsamd.connect(site.root) as opened:
            summary = launch_main.run_launcher(
                opened.layout, opened.settings, opened.store, opened.apps.sync(), mode,
                idle_ttl=idle_ttl, nodes=list(hosts),
            )  # fmt: skip
        return InProcessRun(summary, made[-1])

    return run
