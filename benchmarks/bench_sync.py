"""Sync with a real central PostgreSQL: push throughput and remote-create latency.

Every run starts its own throwaway PostgreSQL server (``PostgresServer``: initdb into a fresh
directory, trust authentication on 127.0.0.1, a free port) and removes it at the end; the
sync tests start theirs with the same class.

``sync.push_updates`` (updates/s)
    Setup (untimed): a site store with N jobs, registered in a fresh central database and
    fully pushed once.  Each measurement first changes every one of the N jobs in the store
    (untimed: transactions of CHANGE_CHUNK jobs, each a new ``seq`` and ``version`` as a
    launcher's batched state reports leave them), then times ``SyncEngine.round()`` calls
    until central has all of them (lag 0): reading the changed rows, COPY into a staging
    table and the version-guarded upsert into ``balsamd.jobs``, in batches of the engine's
    default size.  The count is checked against the central versions afterwards.

    Baseline: the same N job rows (as the engine sends them) written by one plain psycopg
    ``COPY`` into an unindexed table of the same columns, committed: the fastest way to get
    those bytes into PostgreSQL on this machine.

``sync.remote_create_latency`` (s, lower is better)
    A site with its daemon running (``balsamd start``; [sync] period_sec = 30, so only the
    LISTEN/NOTIFY path can be fast).  Each measurement creates REMOTE_CREATES jobs one at a
    time through ``balsamd.connect("postgresql://user@...")`` and polls the site store until
    each is PREPROCESSED (claimable); it returns the median of those latencies.

    Baseline: the floor under that path: one connection INSERTs a row whose trigger NOTIFYs,
    another connection LISTENing receives it.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from time import perf_counter

import psycopg

from benchmarks.common import Benchmark, Context, rate

# ----- a throwaway PostgreSQL server ---------------------------------------------------------


class PostgresUnavailable(Exception):
    """No PostgreSQL server could be found or started; the message says what was tried."""


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin, else the directory of an initdb on PATH."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                candidates.append(out.stdout.strip())

    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"postgresql/([\d.]+)/", path)
        return tuple(int(p) for p in found.group(1).split(".") if p) if found else ()

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        path = Path(candidate)
        if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 with trust auth.

    ``start()`` runs initdb the first time and starts the server on a free port; ``stop()``
    stops it (``mode="immediate"`` is as abrupt as kill -9 of the postmaster); a later
    ``start()`` brings the same cluster back on the same port.  ``cleanup()`` stops it and
    removes its directory.  initdb refuses to run as root, so as root the server runs as the
    ``postgres`` OS user, in a directory that user owns.
    """

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.dir: Path | None = None
        self.port = 0
        self.running = False

    @property
    def data(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    @property
    def log(self) -> Path:
        assert self.dir is not None
        return self.dir / "server.log"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root, and runuser (to run PostgreSQL as `postgres`) is missing")
        return ["runuser", "-u", "postgres", "--", *argv]

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        cmd = self._as_owner([str(self.bindir / argv[0]), *argv[1:]])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def _init(self) -> None:
        if self.bindir is None:
            raise PostgresUnavailable(
                "no PostgreSQL server binaries found (tried `pg_config --bindir`, /usr/lib/postgresql/*/bin "
                "and initdb on PATH); install PostgreSQL (e.g. apt-get install postgresql)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="balsamd-pg-"))
        atexit.register(self.cleanup)
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, and no `postgres` user to run the server") from None
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.dir.chmod(0o700)
        out = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--locale=C", "--no-sync")  # fmt: skip
        if out.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{out.stdout}{out.stderr}")

    def start(self) -> None:
        if self.running:
            return
        if self.dir is None:
            self._init()
        # a port found free may be taken before the server binds it: try a few
        for _ in range(5):
            port = self.port or free_port()
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200 "
                "-c fsync=off -c full_page_writes=off"
            )
            out = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60",
                            "start")  # fmt: skip
            if out.returncode == 0:
                self.port, self.running = port, True
                return
            if self.port:  # a restart must come back on its port
                break
        raise PostgresUnavailable(f"pg_ctl start failed:\n{out.stdout}{out.stderr}\n{self.tail()}")

    def stop(self, mode: str = "fast") -> None:
        if not self.running:
            return
        out = self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        if out.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl stop failed:\n{out.stdout}{out.stderr}\n{self.tail()}")
        self.running = False

    def cleanup(self) -> None:
        """Stop the server (whatever it is doing) and remove its directory."""
        if self.dir is None:
            return
        with contextlib.suppress(Exception):
            self.stop("immediate")
        if self.running:  # pg_ctl failed: stop the postmaster by the pid it recorded
            with contextlib.suppress(OSError, ValueError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir, self.running = None, False

    def tail(self, chars: int = 2000) -> str:
        try:
            return f"--- server log\n{self.log.read_text()[-chars:]}"
        except OSError:
            return ""

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def tool(self, name: str) -> str:
        """Path of a client tool of this PostgreSQL (pg_dump, pg_restore, psql)."""
        assert self.bindir is not None
        return str(self.bindir / name)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(dbname=name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ----- the benchmarks --------------------------------------------------------------------------

APP = "bench_noop"
CREATE_CHUNK = 10_000
CHANGE_CHUNK = 1_000  # jobs changed per store transaction, as a launcher's batched reports
REMOTE_CREATES = 5  # remote creates timed per latency measurement
SYNC_PERIOD_SEC = 30.0
SITE_ROLE = "bench_site"
USER_ROLE = "bench_user"


class CentralFixture:
    """A PostgreSQL server with one central database and one registered site."""

    def __init__(self, ctx: Context, site: str) -> None:
        self.ctx = ctx
        self.site = site
        self.server: PostgresServer | None = None
        self.root: Path | None = None

    def start(self) -> None:
        from balsamd.site import init_site
        from balsamd.sync import schema

        self.server = PostgresServer()
        self.server.start()
        admin = self.server.create_database("central")
        with psycopg.connect(admin) as conn:
            schema.migrate(conn)
            schema.add_site(conn, self.site, SITE_ROLE)
            schema.add_user(conn, USER_ROLE)
        layout = init_site(self.ctx.scratch("sync-") / "site", name=self.site, scheduler="local",
                           central=self.dsn(SITE_ROLE))  # fmt: skip
        self.root = layout.root
        text = layout.settings.read_text()
        text = text.replace('bind = "0.0.0.0"', 'bind = "127.0.0.1"')
        text = text.replace("\nperiod_sec = 10.0", f"\nperiod_sec = {SYNC_PERIOD_SEC}")
        layout.settings.write_text(text)

    def dsn(self, role: str = "postgres") -> str:
        assert self.server is not None
        return self.server.dsn(user=role, dbname="central")

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


class PushBench:
    """N jobs in a site store, pushed once; each measurement changes all of them and pushes."""

    def __init__(self, ctx: Context, jobs: int) -> None:
        self.jobs = jobs
        self.central = CentralFixture(ctx, "bench")
        self.store = None
        self.engine = None
        self.rounds = 0

    def setup(self) -> None:
        from balsamd.models import App, JobSpec
        from balsamd.site import SiteLayout
        from balsamd.store.store import SiteStore
        from balsamd.sync.engine import SyncEngine

        self.central.start()
        assert self.central.root is not None
        layout = SiteLayout(self.central.root)
        self.store = SiteStore(layout.store)
        self.store.put_apps([App(name=APP, command_template="true")])
        for start in range(0, self.jobs, CREATE_CHUNK):
            count = min(CREATE_CHUNK, self.jobs - start)
            self.store.create_jobs([
                JobSpec(app=APP, workdir=f"bench/{start + k}") for k in range(count)
            ])  # fmt: skip
        self.engine = SyncEngine(self.store, self.central.dsn(SITE_ROLE), "bench", layout.load_settings())
        report = self.engine.round()
        if report.lag or report.pushed_jobs != self.jobs:
            raise RuntimeError(f"initial push: {report}")
        with psycopg.connect(self.central.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE copy_target (LIKE balsamd.jobs INCLUDING DEFAULTS)")  # no indexes, no keys

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        self.central.stop()

    def _change_all(self) -> None:
        """Every job changed once, CHANGE_CHUNK jobs per store transaction (untimed)."""
        assert self.store is not None
        db = self.store.db
        self.rounds += 1
        with db.read() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY id")]
        for start in range(0, len(ids), CHANGE_CHUNK):
            chunk = json.dumps(ids[start : start + CHANGE_CHUNK])
            with db.write() as conn:
                seq = db.next_seq(conn)
                conn.execute(
                    "UPDATE jobs SET data = ?, version = version + 1, seq = ?, updated_at = ? "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps({"round": self.rounds}), seq, time.time(), chunk),
                )

    def measure(self) -> float:
        assert self.engine is not None
        self._change_all()
        pushed = 0
        t0 = perf_counter()
        while True:
            report = self.engine.round()
            pushed += report.pushed_jobs
            if report.lag == 0:
                break
        elapsed = perf_counter() - t0
        with psycopg.connect(self.central.dsn()) as conn:
            done = conn.execute(
                "SELECT count(*) FROM balsamd.jobs WHERE site = 'bench' AND data ->> 'round' = %s", (str(self.rounds),)
            ).fetchone()[0]
        if pushed != self.jobs or done != self.jobs:
            raise RuntimeError(f"pushed {pushed} job changes, central has {done}; expected {self.jobs}")
        return rate(pushed, elapsed)

    def baseline(self) -> float:
        from balsamd.models import JOB_COLUMNS, job_row

        assert self.store is not None
        rows = [("bench", *job_row(job)) for job in self.store.filter()]
        columns = ", ".join(JOB_COLUMNS)
        with psycopg.connect(self.central.dsn()) as conn:
            conn.execute("TRUNCATE copy_target")
            conn.commit()
            t0 = perf_counter()
            with conn.cursor().copy(f"COPY copy_target (site, {columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            elapsed = perf_counter() - t0
            copied = conn.execute("SELECT count(*) FROM copy_target").fetchone()[0]
        if copied != self.jobs:
            raise RuntimeError(f"COPY wrote {copied} rows, expected {self.jobs}")
        return rate(copied, elapsed)


class LatencyBench:
    """A site whose daemon runs; remote creates timed until the site can claim the job."""

    def __init__(self, ctx: Context) -> None:
        self.central = CentralFixture(ctx, "lat")
        self.conn = None
        self.store = None
        self.count = 0

    def _balsamd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        assert self.central.root is not None
        env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_RPC")}
        return subprocess.run(
            [sys.executable, "-m", "balsamd", "--site", str(self.central.root), *args],
            capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def _listening(self) -> bool:
        proc = self._balsamd("status", "--json")
        if not proc.stdout.strip():
            return False
        services = {s["name"]: s for s in json.loads(proc.stdout).get("services", [])}
        sync = services.get("sync", {})
        return bool(sync.get("detail", {}).get("listening")) and sync.get("last_tick") is not None

    def setup(self) -> None:
        import balsamd
        from balsamd.store.store import SiteStore

        self.central.start()
        root = self.central.root
        assert root is not None
        (root / "apps" / "noop.py").write_text(
            "from balsamd import ApplicationDefinition\n\n\nclass Noop(ApplicationDefinition):\n"
            "    command_template = 'true'\n"
        )
        with balsamd.connect(root) as site:
            site.apps.sync()
        started = self._balsamd("start")
        if started.returncode != 0:
            raise RuntimeError(f"balsamd start failed:\n{started.stdout}{started.stderr}")
        deadline = time.monotonic() + 30
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon's sync service did not start listening within 30 s")
            time.sleep(0.1)
        self.conn = balsamd.connect(self.central.dsn(USER_ROLE))
        self.store = SiteStore(root / "balsamd.db")

    def teardown(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
            if self.store is not None:
                self.store.close()
            if self.central.root is not None:
                self._stop_daemon(self.central.root)
        finally:
            self.central.stop()

    def _stop_daemon(self, root: Path) -> None:
        """`balsamd stop`; the daemon's pid gets SIGKILL if it is still there after that."""
        from balsamd.rpc.record import read_record

        record = read_record(root)
        if record is None:
            return
        self._balsamd("stop")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(record.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)

    def _claimable_after(self, job_id: str, t0: float) -> float:
        from balsamd.store.errors import StoreError

        assert self.store is not None
        deadline = t0 + 60
        while perf_counter() < deadline:
            try:
                if self.store.get(job_id).state == "PREPROCESSED":
                    return perf_counter() - t0
            except StoreError:
                pass
            time.sleep(0.002)
        raise RuntimeError(f"job {job_id} was not claimable at the site 60 s after its remote creation")

    def measure(self) -> float:
        assert self.conn is not None
        latencies = []
        for _ in range(REMOTE_CREATES):
            self.count += 1
            t0 = perf_counter()
            job = self.conn.jobs.create("Noop", f"w/{self.count}", site="lat")
            latencies.append(self._claimable_after(job.id, t0))
        return statistics.median(latencies)

    def baseline(self) -> float:
        """An INSERT whose trigger NOTIFYs, received by another connection LISTENing."""
        dsn = self.central.dsn()
        latencies = []
        with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn, autocommit=True) as writer:
            writer.execute(
                "CREATE TABLE IF NOT EXISTS ping (n integer);"
                "CREATE OR REPLACE FUNCTION ping_notify() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_notify('bench_ping', NEW.n::text); RETURN NULL; END $$;"
                "CREATE OR REPLACE TRIGGER ping_notify AFTER INSERT ON ping FOR EACH ROW EXECUTE FUNCTION ping_notify()"
            )
            listener.execute("LISTEN bench_ping")
            for n in range(REMOTE_CREATES):
                t0 = perf_counter()
                writer.execute("INSERT INTO ping VALUES (%s)", (n,))
                got = [note.payload for note in listener.notifies(timeout=10, stop_after=1)]
                if got != [str(n)]:
                    raise RuntimeError(f"expected notification {n}, got {got}")
                latencies.append(perf_counter() - t0)
        return statistics.median(latencies)


def benchmarks(ctx: Context) -> list[Benchmark]:
    jobs = ctx.size(50_000, quick=10_000, minimum=10)
    push = PushBench(ctx, jobs)
    latency = LatencyBench(ctx)
    return [
        Benchmark(
            name="sync.push_updates",
            unit="updates/s",
            description=f"{jobs} job changes pushed by SyncEngine rounds vs a plain COPY of the same rows",
            measure=push.measure,
            baseline=push.baseline,
            goal_value=20_000,
            setup=push.setup,
            teardown=push.teardown,
        ),
        Benchmark(
            name="sync.remote_create_latency",
            unit="s",
            description=f"median of {REMOTE_CREATES} remote creates until PREPROCESSED at a site whose daemon "
            f"runs (period {SYNC_PERIOD_SEC:g} s); baseline: INSERT -> NOTIFY -> LISTEN",
            measure=latency.measure,
            baseline=latency.baseline,
            goal_value=1.0,
            lower_is_better=True,
            setup=latency.setup,
            teardown=latency.teardown,
        ),
    ]
