"""Typed reads of SQLite results: apsw gives rows of any SQL value, which callers know better."""

from __future__ import annotations

from typing import Any

import apsw


def one(conn: apsw.Connection, sql: str, params: apsw.Bindings | None = None) -> tuple[Any, ...]:
    """The one row ``sql`` always returns (aggregates, counters, RETURNING of a written row)."""
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise RuntimeError(f"expected a row from: {sql}")
    return tuple(row)


def value(conn: apsw.Connection, sql: str, params: apsw.Bindings | None = None) -> Any:
    """The first column of ``one``."""
    return one(conn, sql, params)[0]


def all_rows(conn: apsw.Connection, sql: str, params: apsw.Bindings | None = None) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql, params)]
