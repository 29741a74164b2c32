"""The store's connection: released for a fork and opened again, with nothing lost."""

from __future__ import annotations

import apsw
import pytest

from balsamd.models import ClaimLimits
from tests.conftest import make_jobs


def open_files() -> list[str]:
    return [c.filename for c in apsw.connections() if c.filename]


def test_while_released_this_process_holds_the_store_closed_and_after_it_works_on(store) -> None:
    jobs = make_jobs(store, 3)
    path = str(store.db.path)
    assert path in open_files()
    with store.db.released():
        assert path not in open_files()
    session = store.open_session("after")
    assert [j.id for j in store.claim(session.id, ClaimLimits())] == [j.id for j in jobs]


def test_the_connection_cannot_be_released_inside_a_transaction(store) -> None:
    with store.db.write(), pytest.raises(RuntimeError, match="inside a transaction"), store.db.released():
        pass
    make_jobs(store, 1)  # the store was left as it was
