"""The file:// backend: items move between a location's base directory on this host and the jobs'
working directories, by copy or by hard link (``[transfers] file_method``).

Each item is built under a temporary name beside its destination and renamed into place, so a
half-copied file is never seen under its name.  Confinement (``confine``): the location's side
must really lead inside the location's base directory, the job's side inside its working
directory; a symbolic link out of either is refused, for the path and the directories above it.
A directory item (its slot ``recursive``) is refused whole if it holds a symbolic link or a
special file: a link inside it could lead out, and refusing says so where skipping would not.
Files are moved one item after another; ``cancel`` is seen between items, and the items in
place are handed on as the task goes (``Early``).  The base directory itself is never made:
where it is missing, its filesystem may not be mounted.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from typing import Literal

from balsamd.transfers import confine
from balsamd.transfers.backend import Arrived, Early, Item, ItemResult, Task, TransferError
from balsamd.transfers.confine import Refused
from balsamd.transfers.place import Copy, describe, install

LOCATION = "the location's base directory"
WORKDIR = "the job's working directory"


class LocalBackend:
    """Moves a task's items on this host: ``method`` "copy" (shutil.copy2: contents, mode and
    times) or "hardlink" (the destination shares the source's inode; one filesystem only)."""

    def __init__(self, method: Literal["copy", "hardlink"] = "copy") -> None:
        self._copy: Copy = _hardlink if method == "hardlink" else shutil.copy2

    def run(
        self, task: Task, record: Callable[[str], None], cancel: threading.Event, arrived: Arrived | None = None
    ) -> list[ItemResult]:
        base = os.path.realpath(task.location.base)
        if not os.path.isdir(base):
            # never made here: an unmounted filesystem would take the files in its mount point
            raise TransferError(f"the location's base directory {task.location.base} is not a directory on this "
                                "host; create it (or mount its filesystem), or correct the location")  # fmt: skip
        results = []
        paths = confine.RealPaths()
        early = Early(arrived)  # each item is in place once installed
        for item in task.items:
            if cancel.is_set():
                results.append(ItemResult(item_id=item.item_id, ok=False, error="cancelled"))
                continue
            try:
                size = self._move(item, task.direction == "in", base, paths)
            except Refused as exc:
                results.append(ItemResult(item_id=item.item_id, ok=False, error=str(exc)))
            except OSError as exc:
                results.append(ItemResult(item_id=item.item_id, ok=False, error=describe(exc)))
            else:
                results.append(ItemResult(item_id=item.item_id, ok=True, bytes=size))
                early.add(results[-1])
                early.hand_on()
        return results

    def _move(self, item: Item, inward: bool, base: str, paths: confine.RealPaths) -> int:
        """Move one item; its size in bytes."""
        workdir = paths.real(item.workdir)
        local = os.path.join(item.workdir, item.local)
        source, source_root, source_what = (item.remote, base, LOCATION) if inward else (local, workdir, WORKDIR)
        dest, dest_root, dest_what = (local, workdir, WORKDIR) if inward else (item.remote, base, LOCATION)
        moved = confine.source(source_root, source, source_what, recursive=item.recursive, real=paths.real)
        confine.make_parent(dest_root, dest, dest_what, paths.real)
        install(moved.real, dest, self._copy, tree=moved.directory)
        return moved.size


def _hardlink(source: str, dest: str) -> None:
    try:
        os.link(source, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        raise Refused(f"{source} is on another filesystem than {os.path.dirname(dest)}, and [transfers] "
                      'file_method = "hardlink" links files; set file_method = "copy", or keep the location '
                      "on the working directories' filesystem") from None  # fmt: skip
