"""Transfer items in the central database: pushed by sync after their jobs' rows, following their
state, gone with their jobs, and seen by a central user only for the jobs they own (row-level
security, tried with the roles' own connections)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from balsamd.models import JobChanges
from balsamd.transfers.backend import ItemResult
from balsamd.transfers.records import ITEM_COLUMNS

from .conftest import Central, SiteMaker, SyncSite

STAGED = """
command_template = "true"
transfers = {
    "input": {"direction": "in", "local_path": "in.dat", "required": True},
    "result": {"direction": "out", "local_path": "out.dat", "recursive": True},
}
"""
RSYNC_ERROR = 'rsync: [sender] link_stat "/in/2.dat" failed: No such file or directory (2)'


def staged_site(make_site: SiteMaker, name: str, base: Path) -> SyncSite:
    """A site with a location ``far`` (a directory of this host) and the Staged app, synced once."""
    site = make_site(name)
    settings = site.root / "settings.toml"
    settings.write_text(settings.read_text().replace('# far = "file:///data/far"', f'far = "file://{base}"'))
    site.app("Staged", STAGED)
    site.register_apps()
    site.sync()
    return site


@pytest.fixture
def alpha(make_site: SiteMaker, tmp_path: Path) -> SyncSite:
    return staged_site(make_site, "alpha", tmp_path)


def central_items(central: Central, site: str) -> list[dict[str, Any]]:
    """Central's item rows of ``site``, as the administrator sees them."""
    columns = ", ".join(ITEM_COLUMNS)
    rows = central.rows(f"SELECT {columns} FROM balsamd.transfer_items WHERE site = %s ORDER BY id", (site,))
    return [dict(zip(ITEM_COLUMNS, row, strict=True)) for row in rows]


def site_items(site: SyncSite) -> list[dict[str, Any]]:
    with site.store() as store:
        return [{c: getattr(i, c) for c in ITEM_COLUMNS} for i in store.transfers()]


def assert_items_converged(site: SyncSite) -> None:
    assert central_items(site.central, site.name) == site_items(site)


def create(central: Central, user: str, site: str, path: str) -> str:
    with central.remote(user) as conn:
        return conn.jobs.create("Staged", path.strip("/"), site=site, transfers={"input": f"far:{path}"}).id


