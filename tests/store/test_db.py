"""The site_store's connection: released for a fork and opened again, with nothing lost."""

from __future__ import annotations

import apsw
import pytest

from balsamd.models import ClaimLimits
from balsamd.store.db import VALUES_CHUNK, values_chunks
from tests.conftest import make_jobs
from tests.store import claim


def open_files() -> list[str]:
    return [c.filename for c in apsw.connections() if c.filename]


def test_while_released_this_process_holds_the_store_closed_and_after_it_works_on(site_store) -> None:
    jobs = make_jobs(site_store, 3)
    path = str(site_store.db.path)
    assert path in open_files()
    with site_store.db.released():
        assert path not in open_files()
    session = site_store.open_session("after")
    assert [j.id for j in claim(site_store, session.id, ClaimLimits())] == [j.id for j in jobs]


def test_the_connection_cannot_be_released_inside_a_transaction(site_store) -> None:
    with site_store.db.write(), pytest.raises(RuntimeError, match="inside a transaction"), site_store.db.released():
        pass
    make_jobs(site_store, 1)  # the site_store was left as it was


@pytest.mark.parametrize("count", [0, 1, 5, 256, 300, 1000])
def test_values_chunks_cover_every_row_once_in_order_with_few_distinct_statements(count: int) -> None:
    flat = [v for i in range(count) for v in (i, f"r{i}")]
    chunks = list(values_chunks(flat, 2))
    assert [v for _, params in chunks for v in params] == flat
    for clause, params in chunks:
        assert clause.count("(?, ?)") * 2 == len(params)
    sizes = [len(params) // 2 for _, params in chunks]
    assert all(s == VALUES_CHUNK or s & (s - 1) == 0 for s in sizes)  # a batch size or a power of two


def test_values_chunks_bind_as_rows_of_a_multi_row_insert() -> None:
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    rows = [(i, f"r{i}") for i in range(300)]
    for clause, params in values_chunks([v for r in rows for v in r], 2):
        conn.execute(f"INSERT INTO t (a, b) VALUES {clause}", params)
    assert conn.execute("SELECT a, b FROM t ORDER BY a").fetchall() == rows
