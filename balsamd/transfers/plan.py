"""Which pending items go together: the transfer service's one decision, a pure function."""

from __future__ import annotations

import posixpath
from collections import defaultdict

from balsamd.transfers.records import TransferItem


def plan_tasks(items: list[TransferItem], batch_size: int, free: int) -> list[list[TransferItem]]:
    """Up to ``free`` tasks of at most ``batch_size`` items each, oldest first.

    A task holds items going the same way between the site and the same location, so that a
    backend moves them in one go (one rsync, one Globus task).  Two items sending files to the
    same path would race in one task: the later one waits for a later task.
    """
    groups: dict[tuple[str, str], list[TransferItem]] = defaultdict(list)
    for item in items:
        groups[item.direction, item.location].append(item)
    tasks: list[list[TransferItem]] = []
    for (direction, _), group in groups.items():
        current: list[TransferItem] = []
        targets: set[str] = set()
        for item in group:
            target = posixpath.normpath(item.path)
            if direction == "out" and target in targets:
                continue
            current.append(item)
            targets.add(target)
            if len(current) == batch_size:
                tasks.append(current)
                current, targets = [], set()
        if current:
            tasks.append(current)
    tasks.sort(key=lambda task: task[0].id)
    return tasks[:free]
