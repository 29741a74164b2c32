"""Transfer items and tasks as the store keeps them and every reader sees them."""

from __future__ import annotations

import enum
from typing import Literal

import msgspec


class TransferState(enum.StrEnum):
    PENDING = "pending"  # not moved yet: waits for its job's step, a free task, or its next try
    ACTIVE = "active"  # in a task being run
    DONE = "done"
    FAILED = "failed"  # out of tries: its job failed with the error
    CANCELLED = "cancelled"  # its job failed or was killed first (a retry brings it back)


class TransferItem(msgspec.Struct, kw_only=True):
    """One slot of one job: ``path`` at ``location`` and ``local_path`` in the job's workdir,
    moved the slot's ``direction``."""

    id: int
    job_id: str
    slot: str
    direction: Literal["in", "out"]
    location: str
    path: str
    local_path: str
    recursive: bool = False
    state: TransferState = TransferState.PENDING
    task_id: str | None = None
    attempts: int = 0
    not_before: float = 0.0  # a retried item waits until then
    bytes: int = 0
    error: str = ""  # the backend's message of its last failure
    updated_at: float = 0.0
    # of its job: where it runs (under the site's data/) and who asked for it
    workdir: str = ""
    owner: str = ""
    # the site it is at: an item's id names it only within its site (a store, which holds one
    # site's items, leaves it empty; the API and the central database fill it in)
    site: str = ""


# The columns of an item wherever it is a row (the site store, the central database): its fields
# but those read from its job's row, and its site (a store holds one site's; central keys by it).
ITEM_COLUMNS: tuple[str, ...] = tuple(
    f for f in TransferItem.__struct_fields__ if f not in ("workdir", "owner", "site")
)


class TransferTask(msgspec.Struct, kw_only=True):
    """A batch of items going one way between the site and one location, recorded before a
    backend runs it (``external_id``: the backend's own id, once it recorded one)."""

    id: str
    direction: Literal["in", "out"]
    location: str
    created_at: float
    external_id: str = ""
    items: list[TransferItem] = []


class TransferFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which items a query means; every field narrows."""

    states: list[TransferState] = []
    job_ids: list[str] | None = None
    task_id: str | None = None
    direction: Literal["in", "out"] | None = None
    location: str | None = None
    limit: int | None = None


class TransferOutcome(msgspec.Struct, kw_only=True):
    """What recording a task's results did: jobs that moved on, jobs failed (with the reason),
    and items waiting for another try."""

    moved: list[str] = []
    failed: dict[str, str] = {}
    retrying: list[int] = []


class TransferBacklog(msgspec.Struct, kw_only=True):
    """Items of one direction whose job waits for them, and since when the oldest has waited
    (when it was made pending: written with its job, or set back for another try)."""

    items: int
    since: float
