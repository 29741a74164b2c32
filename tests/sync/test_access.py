"""Row-level security of the central database, tried with the roles' own connections.

Sites see and change only their own rows; users see only the jobs they own (and those jobs'
events and their own intents) and may ask only about their own jobs.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from balsamd.ids import new_id
from balsamd.models import BatchJob
from balsamd.sync.engine import SyncEngine
from balsamd.sync.schema import CentralError

from .conftest import Central, SiteMaker, SyncSite, central_database


@pytest.fixture(scope="module")
def shared(pg_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Central, SyncSite, SyncSite]]:
    """Sites alpha and beta, each with a local job, a job of alice and of bob, a batch job and
    a pending intent, all synced; shared by this module's tests, which change none of it."""
    with central_database(pg_server) as central:
        maker = SiteMaker(tmp_path_factory.mktemp("access"), central)
        try:
            central.add_user("alice")
            central.add_user("bob")
            sites = maker("alpha"), maker("beta")
            for site in sites:
                site.sync()
                site.create("Noop")
                with site.store() as store:
                    store.create_batch_job(BatchJob(id=new_id(), num_nodes=1, wall_time_min=10))
                for user in ("alice", "bob"):
                    with central.remote(user) as conn:
                        conn.jobs.create("Noop", f"{user}/1", site=site.name)
                site.sync()
                with central.remote("alice") as conn:
                    conn.jobs.create("Noop", "alice/pending", site=site.name)
            yield central, *sites
        finally:
            maker.close()


@pytest.fixture
def central(shared) -> Central:
    return shared[0]


@pytest.fixture
def world(shared) -> tuple[SyncSite, SyncSite]:
    return shared[1], shared[2]


def visible(central: Central, role: str, table: str, column: str = "site") -> set:
    with central.connect(role) as conn:
        return {r[0] for r in conn.execute(f"SELECT {column} FROM balsamd.{table}")}


def test_a_site_sees_its_own_rows_and_only_those(central: Central, world) -> None:
    for table in ("jobs", "events", "intents", "apps", "batch_jobs"):
        assert visible(central, "alpha_site", table) == {"alpha"}, table
        assert visible(central, "beta_site", table) == {"beta"}, table
    assert visible(central, "alpha_site", "sites", "name") == {"alpha"}
    with central.connect("alpha_site") as conn:
        assert conn.execute("SELECT count(*) FROM balsamd.jobs").fetchone()[0] == 4  # own, alice's x2, bob's