def test_items_reach_central_after_their_jobs_and_follow_their_state(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    [own] = alpha.create("Staged", transfers={"input": "far:/in/1.dat", "result": "far:/out/1"})
    mine = create(central, "alice", "alpha", "/in/2.dat")
    report = alpha.sync()  # applies alice's create, then pushes the jobs and the items of both
    assert report.pushed_transfers == 3
    assert_items_converged(alpha)
    assert {(i["job_id"], i["slot"], i["state"]) for i in central_items(central, "alpha")} == {
        (own, "input", "pending"), (own, "result", "pending"), (mine, "input", "pending"),
    }  # fmt: skip

    with alpha.store() as store:
        work = store.transfer_work(10)
        task = store.start_transfer_task("t1", "in", "far", [w.id for w in work])
        results = [ItemResult(item_id=i.id, ok=i.job_id == own, bytes=7, error=RSYNC_ERROR) for i in task.items]
        store.finish_transfer_task("t1", results, 3, 10.0)
    assert alpha.sync().pushed_transfers == 2
    assert_items_converged(alpha)
    done, retrying = (next(i for i in central_items(central, "alpha") if i["job_id"] == j) for j in (own, mine))
    assert (done["state"], done["task_id"], done["bytes"]) == ("done", "t1", 7)
    assert (retrying["state"], retrying["attempts"], retrying["error"]) == ("pending", 1, RSYNC_ERROR)
    assert alpha.sync().pushed_transfers == 0, "nothing changed: nothing is pushed again"


def test_items_of_removed_jobs_leave_central(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    gone, kept = create(central, "alice", "alpha", "/in/1.dat"), create(central, "alice", "alpha", "/in/2.dat")
    alpha.sync()
    with central.remote("alice") as conn:
        conn.jobs.kill([gone])
    alpha.sync()
    with central.remote("alice") as conn:
        conn.jobs.delete([gone])
    assert alpha.sync().deleted_jobs == 1
    assert [i["job_id"] for i in central_items(central, "alpha")] == [kept]
    assert_items_converged(alpha)


def test_items_never_go_ahead_of_their_jobs_rows_in_small_batches(central: Central, alpha: SyncSite) -> None:
    first = alpha.create("Staged", transfers={"input": "far:/in/1.dat"})
    later = alpha.create("Staged", 3, transfers={"input": "far:/in/2.dat"})
    with alpha.store() as store:  # the first job's row changes after the others, its item does not
        store.update_jobs({first[0]: JobChanges(tags={"again": "1"})})
        work = store.transfer_work(10)
        store.start_transfer_task("t", "in", "far", [w.id for w in work if w.job_id == later[0]])
    report = alpha.sync(batch=1)
    assert report.pushed_transfers == 4
    assert_items_converged(alpha)


def test_items_a_restored_central_lost_are_pushed_again(central: Central, alpha: SyncSite) -> None:
    alpha.create("Staged", 2, transfers={"input": "far:/in/1.dat"})
    alpha.sync()
    central.rows("DELETE FROM balsamd.transfer_items WHERE site = 'alpha'")
    central.rows("UPDATE balsamd.sites SET pushed_transfer_seq = 0 WHERE name = 'alpha'")
    report = alpha.sync()
    assert report.reconciled == "the central database lost changes it had acknowledged (restored from a backup?)"
    assert_items_converged(alpha)


def visible_jobs(central: Central, role: str) -> set[str]:
    with central.connect(role) as conn:
        return {job_id for (job_id,) in conn.execute("SELECT job_id FROM balsamd.transfer_items")}


def test_a_user_sees_the_items_of_their_own_jobs_only_and_writes_none(
    central: Central, make_site: SiteMaker, tmp_path: Path
) -> None:
    alpha, beta = staged_site(make_site, "alpha", tmp_path), staged_site(make_site, "beta", tmp_path)
    central.add_user("alice")
    central.add_user("bob")
    owned: dict[str, set[str]] = {"alice": set(), "bob": set()}
    for site in (alpha, beta):
        site.create("Staged", transfers={"input": "far:/in/site.dat"})
        for user in owned:
            owned[user].add(create(central, user, site.name, f"/in/{user}.dat"))
        site.sync()
    assert len(central.rows("SELECT 1 FROM balsamd.transfer_items")) == 6

    assert visible_jobs(central, "alice") == owned["alice"]
    assert visible_jobs(central, "bob") == owned["bob"]
    with central.connect("alice") as conn:
        for sql in (
            "UPDATE balsamd.transfer_items SET state = 'done'",
            "DELETE FROM balsamd.transfer_items",
            "INSERT INTO balsamd.transfer_items (site, id, job_id, slot, direction, location, path, local_path, "
            "recursive, state, attempts, not_before, bytes, error, updated_at, seq) "
            "VALUES ('alpha', 99, 'x', 's', 'in', 'far', '/p', 'p', false, 'done', 0, 0, 0, '', 0, 0)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(sql)
    assert len(central.rows("SELECT 1 FROM balsamd.transfer_items WHERE state = 'pending'")) == 6


def test_a_site_writes_only_items_of_its_own_jobs(central: Central, make_site: SiteMaker, tmp_path: Path) -> None:
    alpha, beta = staged_site(make_site, "alpha", tmp_path), staged_site(make_site, "beta", tmp_path)
    [theirs] = beta.create("Staged", transfers={"input": "far:/in/1.dat"})
    [ours] = alpha.create("Staged", transfers={"input": "far:/in/1.dat"})
    beta.sync()
    alpha.sync()
    row = (
        "INSERT INTO balsamd.transfer_items (site, id, job_id, slot, direction, location, path, local_path, "
        "recursive, state, attempts, not_before, bytes, error, updated_at, seq) "
        "VALUES (%s, 99, %s, 's', 'in', 'far', '/p', 'p', false, 'done', 0, 0, 0, '', 0, 0)"
    )
    with central.connect("alpha_site") as conn:
        assert {r[0] for r in conn.execute("SELECT job_id FROM balsamd.transfer_items")} == {ours}
        assert conn.execute("UPDATE balsamd.transfer_items SET state = 'failed' WHERE site = 'beta'").rowcount == 0
        for site, job in (("beta", theirs), ("alpha", theirs), ("alpha", "no-such-job")):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                conn.execute(row, (site, job))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute("DELETE FROM balsamd.transfer_items")
    assert central.rows("SELECT state FROM balsamd.transfer_items WHERE job_id = %s", (theirs,)) == [("pending",)]
