"""The store file: versioned schema, WAL, and refusal of a schema it does not know."""

from __future__ import annotations

import multiprocessing

import apsw
import pytest

from balsamd.models import BATCH_COLUMNS, JOB_COLUMNS, Session
from balsamd.store.schema import SCHEMA_VERSION, StoreTooNew
from balsamd.store.store import SiteStore
from tests.conftest import make_jobs


def user_version(path) -> int:
    conn = apsw.Connection(str(path))
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def schema_sql(path) -> list[tuple[str, str]]:
    conn = apsw.Connection(str(path))
    try:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def test_a_new_store_is_migrated_to_the_current_schema_version(tmp_path):
    SiteStore(tmp_path / "s.db").close()
    assert SCHEMA_VERSION >= 1
    assert user_version(tmp_path / "s.db") == SCHEMA_VERSION


def test_reopening_a_current_store_changes_nothing(tmp_path, site_store):
    path = site_store.db.path
    [job] = make_jobs(site_store, 1)
    site_store.close()
    before = schema_sql(path)
    reopened = SiteStore(path)
    try:
        assert user_version(path) == SCHEMA_VERSION
        assert schema_sql(path) == before
        assert reopened.get(job.id).state == job.state
    finally:
        reopened.close()


def test_the_store_runs_in_wal_mode(site_store):
    assert site_store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_with_a_newer_schema_is_refused_with_advice_to_upgrade(tmp_path):
    path = tmp_path / "s.db"
    SiteStore(path).close()
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreTooNew, match="upgrade balsamd"):
        SiteStore(path)
    assert user_version(path) == SCHEMA_VERSION + 1


def _open_and_close(path: str) -> None:
    SiteStore(path).close()


def test_processes_opening_a_new_store_at_once_migrate_it_once(tmp_path):
    path = str(tmp_path / "s.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_open_and_close, args=(path,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert user_version(path) == SCHEMA_VERSION


def test_the_jobs_table_has_a_column_for_each_field_of_a_job(site_store):
    columns = [row[1] for row in site_store.db.conn.execute("PRAGMA table_info(jobs)")]
    assert sorted(columns) == sorted([*JOB_COLUMNS, "seq"])


def test_the_batch_jobs_table_has_a_column_for_each_field_of_a_batch_job(site_store):
    columns = [row[1] for row in site_store.db.conn.execute("PRAGMA table_info(batch_jobs)")]
    assert sorted(columns) == sorted([*BATCH_COLUMNS, "seq"])


def test_the_sessions_table_has_a_column_for_each_field_of_a_session_and_its_last_claim(site_store):
    columns = [row[1] for row in site_store.db.conn.execute("PRAGMA table_info(sessions)")]
    assert sorted(columns) == sorted([*Session.__struct_fields__, "last_claim"])
