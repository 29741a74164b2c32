"""How the transfer service batches pending items into tasks."""

from __future__ import annotations

from balsamd.transfers.plan import plan_tasks
from balsamd.transfers.records import TransferItem


def item(n: int, direction: str = "in", location: str = "far", path: str = "") -> TransferItem:
    return TransferItem(id=n, job_id=f"J{n}", slot="s", direction=direction, location=location,
                        path=path or f"/f/{n}", local_path="f")  # fmt: skip


def ids(tasks: list[list[TransferItem]]) -> list[list[int]]:
    return [[i.id for i in task] for task in tasks]


def test_items_going_the_same_way_to_the_same_location_share_a_task() -> None:
    items = [item(1), item(2, "out"), item(3), item(4, location="tape"), item(5, "out")]
    assert ids(plan_tasks(items, batch_size=100, free=5)) == [[1, 3], [2, 5], [4]]


def test_a_task_holds_at_most_a_batch_and_only_free_slots_are_filled() -> None:
    items = [item(n) for n in range(1, 8)]
    assert ids(plan_tasks(items, batch_size=3, free=5)) == [[1, 2, 3], [4, 5, 6], [7]]
    assert ids(plan_tasks(items, batch_size=3, free=2)) == [[1, 2, 3], [4, 5, 6]]


def test_the_oldest_items_are_moved_first() -> None:
    items = [item(9, location="tape"), item(1), item(2)]
    assert ids(plan_tasks(items, batch_size=100, free=1)) == [[1, 2]]


def test_two_items_sending_to_the_same_path_never_share_a_task() -> None:
    items = [item(1, "out", path="/r/x"), item(2, "out", path="/r//x"), item(3, "out", path="/r/y")]
    assert ids(plan_tasks(items, batch_size=100, free=5)) == [[1, 3]]


def test_items_bringing_in_the_same_file_share_a_task() -> None:
    items = [item(1, path="/in/common"), item(2, path="/in/common")]
    assert ids(plan_tasks(items, batch_size=100, free=5)) == [[1, 2]]


def test_nothing_pending_plans_nothing() -> None:
    assert plan_tasks([], batch_size=10, free=3) == []
