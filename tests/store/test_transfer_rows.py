"""What sync reads of transfer items, over every transport: the rows stamped after its cursor and
up to a bound, whole transactions at a time, each with its seq; items go with their jobs."""

from __future__ import annotations

from typing import Any

import pytest

from balsamd.store.contract import Store
from balsamd.transfers.records import ITEM_COLUMNS
from balsamd.validate import Refused
from tests.store.test_transfer_tasks import STAGED, make


@pytest.fixture
def staged(store: Store) -> Store:
    store.put_apps([STAGED])
    return store


def items(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(zip((*ITEM_COLUMNS, "seq"), row, strict=True)) for row in rows]


def test_an_items_row_has_the_columns_central_keeps_and_its_seq(staged: Store) -> None:
    [job] = make(staged, input="far:/in/1.dat")
    top = staged.max_seq()
    rows, complete = staged.transfer_rows_changed(0, top, 100)
    assert complete == top
    [item] = items(rows)
    assert {k: item[k] for k in ("job_id", "slot", "direction", "location", "path", "local_path", "state")} == {
        "job_id": job, "slot": "input", "direction": "in", "location": "far", "path": "/in/1.dat",
        "local_path": "in.dat", "state": "pending",
    }  # fmt: skip
    assert (item["task_id"], item["attempts"], item["error"], item["seq"]) == (None, 0, "", top)
    assert "workdir" not in item and "owner" not in item, "those are the job's, pushed with its row"


def test_a_change_stamps_an_item_again_and_the_window_bounds_what_comes(staged: Store) -> None:
    make(staged, 2)
    created = staged.max_seq()
    first, second = (w.id for w in staged.transfer_work(10))
    staged.start_transfer_task("t", "in", "far", [first])
    started = staged.max_seq()

    rows, complete = staged.transfer_rows_changed(created, started, 100)
    assert [(i["id"], i["state"], i["task_id"], i["seq"]) for i in items(rows)] == [(first, "active", "t", started)]
    assert complete == started
    # a row is read as it is now: the first item is past the bound, the second is not
    rows, complete = staged.transfer_rows_changed(0, created, 100)
    assert [(i["id"], i["seq"]) for i in items(rows)] == [(second, created)]
    assert complete == created
    assert staged.transfer_rows_changed(started, started, 100) == ([], started)


def test_rows_come_in_whole_transactions(staged: Store) -> None:
    make(staged, 3)
    a = staged.max_seq()
    make(staged, 1)
    b = staged.max_seq()
    make(staged, 2)
    top = staged.max_seq()

    rows, complete = staged.transfer_rows_changed(0, top, 4)
    assert [i["seq"] for i in items(rows)] == [a, a, a, b] and complete == b
    rows, complete = staged.transfer_rows_changed(b, top, 4)
    assert [i["seq"] for i in items(rows)] == [top, top] and complete == top
    # one transaction larger than the limit comes whole, never cut
    rows, complete = staged.transfer_rows_changed(0, top, 2)
    assert [i["seq"] for i in items(rows)] == [a, a, a] and complete == a


def test_items_of_a_removed_job_are_gone_with_it(staged: Store) -> None:
    kept, removed = make(staged, 2)
    staged.kill([removed])
    staged.delete([removed])
    rows, _ = staged.transfer_rows_changed(0, staged.max_seq(), 100)
    assert [i["job_id"] for i in items(rows)] == [kept]


def test_a_limit_below_one_is_refused(staged: Store) -> None:
    with pytest.raises(Refused, match="limit must be 1 or more"):
        staged.transfer_rows_changed(0, staged.max_seq(), 0)
