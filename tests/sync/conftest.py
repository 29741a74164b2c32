"""A real PostgreSQL for the sync tests, a fresh central database per test, and sites.

One server runs for the whole session (``pg_server``; initdb in a temporary directory, trust
authentication on 127.0.0.1, a free port).  Without PostgreSQL the tests fail when CI is
"true" and are skipped elsewhere.  Every test gets its own database with the central schema
(``central``) and makes sites with ``make_site``: real site directories whose daemons and
launchers are stopped when the test ends.  ``restart_server`` stops and restarts the server
for the fault tests.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

import balsamd
from balsamd.config import Settings
from balsamd.launch.leader.main import run_launcher
from balsamd.launch.leader.summary import Summary
from balsamd.models import JobMode
from balsamd.site import SiteLayout, init_site
from balsamd.sync import schema
from balsamd.sync.engine import RoundReport, SyncEngine
from balsamd.sync.remote import CentralConnection
from benchmarks.bench_sync import PostgresServer, PostgresUnavailable
from tests.daemon.conftest import SETTINGS, DaemonSite, child_env

SQUARE = """
def run(self, x: int) -> dict:
    if x < 0:
        raise ValueError(f"cannot square negative {x}")
    return {"square": x * x}
"""

# fails on its first run in a workdir, succeeds on the next: for retries
FLAKY = """
def run(self) -> str:
    import pathlib
    marker = pathlib.Path("tried")
    if not marker.exists():
        marker.write_text("once")
        raise RuntimeError("first attempt fails")
    return "second attempt"
"""

SYNC_SETTINGS: dict[str, object] = {
    **SETTINGS,
    "scheduler.kind": "local",
    "nodes.cpus_per_node": 4,
    "sync.period_sec": 0.5,
}

_databases = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        server.cleanup()
        message = f"the sync tests need a PostgreSQL server: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def restart_server(pg_server: PostgresServer) -> Iterator[Callable[..., Any]]:
    """``restart_server(between=fn, mode="immediate")``: stop the server, call ``between()``
    while it is down, start it again on its port; the server is running after the test."""

    def restart(between: Callable[[], object] | None = None, mode: str = "immediate") -> object:
        pg_server.stop(mode)
        try:
            return between() if between is not None else None
        finally:
            pg_server.start()

    yield restart
    pg_server.start()


class Central:
    """One test's central database: the administrator's view and ways to act as its roles."""

    def __init__(self, server: PostgresServer, dbname: str) -> None:
        self.server = server
        self.dbname = dbname
        self.dsn = server.dsn(dbname=dbname)

    def dsn_for(self, role: str) -> str:
        return self.server.dsn(user=role, dbname=self.dbname)

    @contextlib.contextmanager
    def connect(self, role: str = "postgres") -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.dsn_for(role), autocommit=True) as conn:
            yield conn

    def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` as the administrator (who sees every row) and return its rows."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def add_site(self, name: str) -> str:
        role = f"{name}_site"
        with psycopg.connect(self.dsn) as conn:
            schema.add_site(conn, name, role)
        return role

    def add_user(self, role: str) -> str:
        with psycopg.connect(self.dsn) as conn:
            schema.add_user(conn, role)
        return role

    def remote(self, user: str) -> CentralConnection:
        conn = balsamd.connect(self.dsn_for(user))
        assert isinstance(conn, CentralConnection)
        return conn

    def jobs(self, site: str) -> dict[str, dict[str, Any]]:
        """Central's job rows of ``site`` as plain dicts (fields as the site store has them: a job
        made at the site has no owner there, while central names the site's role)."""
        (role,) = self.rows("SELECT role FROM balsamd.sites WHERE name = %s", (site,))[0]
        found = {}
        with self.remote("postgres") as conn:  # the administrator's API sees every row
            for remote in conn.jobs.filter(site=site):
                job = remote.record
                if remote.owner == role:
                    job.owner = ""
                found[job.id] = msgspec.to_builtins(job)
        return found

    def events(self, site: str, store_id: str) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT id, job_id, from_state, to_state, ts, reason FROM balsamd.events "
            "WHERE site = %s AND store_id = %s ORDER BY id",
            (site, store_id),
        )


@contextlib.contextmanager
def central_database(server: PostgresServer) -> Iterator[Central]:
    """A fresh database with the central schema and its access rules, dropped at the end."""
    server.start()  # a fault test may have left it stopped
    name = f"central_{os.getpid()}_{next(_databases)}"
    dsn = server.create_database(name)
    try:
        with psycopg.connect(dsn) as conn:
            schema.migrate(conn)
        yield Central(server, name)
    finally:
        server.start()
        server.drop_database(name)


@pytest.fixture
def central(pg_server: PostgresServer) -> Iterator[Central]:
    with central_database(pg_server) as made:
        yield made