def test_a_site_cannot_change_another_sites_rows(central: Central, world) -> None:
    before = central.rows("SELECT site, id, state, version FROM balsamd.jobs ORDER BY id")
    with central.connect("alpha_site") as conn:
        for sql in (
            "UPDATE balsamd.jobs SET state = 'KILLED' WHERE site = 'beta'",
            "UPDATE balsamd.intents SET applied_at = 1, outcome = '{}' WHERE site = 'beta'",
            "UPDATE balsamd.apps SET spec = '{}' WHERE site = 'beta'",
            "DELETE FROM balsamd.apps WHERE site = 'beta'",
            "DELETE FROM balsamd.jobs WHERE site = 'beta'",
            "DELETE FROM balsamd.events WHERE site = 'beta'",
            "UPDATE balsamd.batch_jobs SET state = 'x' WHERE site = 'beta'",
            "DELETE FROM balsamd.batch_jobs WHERE site = 'beta'",
            "UPDATE balsamd.sites SET pushed_seq = 0 WHERE name = 'beta'",
        ):
            assert conn.execute(sql).rowcount == 0, sql
        row = (
            "INSERT INTO balsamd.jobs (id, site, app, workdir, state, created_at, updated_at) "
            "VALUES ('X1', 'beta', 'Noop', 'w', 'CREATED', 0, 0)"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(row)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO balsamd.events (site, store_id, id, job_id, to_state, ts) "
                "VALUES ('beta', 's', 1, 'X1', 'READY', 0)"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(
                "INSERT INTO balsamd.intents (id, site, kind, job_id, created_at) VALUES ('i', 'alpha', 'kill', 'x', 0)"
            )
        # events are appended, never changed, by anyone
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute("UPDATE balsamd.events SET reason = 'x' WHERE site = 'beta'")
        # moving its own job to the other site is refused as well: a site never writes a job's site
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table jobs"):
            conn.execute("UPDATE balsamd.jobs SET site = 'beta' WHERE site = 'alpha'")
    assert central.rows("SELECT site, id, state, version FROM balsamd.jobs ORDER BY id") == before
    assert central.rows("SELECT count(*) FROM balsamd.intents WHERE site = 'beta' AND applied_at IS NULL") == [(1,)]


def test_a_user_sees_and_acts_on_their_own_jobs_only(central: Central, world) -> None:
    owners = dict(central.rows("SELECT id, owner FROM balsamd.jobs"))
    with central.remote("alice") as alice:
        mine = alice.jobs.filter()
        assert {owners[j.id] for j in mine} == {"alice"}
        assert {j.site for j in mine} == {"alpha", "beta"}
        assert len(mine) == 4  # one synced and one pending at each site
        events = alice.execute("SELECT DISTINCT job_id FROM balsamd.events")
        assert {r[0] for r in events} <= {j.id for j in mine} and events
        assert {r[0] for r in alice.execute("SELECT owner FROM balsamd.intents")} == {"alice"}

        bobs = next(i for i, o in owners.items() if o == "bob")
        with pytest.raises(CentralError, match=f"no job with id {bobs} that you may see"):
            alice.jobs.get(bobs)
        with pytest.raises(CentralError):
            alice.jobs.kill([bobs])
        # writing the intent directly is refused by the row-level security check
        for kind in ("kill", "retry", "update"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                alice.execute(
                    "INSERT INTO balsamd.intents (id, site, kind, job_id, created_at) VALUES (%s, 'alpha', %s, %s, 0)",
                    (f"evil-{kind}", kind, bobs),
                )
        # nor can she pose as bob, or change rows behind the sites' backs
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            alice.execute(
                "INSERT INTO balsamd.intents (id, site, kind, job_id, owner, created_at) "
                "VALUES ('evil-owner', 'alpha', 'create', 'x', 'bob', 0)"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            alice.execute("UPDATE balsamd.jobs SET state = 'JOB_FINISHED'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            alice.execute("UPDATE balsamd.intents SET applied_at = 0")
        # nor say, about a job of her own, that a site did it: such an intent would never be
        # applied, and a number of her choosing would hide a site's acknowledgements from it
        mine_here = next(j.id for j in mine if j.site == "alpha")
        for column, value in (("applied_at", 0), ("ack_seq", 10**12)):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                alice.execute(
                    f"INSERT INTO balsamd.intents (id, site, kind, job_id, created_at, {column}) "
                    "VALUES ('evil-acked', 'alpha', 'kill', %s, 0, %s)",
                    (mine_here, value),
                )
    # bob's jobs are untouched, and nothing of alice's reached his intents
    with central.remote("bob") as bob:
        assert {str(j.state) for j in bob.jobs.filter()} == {"PREPROCESSED"}
        assert len(bob.jobs.filter()) == 2
        assert bob.execute("SELECT count(*) FROM balsamd.intents WHERE id LIKE 'evil-%%'") == [(0,)]
    assert central.rows("SELECT count(*) FROM balsamd.intents WHERE id LIKE 'evil-%%'") == [(0,)]


def test_roles_that_were_never_registered_are_told_what_to_ask_for(central: Central, world) -> None:
    central.rows("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mallory') "
                 "THEN CREATE ROLE mallory LOGIN; END IF; END $$")  # fmt: skip
    with pytest.raises(CentralError, match="balsamd central add-user DSN mallory"):
        central.remote("mallory")
    with central.connect("mallory") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM balsamd.jobs")
    alpha, _beta = world
    with alpha.store() as store:
        engine = SyncEngine(store, central.dsn_for("mallory"), "alpha", alpha.settings())
        with pytest.raises(CentralError, match="balsamd central add-site DSN alpha --role ROLE"):
            engine.round()


def test_a_site_role_cannot_sync_as_another_site(central: Central, world) -> None:
    """A site configured with another site's role fails loudly instead of pushing anything."""
    alpha, _beta = world
    with alpha.store() as store:
        engine = SyncEngine(store, central.dsn_for("beta_site"), "alpha", alpha.settings())
        with pytest.raises(CentralError, match="site alpha is not registered in the central database"):
            engine.round()
