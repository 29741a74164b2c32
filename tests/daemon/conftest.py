"""Sites with a daemon started as users start it (`balsamd start` in a subprocess).

Every daemon a test starts is stopped when the test ends, pass or fail: first with
`balsamd stop`, then, for anything still alive, SIGKILL by the pid that `start` printed or
daemon.json recorded (checked against the process's command line, so a recycled pid is
never touched).  Periods are short so that the whole suite stays quick.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import balsamd
from balsamd.config import load_settings
from balsamd.models import Event, Job
from balsamd.rpc.client import RemoteStore, RpcClient
from balsamd.rpc.record import DaemonRecord, connect_host, read_record, read_secret
from balsamd.site import init_site
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules

WAIT_TIMEOUT = 30.0  # a condition still false after this is a failure, not a slow machine
COMMAND_TIMEOUT = 60.0  # for one `balsamd` command
PROCESS_TIMEOUT = 90.0  # for a launcher to finish

# short periods: hooks and dependencies are looked at ten times a second
SETTINGS: dict[str, object] = {
    "nodes.cpus_per_node": 4,
    "nodes.max_nodes": 1,
    "daemon.bind": "127.0.0.1",
    "daemon.processing_period_sec": 0.1,
    "daemon.hook_timeout_sec": 5.0,
    "daemon.hook_workers": 2,
    "daemon.reaper_period_sec": 0.2,
    "daemon.apps_period_sec": 0.2,
    "launcher.heartbeat_sec": 0.5,
    "launcher.session_expiry_sec": 60.0,
    "launcher.idle_ttl_sec": 1.0,
    "launcher.timeout_grace_sec": 2.0,
}


# a daemon whose elastic queue submits one-node serial batch jobs quickly, on the local scheduler
ELASTIC_SETTINGS: dict[str, object] = {
    "daemon.scheduler_period_sec": 0.3,
    "elastic.enabled": True,
    "elastic.period_sec": 0.5,
    "elastic.max_nodes": 1,
    "elastic.job_mode": "serial",
    "elastic.min_wall_time_min": 1,
    "elastic.max_wall_time_min": 10,
    "elastic.wall_time_pad_min": 0,
    "launcher.idle_ttl_sec": 0.5,
}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without a site or RPC choice of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_RPC")}
    env.update(extra)
    return env


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """Poll ``condition`` until it returns something true; returns it, or fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting until {what}")
        time.sleep(0.02)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """A live process (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class DaemonSite:
    """A fresh site directory, the daemons and launchers started on it, and ways to look in."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root = root
        self.scratch = scratch
        self.daemon_pids: set[int] = set()
        self.processes: list[subprocess.Popen[bytes]] = []
        self._workdirs = 0

    # ----- shape and apps ---------------------------------------------------------------

    def configure(self, values: dict[str, object]) -> None:
        """Set keys of settings.toml, each named ``section.key``."""
        path = self.root / "settings.toml"
        text = path.read_text()
        for dotted, value in values.items():
            section, key = dotted.split(".")
            table = re.search(rf"(?ms)^\[{section}\]\n(.*?)(?=^\[|\Z)", text)
            assert table is not None, f"no [{section}] in settings.toml"
            body, found = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {_toml(value)} ", table.group(1))
            assert found == 1, f"{key} is not a key of [{section}] in settings.toml"
            text = text[: table.start(1)] + body + text[table.end(1) :]
        path.write_text(text)

    def app(self, name: str, body: str) -> None:
        """Write SITE/apps/NAME.py: an ApplicationDefinition subclass with ``body`` indented."""
        lines = ["import time", "", "from balsamd import ApplicationDefinition, JobState", "", ""]
        lines.append(f"class {name}(ApplicationDefinition):")
        lines += [f"    {line}" if line else "" for line in body.strip("\n").splitlines()]
        (self.root / "apps" / f"{name.lower()}.py").write_text("\n".join(lines) + "\n")

    def command_app(self, name: str, template: str) -> None:
        self.app(name, f"command_template = {template!r}")

    # ----- the CLI, as a user types it --------------------------------------------------

    def balsamd(
        self, *args: str, code: int | None = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``balsamd --site SITE ARGS`` in a subprocess; checks the exit code unless None."""
        proc = subprocess.run(
            [sys.executable, "-m", "balsamd", "--site", str(self.root), *args],
            capture_output=True, text=True, env=env or child_env(), cwd=self.scratch,
            timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if code is not None:
            assert proc.returncode == code, (
                f"balsamd {' '.join(args)}: exit {proc.returncode}, wanted {code}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}\n{self.daemon_log()}"
            )
        return proc

    def start(self, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        """`balsamd start`; remembers the pid it printed so the daemon is stopped in the end."""
        proc = self.balsamd("start", code=code)
        for pid in re.findall(r"pid (\d+)", proc.stdout):
            self.daemon_pids.add(int(pid))
        record = self.record()
        if record is not None:
            self.daemon_pids.add(record.pid)
        return proc

    def stop(self) -> subprocess.CompletedProcess[str]:
        return self.balsamd("stop")

    def status(self, code: int | None = 0) -> dict[str, Any]:
        proc = self.balsamd("status", "--json", code=code)
        return json.loads(proc.stdout)

    def record(self) -> DaemonRecord | None:
        return read_record(self.root)

    def daemon_pid(self) -> int:
        record = self.record()
        assert record is not None, "no daemon.json"
        return record.pid

    def daemon_log(self) -> str:
        path = self.root / "log" / "daemon.log"
        return f"--- daemon.log\n{path.read_text()[-4000:]}" if path.exists() else ""

    # ----- the store, directly (this host owns it) and over the daemon's RPC -----------------

    @contextlib.contextmanager
    def store(self) -> Iterator[SiteStore]:
        s = SiteStore(self.root / "balsamd.db", SiteRules.of(load_settings(self.root / "settings.toml")))
        try:
            yield s
        finally:
            s.close()

    def client(self, timeout: float = 10.0) -> RpcClient:
        record = self.record()
        assert record is not None, "no daemon.json: the daemon is not running"
        return RpcClient(connect_host(record), record.port, read_secret(self.root), "test", timeout, site="daemontest")

    @contextlib.contextmanager
    def remote(self) -> Iterator[RemoteStore]:
        store = RemoteStore(self.client())
        try:
            yield store
        finally:
            store.close()

    def create(self, app: str, count: int = 1, **fields: Any) -> list[str]:
        """Create ``count`` jobs of ``app`` alike but for their workdirs; returns their ids."""
        return self.create_each(app, [fields] * count)

    def create_each(self, app: str, specs: list[dict[str, Any]]) -> list[str]:
        """Create one job of ``app`` per spec, in one transaction (validated by the Python API)."""
        made = []
        for spec in specs:
            self._workdirs += 1
            made.append({"app": app, "workdir": f"{app}/{self._workdirs:04d}", **spec})
        with balsamd.connect(self.root) as site:
            return [handle.id for handle in site.jobs.bulk_create(made)]

    def job(self, job_id: str) -> Job:
        with self.store() as s:
            return s.get(job_id)

    def jobs(self, job_ids: list[str]) -> list[Job]:
        with self.store() as s:
            return [s.get(i) for i in job_ids]

    def events(self, job_id: str | None = None) -> list[Event]:
        with self.store() as s:
            return s.events(job_id)

    def path(self, job_id: str) -> list[str]:
        """The states a job went through, in order."""
        return [str(e.to_state) for e in self.events(job_id)]

    def wait_state(self, job_id: str, *states: str, timeout: float = WAIT_TIMEOUT) -> Job:
        """Wait until the job is in one of ``states``; returns it."""
        found: list[Job] = []

        def reached() -> bool:
            found[:] = [self.job(job_id)]
            return found[0].state in states

        deadline = time.monotonic() + timeout
        while not reached():
            if time.monotonic() > deadline:
                pytest.fail(
                    f"job {job_id} is {found[0].state}, not {' or '.join(states)}, after {timeout:g} s; "
                    f"path {self.path(job_id)}\n{self.daemon_log()}"
                )
            time.sleep(0.02)
        return found[0]

    # ----- launchers --------------------------------------------------------------------

    def start_launcher(self, *args: str, rpc: bool = True) -> subprocess.Popen[bytes]:
        """`balsamd launcher ARGS` in a process of its own, on the RPC path unless told not."""
        n = len(self.processes)
        env = child_env(BALSAMD_RPC="1") if rpc else child_env()
        with (self.scratch / f"launcher-{n}.err").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "balsamd", "--site", str(self.root), "launcher", *args],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=self.scratch, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[bytes], code: int = 0) -> str:
        """Wait for a launcher; checks its exit code and returns its stderr (its summary)."""
        try:
            proc.wait(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"the launcher did not exit within {PROCESS_TIMEOUT:g} s\n{self.diagnostics()}")
        err = (self.scratch / f"launcher-{self.processes.index(proc)}.err").read_text()
        assert proc.returncode == code, f"launcher exit {proc.returncode}\n{err}\n{self.diagnostics()}"
        return err

    def launcher_logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted((self.root / "log").glob("launcher-*.log")))

    def diagnostics(self) -> str:
        return f"--- launcher logs\n{self.launcher_logs()[-4000:]}\n{self.daemon_log()}"

    # ----- the end ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop every launcher and daemon started here, whatever state the test left."""
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        record = self.record()
        if record is not None:
            self.daemon_pids.add(record.pid)
        if any(self._ours(pid) for pid in self.daemon_pids):
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [sys.executable, "-m", "balsamd", "--site", str(self.root), "stop"],
                    capture_output=True, env=child_env(), timeout=30, stdin=subprocess.DEVNULL,
                )  # fmt: skip
        for pid in self.daemon_pids:
            if self._ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        # runs of a killed launcher (each in a process group of its own) working in the site
        for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/cwd").startswith(f"{self.root}/"):
                    os.kill(pid, signal.SIGKILL)

    def _ours(self, pid: int) -> bool:
        return alive(pid) and str(self.root) in cmdline(pid)


@contextlib.contextmanager
def new_site(
    base: Path, settings: dict[str, object] | None = None, group_readable: bool = False
) -> Iterator[DaemonSite]:
    """A site under ``base`` with the test settings (and ``settings`` on top); everything
    started on it is stopped at the end of the block."""
    scratch = base / "scratch"
    scratch.mkdir(parents=True)
    made = DaemonSite(init_site(base / "site", name="daemontest", group_readable=group_readable).root, scratch)
    made.configure({**SETTINGS, **(settings or {})})
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def running(base: Path, settings: dict[str, object] | None = None) -> Iterator[DaemonSite]:
    """A new site with its daemon started."""
    with new_site(base, settings) as made:
        made.start()
        yield made


@pytest.fixture(autouse=True)
def _no_outside_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BALSAMD_SITE", raising=False)
    monkeypatch.delenv("BALSAMD_RPC", raising=False)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[DaemonSite]:
    """A site whose daemon is not started."""
    with new_site(tmp_path) as made:
        yield made


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonSite]:
    """A site with its daemon running."""
    with running(tmp_path) as made:
        yield made