class SyncSite(DaemonSite):
    """A site directory syncing with the test's central database as its own role."""

    def __init__(self, root: Path, scratch: Path, name: str, central: Central, role: str) -> None:
        super().__init__(root, scratch)
        self.name = name
        self.central = central
        self.role = role
        self.dsn = central.dsn_for(role)

    def settings(self) -> Settings:
        return SiteLayout(self.root).load_settings()

    def register_apps(self) -> None:
        """Record SITE/apps/*.py in the store (as `balsamd app ls` does)."""
        with balsamd.connect(self.root) as site:
            site.apps.sync()

    def sync(self, batch: int = 5000) -> RoundReport:
        """One sync round in this process, as the daemon's sync service runs it."""
        settings = self.settings()
        with self.store() as store:
            return SyncEngine(store, settings.sync.central, self.name, settings, batch=batch).round()

    def sync_cli(self, crash_at: str | None = None, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        """`balsamd sync --once` in a subprocess, killed (-9) at ``crash_at`` if given."""
        env = child_env(**({"BALSAMD_SYNC_CRASH_AT": crash_at} if crash_at else {}))
        return self.balsamd("sync", "--once", env=env, code=code)

    def launch(self, idle_ttl: float = 0.5) -> Summary:
        """Run a serial launcher in this process on this host until it is idle."""
        with balsamd.connect(self.root) as site:
            return run_launcher(
                site.layout, site.settings, site.store, site.apps.sync(), JobMode.SERIAL, idle_ttl=idle_ttl
            )

    def jobs_by_id(self) -> dict[str, dict[str, Any]]:
        with self.store() as store:
            return {j.id: msgspec.to_builtins(j) for j in store.filter()}

    def store_id(self) -> str:
        with self.store() as store:
            return store.store_id()

    def event_rows(self) -> list[tuple[Any, ...]]:
        return [
            (e.id, e.job_id, None if e.from_state is None else str(e.from_state), str(e.to_state), e.ts, e.reason)
            for e in self.events()
        ]

    def applied_intents(self) -> dict[str, Any]:
        """Intent id -> the outcome the site recorded, as JSON values."""
        with self.store() as store, store.db.read() as conn:
            return {i: json.loads(o) for i, o in conn.execute("SELECT id, outcome FROM applied_intents")}


class SiteMaker:
    """``maker(name, settings=None, apps=True)``: a site registered in ``central`` with its own
    role, the Square, Flaky and Noop apps recorded in its store (not yet synced); ``close()``
    stops whatever was started on the sites."""

    def __init__(self, base: Path, central: Central) -> None:
        self.base = base
        self.central = central
        self.made: list[SyncSite] = []

    def __call__(self, name: str, settings: dict[str, object] | None = None, apps: bool = True) -> SyncSite:
        role = self.central.add_site(name)
        base = self.base / name
        (base / "scratch").mkdir(parents=True)
        layout = init_site(base / "site", name=name, scheduler="local", central=self.central.dsn_for(role))
        site = SyncSite(layout.root, base / "scratch", name, self.central, role)
        self.made.append(site)
        site.configure({**SYNC_SETTINGS, **(settings or {})})
        if apps:
            site.app("Square", SQUARE)
            site.app("Flaky", FLAKY)
            site.command_app("Noop", "true")
            site.register_apps()
        return site

    def close(self) -> None:
        for site in self.made:
            site.close()


@pytest.fixture
def make_site(tmp_path: Path, central: Central) -> Iterator[SiteMaker]:
    maker = SiteMaker(tmp_path, central)
    try:
        yield maker
    finally:
        maker.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BALSAMD_SITE", "BALSAMD_RPC", "BALSAMD_SYNC_CRASH_AT"):
        monkeypatch.delenv(name, raising=False)


def assert_converged(site: SyncSite, refused: int = 0, lost_intents: int = 0) -> None:
    """Central's copy of ``site`` equals the site: every job with every field (the site owns
    all of them once it has the job), and the same events, each once.  Central may also hold
    ``refused`` jobs the site never had: creates it refused, FAILED there with the reason.
    Every intent central has for the site was applied once, with the outcome central shows;
    the site applied ``lost_intents`` more that central no longer has (restored from a backup)."""
    central = site.central
    local = site.jobs_by_id()
    remote = central.jobs(site.name)
    extra = {i: j for i, j in remote.items() if i not in local}
    assert len(extra) == refused, f"central has jobs the site does not: {extra}"
    for job in extra.values():
        assert job["state"] == "FAILED" and job["version"] == 0
        assert job["state_reason"].startswith(f"refused by site {site.name}: ")
    missing = sorted(set(local) - set(remote))
    assert not missing, f"jobs missing in central: {missing}"
    for job_id, job in local.items():
        assert remote[job_id] == job, f"job {job_id} differs"
    events = site.event_rows()
    central_events = central.events(site.name, site.store_id())
    assert central_events == events
    assert len({e[0] for e in central_events}) == len(central_events), "an event is duplicated"
    # every intent addressed to the site was applied once and acknowledged
    pending = central.rows("SELECT id FROM balsamd.intents WHERE site = %s AND applied_at IS NULL", (site.name,))
    assert pending == []
    intents = dict(central.rows("SELECT id, outcome FROM balsamd.intents WHERE site = %s", (site.name,)))
    applied = site.applied_intents()
    assert intents == {i: applied[i] for i in intents}
    assert len(applied) - len(intents) == lost_intents
