"""What the transfer service hands a backend, and what it gets back.

A task is a batch of items going one way between this site and one location.  The service
records the task (and binds its items to it) before a backend sees it, so after a restart the
same task is resumed, never submitted again as a new one.  A backend moves the files and
answers for each item; it never changes the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

import msgspec

from balsamd.transfers.locations import Location

Direction = Literal["in", "out"]


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """One file (or directory, when ``recursive``) of one job.

    ``remote``: the concrete path at the task's location, already confined to its base
    (``locations.resolve``).  ``local``: a relative path inside ``workdir``, the job's working
    directory (absolute); stage-in writes it, stage-out reads it.
    """

    item_id: int
    remote: str
    workdir: str
    local: str
    recursive: bool = False


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """A batch of items going ``direction`` between this site and ``location``.

    ``staging``: an empty directory private to the task, on the filesystem of the site's data/,
    for the backend's own use (a batch's files are gathered there, then renamed into place).
    ``external_id``: what the backend recorded through ``record`` for this task before (a
    resumed task); "" for a new one.
    """

    task_id: str
    direction: Direction
    location: Location
    items: tuple[Item, ...]
    staging: str
    external_id: str = ""


class ItemResult(msgspec.Struct, frozen=True, kw_only=True):
    """How one item ended: moved (``bytes`` is its size, summed over a directory), or not, with
    the backend's own message in ``error`` (never a credential)."""

    item_id: int
    ok: bool
    bytes: int = 0
    error: str = ""


# items moved for good before their task ends, handed to the service (see Backend)
Arrived = Callable[[list[ItemResult]], None]
# how often a backend hands them on, at most: each time is one write of the store
ARRIVED_EVERY_S = 0.1


class Backend(Protocol):
    """Moves a task's files.  ``run`` blocks (the service calls it in a worker thread) and
    returns one result per item of the task.

    ``record(external_id)`` durably stores the backend's own id for the task (Globus's
    submission id); a backend calls it *before* it submits, so a resumed task finds it in
    ``task.external_id`` and never submits twice.  ``cancel`` is set when the daemon stops: the
    backend returns soon, with whatever it knows (unfinished items are resumed next start).
    ``arrived``, when given, takes items moved for good while the task still runs (a backend
    that knows of such items hands them on, ``Early``): their jobs move on at once.  They are
    among the results ``run`` returns too.
    """

    def run(
        self, task: Task, record: Callable[[str], None], cancel: threading.Event, arrived: Arrived | None = None
    ) -> list[ItemResult]: ...


class Early:
    """Moved items gathered for ``arrived`` and handed on together, at most every
    ``ARRIVED_EVERY_S``: what is left when the task ends comes with its results."""

    def __init__(self, arrived: Arrived | None) -> None:
        self._arrived = arrived
        self._gathered: list[ItemResult] = []
        self._last = time.monotonic()

    def add(self, result: ItemResult) -> None:
        if self._arrived is not None:
            self._gathered.append(result)

    def hand_on(self) -> None:
        """Hand the gathered items on, if there are any and it is time."""
        now = time.monotonic()
        if self._arrived is not None and self._gathered and now - self._last >= ARRIVED_EVERY_S:
            self._arrived(self._gathered)
            self._gathered, self._last = [], now


class TransferError(Exception):
    """A task that cannot be run at all (a missing program, no credentials); the message says
    what to do.  Its items are retried like failed ones."""
