"""``balsamd central init | add-site | add-user`` against a real PostgreSQL, as users type them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner

from balsamd.cli import cli
from balsamd.models import BATCH_COLUMNS, JOB_COLUMNS
from balsamd.sync.schema import MIGRATIONS, CentralError
from balsamd.transfers.records import ITEM_COLUMNS

from .conftest import Central, SyncSite

TABLES = ["apps", "batch_jobs", "events", "intents", "jobs", "meta", "sites", "transfer_items"]
_names = itertools.count()


def invoke(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args), prog_name="balsamd", catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


@pytest.fixture
def empty_db(pg_server) -> Iterator[str]:
    """A database without the balsamd schema; yields its DSN."""
    name = f"empty_{os.getpid()}_{next(_names)}"
    dsn = pg_server.create_database(name)
    yield dsn
    pg_server.drop_database(name)


def query(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def test_central_init_creates_the_schema_and_a_rerun_is_up_to_date(empty_db: str) -> None:
    result = invoke("central", "init", empty_db)
    assert result.stdout == f"central schema created or upgraded: version 0 -> {len(MIGRATIONS)}\n"
    tables = query(
        empty_db,
        "SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'balsamd' AND c.relkind = 'r' ORDER BY 1",
    )
    assert [t for t, _ in tables] == TABLES
    assert all(rls for t, rls in tables if t != "meta"), "every shared table has row-level security"
    roles = query(empty_db, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'balsamd_%%' ORDER BY 1")
    assert roles == [("balsamd_site",), ("balsamd_user",)]
    meta = dict(query(empty_db, "SELECT key, value FROM balsamd.meta"))
    assert meta["schema_version"] == str(len(MIGRATIONS))

    again = invoke("central", "init", empty_db)
    assert again.stdout == f"central schema is up to date (version {len(MIGRATIONS)}); access rules re-applied\n"
    assert dict(query(empty_db, "SELECT key, value FROM balsamd.meta")) == meta  # same identity


def test_a_newer_schema_is_refused_and_left_alone(central: Central, make_site) -> None:
    site: SyncSite = make_site("newer")
    site.sync()
    central.rows("UPDATE balsamd.meta SET value = '99' WHERE key = 'schema_version'")

    result = invoke("central", "init", central.dsn, code=1)
    assert result.stderr == (
        f"Error: central init failed: the central schema is at version 99, newer than this balsamd "
        f"(version {len(MIGRATIONS)}); nothing was changed: upgrade balsamd and run `balsamd central init` again\n"
    )
    assert central.rows("SELECT value FROM balsamd.meta WHERE key = 'schema_version'") == [("99",)]

    # a site and a user with this balsamd refuse it too, rather than write to what they do not know
    proc = site.sync_cli(code=1)
    assert "the central schema is at version 99, newer than this balsamd understands" in proc.stderr
    central.add_user("newer_user")
    with pytest.raises(CentralError, match="newer than this balsamd understands"):
        central.remote("newer_user")


def test_sync_says_what_to_run_when_central_is_not_ready(empty_db: str, central: Central, make_site) -> None:
    site: SyncSite = make_site("ready")
    site.configure({"sync.central": empty_db})
    proc = site.sync_cli(code=1)
    assert "the central database has no balsamd schema; run `balsamd central init DSN`" in proc.stderr

    central.rows("DELETE FROM balsamd.sites WHERE name = 'ready'")
    site.configure({"sync.central": site.dsn})
    proc = site.sync_cli(code=1)
    assert "site ready is not registered in the central database" in proc.stderr
    assert "balsamd central add-site DSN ready --role ROLE" in proc.stderr


def test_add_site_and_add_user_create_login_roles(central: Central) -> None:
    result = invoke("central", "add-site", central.dsn, "gamma", "--role", "gamma_role")
    assert result.stdout == "site gamma registered; it connects as role gamma_role\n"
    result = invoke("central", "add-user", central.dsn, "carol")
    assert result.stdout == "user role carol may now submit jobs through the central database\n"
    # running them again changes nothing and does not fail
    invoke("central", "add-site", central.dsn, "gamma", "--role", "gamma_role")
    invoke("central", "add-user", central.dsn, "carol")

    membership = central.rows(
        "SELECT r.rolname, r.rolcanlogin, g.rolname FROM pg_roles r "
        "JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE r.rolname IN ('gamma_role', 'carol') ORDER BY 1"
    )
    assert membership == [("carol", True, "balsamd_user"), ("gamma_role", True, "balsamd_site")]
    assert central.rows("SELECT name, role FROM balsamd.sites") == [("gamma", "gamma_role")]
    # the roles can log in and see what they should
    with central.connect("gamma_role") as conn:
        assert conn.execute("SELECT name FROM balsamd.sites").fetchall() == [("gamma",)]
    with central.connect("carol") as conn:
        assert conn.execute("SELECT count(*) FROM balsamd.jobs").fetchone() == (0,)


def central_columns(central: Central, table: str) -> list[str]:
    query = "SELECT column_name FROM information_schema.columns WHERE table_schema = 'balsamd' AND table_name = %s"
    return sorted(c for (c,) in central.rows(query, (table,)))


def test_centrals_jobs_table_has_a_column_for_each_field_of_a_job(central: Central) -> None:
    assert central_columns(central, "jobs") == sorted([*JOB_COLUMNS, "site"])


def test_centrals_batch_jobs_table_has_a_column_for_each_field_of_a_batch_job(central: Central) -> None:
    assert central_columns(central, "batch_jobs") == sorted([*BATCH_COLUMNS, "site"])


def test_centrals_transfer_items_table_has_a_column_for_each_column_of_an_item(central: Central) -> None:
    assert central_columns(central, "transfer_items") == sorted([*ITEM_COLUMNS, "seq", "site"])


def privileges(dsn: str, role: str, table: str, column: str) -> set[str]:
    return {
        kind
        for kind in ("SELECT", "INSERT", "UPDATE")
        if query(dsn, "SELECT has_column_privilege(%s, %s, %s, %s)", (role, f"balsamd.{table}", column, kind))[0][0]
    }


def test_central_init_upgrades_an_older_schema_and_takes_back_what_sites_may_no_longer_write(empty_db: str) -> None:
    invoke("central", "init", empty_db)
    # as an older balsamd left it: version 2, sites allowed to write every column of their rows,
    # and an event a site attached to a job of another site
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("UPDATE balsamd.meta SET value = '2' WHERE key = 'schema_version'")
        conn.execute(
            "GRANT INSERT, UPDATE ON balsamd.jobs, balsamd.events, balsamd.intents, balsamd.sites TO balsamd_site"
        )
        conn.execute("INSERT INTO balsamd.sites (name) VALUES ('alpha'), ('beta')")
        conn.execute(
            "INSERT INTO balsamd.jobs (id, site, app, workdir, state, created_at, updated_at) "
            "VALUES ('J1', 'alpha', 'A', 'w', 'CREATED', 0, 0)"
        )
        conn.execute(
            "INSERT INTO balsamd.events (site, store_id, id, job_id, to_state, ts) "
            "VALUES ('alpha', 's', 1, 'J1', 'READY', 0), ('beta', 's', 1, 'J1', 'KILLED', 0)"
        )
    assert privileges(empty_db, "balsamd_site", "jobs", "owner") == {"SELECT", "INSERT", "UPDATE"}

    result = invoke("central", "init", empty_db)
    assert result.stdout == f"central schema created or upgraded: version 2 -> {len(MIGRATIONS)}\n"
    assert privileges(empty_db, "balsamd_site", "jobs", "owner") == {"SELECT"}
    assert privileges(empty_db, "balsamd_site", "jobs", "site") == {"SELECT", "INSERT"}
    assert privileges(empty_db, "balsamd_site", "jobs", "state") == {"SELECT", "INSERT", "UPDATE"}
    assert privileges(empty_db, "balsamd_site", "events", "reason") == {"SELECT", "INSERT"}
    assert privileges(empty_db, "balsamd_site", "intents", "owner") == {"SELECT"}
    assert privileges(empty_db, "balsamd_site", "intents", "outcome") == {"SELECT", "UPDATE"}
    assert privileges(empty_db, "balsamd_site", "intents", "ack_seq") == {"SELECT", "UPDATE"}
    assert privileges(empty_db, "balsamd_site", "sites", "role") == {"SELECT"}
    assert privileges(empty_db, "balsamd_site", "sites", "acked_seq") == {"SELECT", "UPDATE"}
    assert privileges(empty_db, "balsamd_user", "jobs", "owner") == {"SELECT", "INSERT"}
    # a site writes its items and their cursor, never an item's key once written; a user only reads
    assert privileges(empty_db, "balsamd_site", "transfer_items", "state") == {"SELECT", "INSERT", "UPDATE"}
    assert privileges(empty_db, "balsamd_site", "transfer_items", "site") == {"SELECT", "INSERT"}
    assert privileges(empty_db, "balsamd_site", "sites", "pushed_transfer_seq") == {"SELECT", "UPDATE"}
    assert privileges(empty_db, "balsamd_user", "transfer_items", "state") == {"SELECT"}
    # a user asks; only the site says it was done, and under which number
    assert privileges(empty_db, "balsamd_user", "intents", "payload") == {"SELECT", "INSERT"}
    for column in ("applied_at", "outcome", "ack_seq"):
        assert privileges(empty_db, "balsamd_user", "intents", column) == {"SELECT"}
    assert query(empty_db, "SELECT site, job_id FROM balsamd.events") == [("alpha", "J1")]


def test_central_init_numbers_the_acknowledgements_made_before_it(empty_db: str) -> None:
    """A central of version 3 (acknowledgements without numbers): each site's are numbered in
    the order they were made, and its count recorded, so its store checks them all once."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA balsamd")
        for step in MIGRATIONS[:3]:
            conn.execute(step)
        conn.execute("INSERT INTO balsamd.meta VALUES ('schema_version', '3')")
        conn.execute("INSERT INTO balsamd.sites (name) VALUES ('alpha'), ('beta'), ('gamma')")
        conn.execute(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, created_at, applied_at, outcome) VALUES "
            "('i1', 'alpha', 'kill', 'j', 0, 30, '{}'), ('i2', 'alpha', 'kill', 'j', 0, 10, '{}'), "
            "('i3', 'alpha', 'kill', 'j', 0, NULL, NULL), ('i4', 'beta', 'kill', 'j', 0, 20, '{}')"
        )
    invoke("central", "init", empty_db)
    assert query(empty_db, "SELECT id, ack_seq FROM balsamd.intents ORDER BY id") == [
        ("i1", 2), ("i2", 1), ("i3", None), ("i4", 1),
    ]  # fmt: skip
    assert query(empty_db, "SELECT name, acked_seq FROM balsamd.sites ORDER BY name") == [
        ("alpha", 2), ("beta", 1), ("gamma", 0),
    ]  # fmt: skip
