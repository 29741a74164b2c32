"""Sync under faults: the syncing process killed at every crash point, a batch delivered twice,
PostgreSQL stopped under a running daemon, and breaks of continuity (central restored from a
backup, the site store replaced).  After each, a clean round must leave central equal to the
site: every job field, every event once, every intent applied once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import apsw
import msgspec
import psycopg
import pytest

from balsamd.models import App, ClaimLimits, JobState, StateUpdate
from balsamd.store.outbox import PUSHED_EVENT, PUSHED_SEQ
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from balsamd.sync import schema
from balsamd.sync.engine import CRASH_ENV, CRASH_POINTS, RoundReport, SyncEngine, keepalive_options
from balsamd.sync.remote import RemoteJob
from balsamd.sync.schema import CentralError
from tests.daemon.conftest import child_env, wait_until

from .conftest import Central, SyncSite, assert_converged

KILLED_BY_SIGKILL = -9

SMALL_BATCH_SYNC = """
import sys
import balsamd
from balsamd.sync.engine import SyncEngine
from balsamd.store.queries import claimed_jobs

with balsamd.connect(sys.argv[1]) as site:
    SyncEngine(site.store, site.settings.sync.central, site.name, site.settings, batch=int(sys.argv[2])).round()
"""


def run_jobs(site: SyncSite, job_ids: list[str], fail: bool = False) -> None:
    """Run the given runnable jobs to the end through a launcher session, as a launcher would
    report them: RUNNING, then RUN_DONE (or RUN_ERROR with ``fail``)."""
    with site.store() as store:
        session = store.open_session(label="test").id
        limits = ClaimLimits(max_jobs=10_000)
        claimed = [j.id for j in claimed_jobs(store.claim(session, limits), limits)]
        assert set(job_ids) <= set(claimed), f"not runnable: {set(job_ids) - set(claimed)}"
        store.release(session, [i for i in claimed if i not in job_ids])
        now = time.time()
        store.update_states(session, [StateUpdate(job_id=i, state=JobState.RUNNING, ts=now) for i in job_ids])
        end = JobState.RUN_ERROR if fail else JobState.RUN_DONE
        rc = 1 if fail else 0
        store.update_states(session, [StateUpdate(job_id=i, state=end, ts=now + 1, return_code=rc) for i in job_ids])
        store.close_session(session)


class Campaign:
    """A site with synced history and, waiting for the next round, work of every kind: site
    changes and events to push, and create (one the site refuses), kill, retry and update
    intents to apply."""

    INTENTS = 6

    def __init__(self, central: Central, site: SyncSite) -> None:
        self.central = central
        self.site = site
        central.add_user("alice")

    def history(self) -> None:
        site = self.site
        site.sync()
        with self.central.remote("alice") as conn:
            self.remote = [j.id for j in conn.jobs.bulk_create(
                [{"app": "Square", "workdir": f"sq/{x}", "parameters": {"x": x}} for x in range(4)], site=site.name
            )]  # fmt: skip
        site.sync()
        self.local = site.create("Noop", 5)
        run_jobs(site, [self.remote[0], *self.local[:2]])
        run_jobs(site, [self.remote[1]], fail=True)
        site.sync()

    def pending(self) -> None:
        """Work for the round that will crash."""
        site, central = self.site, self.central
        ghost = msgspec.json.encode(App(name="Ghost", command_template="true")).decode()
        central.rows("INSERT INTO balsamd.apps (site, name, spec) VALUES (%s, 'Ghost', %s)", (site.name, ghost))
        with central.remote("alice") as conn:
            self.created = [j.id for j in conn.jobs.bulk_create(
                [{"app": "Square", "workdir": f"new/{x}", "parameters": {"x": x}} for x in (10, 11)], site=site.name
            )]  # fmt: skip
            [self.ghost] = [j.id for j in conn.jobs.bulk_create([{"app": "Ghost", "workdir": "g"}], site=site.name)]
            conn.jobs.kill([self.remote[3]])
            conn.jobs.retry([self.remote[1]])
            conn.jobs.update(self.remote[2], parameters={"x": 20})
        run_jobs(site, [self.local[2]])
        self.local += site.create("Noop", 3)

    def after_crash(self) -> None:
        """The site keeps working between the crash and the next round."""
        run_jobs(self.site, [self.local[3]])

    def check(self) -> None:
        site = self.site
        assert_converged(site, refused=1)
        jobs = site.jobs_by_id()
        assert set(jobs) == {*self.remote, *self.local, *self.created}
        assert len(site.applied_intents()) == self.INTENTS
        assert self.central.rows("SELECT state FROM balsamd.jobs WHERE id = %s", (self.ghost,)) == [("FAILED",)]
        # each intent took effect exactly once
        path = site.path
        assert path(self.remote[3]).count("KILLED") == 1 and jobs[self.remote[3]]["state"] == "KILLED"
        assert path(self.remote[1]).count("RESTART_READY") == 1
        assert jobs[self.remote[1]]["state"] == "RESTART_READY"
        assert jobs[self.remote[2]]["parameters"] == {"x": 20}
        for job_id in self.created:  # created once: one way into the store
            assert path(job_id)[:3] == ["READY", "STAGED_IN", "PREPROCESSED"]
            assert path(job_id).count("READY") == 1
        assert jobs[self.local[3]]["state"] == "JOB_FINISHED"


@pytest.fixture
def campaign(central: Central, make_site) -> Campaign:
    made = Campaign(central, make_site("alpha"))
    made.history()
    made.pending()
    return made


def cursor(site: SyncSite) -> tuple[int, int]:
    with site.store() as store:
        return int(store.meta_get(PUSHED_SEQ) or 0), int(store.meta_get(PUSHED_EVENT) or 0)


def central_cursor(site: SyncSite) -> tuple[int, int]:
    [row] = site.central.rows("SELECT pushed_seq, pushed_event FROM balsamd.sites WHERE name = %s", (site.name,))
    return row


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_every_crash_point_then_a_clean_round_converges(campaign: Campaign, point: str) -> None:
    site, central = campaign.site, campaign.central
    proc = site.sync_cli(crash_at=point, code=None)
    assert proc.returncode == KILLED_BY_SIGKILL, (proc.stdout, proc.stderr)

    unacked = central.rows("SELECT count(*) FROM balsamd.intents WHERE site = 'alpha' AND applied_at IS NULL")[0][0]
    if point == "intents_applied":  # applied at the site, not yet acknowledged in central
        assert len(site.applied_intents()) == Campaign.INTENTS and unacked == 5
    else:
        assert unacked == 0
    if point == "push_batch_committed":  # central has the batch, the site's cursor has not moved
        assert central_cursor(site)[0] > cursor(site)[0]
    if point == "push_cursor_saved":
        assert central_cursor(site) == cursor(site)
    if point == "intents_acked":  # nothing pushed yet: central still shows the job unkilled
        assert central.rows("SELECT state FROM balsamd.jobs WHERE id = %s", (campaign.remote[3],)) == [
            ("PREPROCESSED",)
        ]

    campaign.after_crash()
    report = site.sync()
    assert report.reconciled == ""
    campaign.check()


def test_repeated_crashes_in_small_batches_converge(campaign: Campaign) -> None:
    """Pushing two jobs per batch, the syncing process dies after applying the intents, after
    acknowledging them, and then again and again between and after pushed batches; then a
    clean round."""
    site = campaign.site
    points = ("intents_applied", "intents_acked", "push_batch_committed", "push_cursor_saved",
              "push_cursor_saved", "push_batch_committed")  # fmt: skip
    for point in points:
        proc = subprocess.run(
            [sys.executable, "-c", SMALL_BATCH_SYNC, str(site.root), "2"],
            env=child_env(**{CRASH_ENV: point}), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == KILLED_BY_SIGKILL, proc.stderr
    campaign.after_crash()
    site.sync(batch=2)
    campaign.check()


def test_events_whose_jobs_row_comes_in_a_later_batch_wait_for_it(central: Central, make_site) -> None:
    """A site adds events only to jobs central holds at the site.  A job changed after others
    has its row pushed after theirs but its first events before: they wait, and all arrive."""
    site = make_site("alpha")
    site.sync()
    [first] = site.create("Noop")
    for _ in range(3):
        site.create("Noop")
    with site.store() as store:
        store.kill([first])
    progress: list[tuple[int, int]] = []
    with site.store() as store:
        engine = SyncEngine(store, site.dsn, site.name, site.settings(), batch=1,
                            progress=lambda r: progress.append((r.pushed_jobs, r.pushed_events)))  # fmt: skip
        report = engine.round()
    assert progress[0] == (1, 0)  # a row went, the event of the job whose row had not did not
    assert report.pushed_events == len(site.event_rows())
    assert_converged(site)


def test_a_job_removed_from_central_by_hand_does_not_hold_up_the_sites_events(central: Central, make_site) -> None:
    """Its events still to push have no job to go to: they are left out, said so, and the
    events after them go."""
    site = make_site("alpha")
    site.sync()
    [gone] = site.create("Noop")
    [kept] = site.create("Noop")

    def remove(report: RoundReport) -> None:
        if report.pushed_jobs == 1:  # the first row is in central with its first event
            central.rows("DELETE FROM balsamd.jobs WHERE id = %s", (gone,))

    with site.store() as store:
        report = SyncEngine(store, site.dsn, site.name, site.settings(), batch=1, progress=remove).round()
    assert report.refused == {gone: "the central database no longer holds this job; its events are not pushed"}
    assert report.lag == 0
    pushed = [e[1] for e in central.events("alpha", site.store_id())]
    assert pushed.count(kept) == len(site.path(kept)) and pushed.count(gone) == 1


def test_a_batch_delivered_twice_changes_nothing(campaign: Campaign) -> None:
    site, central = campaign.site, campaign.central
    site.sync()
    campaign.after_crash()
    site.sync()
    tables = ("jobs", "events", "apps", "batch_jobs", "intents")

    def snapshot() -> dict[str, list]:
        return {t: central.rows(f"SELECT * FROM balsamd.{t} ORDER BY 1, 2, 3") for t in tables}

    before = snapshot()
    assert before["jobs"]
    for batch in (5000, 3):
        with site.store() as store:
            store.meta_set({PUSHED_SEQ: "0", PUSHED_EVENT: "0"})
        report = site.sync(batch=batch)
        assert report.reconciled == ""
        assert report.pushed_jobs == len(site.jobs_by_id())
        assert report.pushed_events == len(site.events())
        assert snapshot() == before
    campaign.check()


def test_central_restored_from_a_backup_is_detected_and_reconciled(campaign: Campaign, tmp_path: Path) -> None:
    site, central = campaign.site, campaign.central
    backup = tmp_path / "central.dump"
    server = central.server
    dump = subprocess.run(
        [server.tool("pg_dump"), "-Fc", "-f", str(backup), central.dsn], capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr

    # after the backup: the pending work is synced, more happens, one job is removed
    site.sync()
    campaign.after_crash()
    with site.store() as store:
        removed = store.delete([campaign.local[0]]).removed
    assert removed == [campaign.local[0]]
    with central.remote("alice") as conn:
        late = conn.jobs.create("Square", "late/1", site=site.name, parameters={"x": 5})
    site.sync()
    assert central.rows("SELECT count(*) FROM balsamd.jobs WHERE id = %s", (campaign.local[0],)) == [(0,)]

    # the database goes back to the backup
    server.drop_database(central.dbname)
    server.create_database(central.dbname)
    restore = subprocess.run(
        [server.tool("pg_restore"), "-d", central.dsn, str(backup)], capture_output=True, text=True, timeout=60
    )
    assert restore.returncode == 0, restore.stderr

    report = site.sync()
    assert report.reconciled == "the central database lost changes it had acknowledged (restored from a backup?)"
    # the site applied every intent once; central forgot the one made after the backup, and
    # the job it made came back as the site's (a site never names an owner) until the
    # administrator gives it back
    assert central.rows("SELECT owner FROM balsamd.jobs WHERE id = %s", (late.id,)) == [(site.role,)]
    central.rows("UPDATE balsamd.jobs SET owner = 'alice' WHERE id = %s", (late.id,))
    campaign.local.remove(campaign.local[0])
    campaign.created.append(late.id)
    assert_converged(site, refused=1, lost_intents=1)
    assert len(site.applied_intents()) == Campaign.INTENTS + 1
    assert central.rows("SELECT count(*) FROM balsamd.jobs WHERE id = %s", (removed[0],)) == [(0,)]
    assert site.sync().reconciled == ""


def test_central_rows_lost_and_cursor_lowered_is_reconciled(campaign: Campaign) -> None:
    site, central = campaign.site, campaign.central
    site.sync()
    campaign.after_crash()
    site.sync()
    central.rows("DELETE FROM balsamd.jobs WHERE site = 'alpha' AND id = ANY(%s)", (campaign.local[:3],))
    central.rows("DELETE FROM balsamd.events WHERE site = 'alpha' AND id > 5")
    central.rows("UPDATE balsamd.sites SET pushed_seq = 2, pushed_event = 5 WHERE name = 'alpha'")

    report = site.sync()
    assert report.reconciled == "the central database lost changes it had acknowledged (restored from a backup?)"
    campaign.check()


def test_a_replaced_site_store_is_detected(campaign: Campaign) -> None:
    site, central = campaign.site, campaign.central
    site.sync()
    old_id = site.store_id()
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{site.root / 'balsamd.db'}{suffix}")
        if path.exists():
            shutil.move(path, site.scratch / f"old.db{suffix}")
    site.register_apps()  # a fresh store, its apps recorded again
    fresh = site.create("Noop", 2)
    run_jobs(site, fresh[:1])
    assert site.store_id() != old_id

    report = site.sync()
    assert report.reconciled == "the site store was replaced since the last sync"
    assert (report.pushed_jobs, report.pushed_events) == (2, len(site.events()))
    remote = central.jobs(site.name)
    for job_id, job in site.jobs_by_id().items():
        assert remote[job_id] == job
    assert central.events(site.name, site.store_id()) == site.event_rows()
    assert central.rows("SELECT store_id FROM balsamd.sites WHERE name = 'alpha'") == [(site.store_id(),)]
    assert site.sync().reconciled == ""


def test_an_older_copy_of_the_site_store_is_detected(campaign: Campaign) -> None:
    site = campaign.site
    site.sync()
    store_file = site.root / "balsamd.db"
    with site.store() as store:
        store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(store_file, site.scratch / "backup.db")
    campaign.after_crash()
    site.create("Noop", 3)
    site.sync()
    for suffix in ("-wal", "-shm"):
        Path(f"{store_file}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(site.scratch / "backup.db", store_file)

    report = site.sync()
    assert report.reconciled == "the site store is older than what central received (restored from a backup?)"
    remote = site.central.jobs(site.name)
    for job_id, job in site.jobs_by_id().items():
        assert remote[job_id] == job  # central follows the site's store, even backwards


def test_a_store_file_swapped_under_an_open_store_reports_the_real_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SiteStore(path)
    try:
        first.meta_set({"sync.x": "1"})
        first.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(path, tmp_path / "backup.db")
        first.meta_set({"sync.x": "2"})
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(tmp_path / "backup.db", path)
        second = SiteStore(path)
        try:
            with pytest.raises(apsw.Error) as raised:
                second.meta_get("sync.x")
        finally:
            second.close()
    finally:
        first.close()
    assert "no transaction is active" not in str(raised.value)


def test_a_different_central_database_is_detected(campaign: Campaign, make_site, pg_server) -> None:
    site = campaign.site
    site.sync()
    other = pg_server.create_database(f"{campaign.central.dbname}_other")
    try:
        with psycopg.connect(other) as conn:
            schema.migrate(conn)
            schema.add_site(conn, site.name, site.role)
        site.configure({"sync.central": pg_server.dsn(user=site.role, dbname=f"{campaign.central.dbname}_other")})
        report = site.sync()
        assert report.reconciled == "this site now syncs with a different central database"
        assert report.pushed_jobs == len(site.jobs_by_id())
    finally:
        pg_server.drop_database(f"{campaign.central.dbname}_other")


def test_jobs_a_restored_central_lost_come_back_as_the_sites_until_given_back(central: Central, make_site,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    """A site never names the owner of a row (it could otherwise make jobs in anyone's name), so
    a job central lost comes back owned by the site's role; its administrator gives it back."""
    site = make_site("alpha")
    site.sync()
    central.add_user("alice")
    backup = tmp_path / "central.dump"
    subprocess.run([central.server.tool("pg_dump"), "-Fc", "-f", str(backup), central.dsn], check=True, timeout=60)
    with central.remote("alice") as conn:
        job = conn.jobs.create("Square", "sq/1", site=site.name, parameters={"x": 1})
    site.sync()
    central.server.drop_database(central.dbname)
    central.server.create_database(central.dbname)
    subprocess.run([central.server.tool("pg_restore"), "-d", central.dsn, str(backup)], check=True, timeout=60)
    assert site.sync().reconciled
    assert central.rows("SELECT owner FROM balsamd.jobs WHERE id = %s", (job.id,)) == [(site.role,)]
    with central.remote("alice") as conn, pytest.raises(CentralError, match=f"no job with id {job.id}"):
        conn.jobs.get(job.id)
    central.rows("UPDATE balsamd.jobs SET owner = 'alice' WHERE id = %s", (job.id,))
    with central.remote("alice") as conn:
        assert isinstance(conn.jobs.get(job.id), RemoteJob)


def test_postgres_restarted_under_a_running_daemon_converges(central: Central, make_site, restart_server) -> None:
    """The daemon keeps the site working while the central database is away (status shows the
    sync service failing), and everything reaches central once it is back."""
    site = make_site("alpha")
    site.command_app("Sleepy", "sleep 0.1")
    site.register_apps()
    central.add_user("alice")
    site.start()
    wait_until(lambda: sync_status(site)["detail"].get("listening"), "the sync service listens")
    with central.remote("alice") as conn:
        made = [j.id for j in conn.jobs.bulk_create([{"app": "Sleepy", "workdir": f"s/{n}"} for n in range(6)],
                                                    site="alpha")]  # fmt: skip
    wait_until(lambda: all_in(site, made, "PREPROCESSED"), "the remote jobs reached the site")

    def while_down() -> None:
        status = wait_until(lambda: failing(sync_status(site)), "status shows the sync service failing")
        assert "central database" in status["last_error"]
        local = site.create("Sleepy", 4)
        launcher = site.start_launcher("--job-mode", "serial", "--idle-ttl", "0.5")
        site.finish(launcher)
        assert all_in(site, [*made, *local], "JOB_FINISHED")
        assert failing(sync_status(site))  # still away, still saying so

    restart_server(while_down)
    wait_until(lambda: synced(site), "central caught up after the restart", timeout=60)
    assert_converged(site)
    assert len(central.jobs("alpha")) == 10
    # the listener is back too: a new remote job's NOTIFY wakes a round
    wait_until(lambda: sync_status(site)["detail"].get("listening"), "the sync service listens again")
    woken = sync_status(site)["detail"]["rounds_on_notify"]
    with central.remote("alice") as conn:
        job = conn.jobs.create("Sleepy", "s/after", site="alpha")
    wait_until(lambda: all_in(site, [job.id], "PREPROCESSED"), "a job created after the restart reached the site")
    wait_until(lambda: sync_status(site)["detail"]["rounds_on_notify"] > woken, "a round woken by its NOTIFY")
    assert sync_status(site)["healthy"]


def sync_status(site: SyncSite) -> dict:
    """The sync service as `balsamd status --json` shows it (exit 3 when a service is unhealthy)."""
    status = site.status(code=None)
    [service] = [s for s in status["services"] if s["name"] == "sync"]
    return service


def failing(service: dict) -> dict | None:
    return service if not service["healthy"] and service["last_error"] else None


def all_in(site: SyncSite, job_ids: list[str], state: str) -> bool:
    with site.store() as store:
        found = {j.id: j.state for j in store.filter()}
    return all(found.get(i) == state for i in job_ids)


def synced(site: SyncSite) -> bool:
    local = site.jobs_by_id()
    remote = site.central.jobs(site.name)
    return local == remote and len(site.central.events(site.name, site.store_id())) == len(site.events())


def test_sync_connections_detect_a_silent_server(central: Central, make_site) -> None:
    """TCP keepalives on the sync connections: a vanished server fails a round instead of
    hanging it (and the daemon's stop behind it); a DSN's own choice wins."""
    site = make_site("alpha")
    assert keepalive_options("postgresql://h/db?keepalives_idle=5") == {
        "keepalives": 1, "keepalives_interval": 10, "keepalives_count": 3, "tcp_user_timeout": 60_000,
    }  # fmt: skip
    with site.store() as store, SyncEngine(store, site.dsn, site.name, site.settings()).connect() as conn:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        finally:
            sock.close()
    site.start()
    wait_until(lambda: sync_status(site)["detail"].get("listening"), "the sync service listens")
    names = central.rows("SELECT application_name FROM pg_stat_activity WHERE usename = 'alpha_site'")
    assert ("balsamd site alpha listener",) in names
