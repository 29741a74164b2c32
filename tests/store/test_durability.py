"""What is on disk when an operation returns.

A power loss takes back the commits whose WAL frames were not yet synced.  The store syncs the
WAL at the commit of each operation the contract declares durable (the caller acts on its
answer outside the store) and leaves the others to the next checkpoint.  These tests watch
the store's real files through a VFS that records every sync SQLite asks of the disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from balsamd.models import App, BatchJob, ClaimLimits, Intent, JobChanges, JobSpec, StateUpdate, TransferSlot
from balsamd.states import JobState
from balsamd.store.contract import OPERATIONS
from balsamd.store.errors import JobNotFound
from balsamd.store.store import SiteStore
from balsamd.transfers.backend import ItemResult
from tests.conftest import make_jobs, open_store
from tests.store import claim

S = JobState
STAGED = App(name="staged", command_template="true", transfers={"i": TransferSlot(direction="in")})


class _File(apsw.VFSFile):
    def __init__(self, vfs: _Recording, name: Any, flags: list[int]) -> None:
        self.path = name.filename() if isinstance(name, apsw.URIFilename) else name
        self.vfs = vfs
        super().__init__(vfs.base, name, flags)

    def xSync(self, flags: int) -> None:
        self.vfs.synced.append(os.path.basename(self.path))
        super().xSync(flags)


class _Recording(apsw.VFS):
    """The default VFS while it is registered: the operating system's, recording each sync."""

    def __init__(self) -> None:
        self.base = apsw.vfs_names()[0]
        self.synced: list[str] = []
        super().__init__("recording-syncs", self.base, makedefault=True)

    def xOpen(self, name: Any, flags: list[int]) -> _File:
        return _File(self, name, flags)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[SiteStore, _Recording]]:
    vfs = _Recording()
    try:
        store = open_store(tmp_path / "store.db")
        try:
            yield store, vfs
        finally:
            store.close()
    finally:
        vfs.unregister()


def test_each_write_syncs_the_wal_exactly_when_the_contract_declares_it_durable(watched) -> None:
    store, vfs = watched
    [failing, running, unstarted, edited] = make_jobs(store, 4)
    intent = Intent(id="I1", kind="kill", job_id=edited.id)
    state: dict[str, Any] = {}

    def report(state_: JobState, *jobs: str) -> Callable[[], object]:
        updates = [StateUpdate(job_id=i, state=state_, ts=1.0, return_code=1) for i in jobs]
        return lambda: store.update_states(state["session"], updates)

    calls: list[tuple[str, Callable[[], object]]] = [
        ("put_apps", lambda: store.put_apps([App(name="extra", command_template="true")])),
        ("create_jobs", lambda: make_jobs(store, 1)),
        ("open_session", lambda: state.setdefault("session", store.open_session("watched").id)),
        ("claim", lambda: claim(store, state["session"], ClaimLimits(max_jobs=3))),
        ("heartbeat", lambda: store.heartbeat(state["session"])),
        ("update_states", report(S.RUNNING, failing.id, running.id)),
        ("release", lambda: store.release(state["session"], [unstarted.id])),
        ("update_states", report(S.RUN_ERROR, failing.id)),
        ("retry", lambda: store.retry([failing.id])),
        ("update_jobs", lambda: store.update_jobs({edited.id: JobChanges(tags={"k": "v"})})),
        ("add_parents", lambda: store.add_parents(edited.id, [running.id])),
        ("kill", lambda: store.kill([unstarted.id])),
        ("delete", lambda: store.delete([unstarted.id])),
        ("close_session", lambda: store.close_session(state["session"])),
        ("create_batch_job", lambda: store.create_batch_job(BatchJob(id="b1", num_nodes=1, wall_time_min=10))),
        ("update_batch_job", lambda: store.update_batch_job("b1", scheduler_id="42")),
        ("remove_batch_job", lambda: store.remove_batch_job("b1")),
        ("meta_set", lambda: store.meta_set({"sync.cursor": "1"})),
        ("apply_intents", lambda: store.apply_intents([intent])),
        ("put_apps", lambda: store.put_apps([STAGED])),
        ("create_jobs", lambda: store.create_jobs([JobSpec(app="staged", workdir="s", transfers={"i": "far:/a"})])),
        ("start_transfer_task", lambda: store.start_transfer_task("t", "in", "far", [store.transfers()[0].id])),
        ("transfer_external_id", lambda: store.transfer_external_id("t", "submission-1")),
        (
            "transfer_items_done",
            lambda: store.transfer_items_done("t", [ItemResult(item_id=store.transfers()[0].id, ok=True)]),
        ),
        ("finish_transfer_task", lambda: store.finish_transfer_task("t", [], 3, 1.0)),
    ]
    synced: dict[str, list[bool]] = {}
    for name, call in calls:
        vfs.synced.clear()
        call()
        synced.setdefault(name, []).append("store.db-wal" in vfs.synced)
    declared = {name: [OPERATIONS[name].durable] * len(seen) for name, seen in synced.items()}
    assert synced == declared
    assert {name for name, op in OPERATIONS.items() if op.durable} <= set(synced), "a durable operation is not tried"


def test_a_durable_operation_that_is_refused_leaves_the_connection_as_it_was(watched) -> None:
    store, vfs = watched
    session = store.open_session("watched")
    with pytest.raises(JobNotFound, match="no job with id nope"):  # refused inside its transaction
        store.kill(["nope"])
    vfs.synced.clear()
    store.heartbeat(session.id)
    assert vfs.synced == []
    assert store.db.conn.execute("PRAGMA synchronous").fetchall() == [(1,)]  # NORMAL


def test_intents_applied_in_one_call_are_all_on_disk_when_it_returns(watched) -> None:
    store, vfs = watched
    jobs = make_jobs(store, 3)
    vfs.synced.clear()
    outcomes = store.apply_intents([Intent(id=f"I{n}", kind="kill", job_id=j.id) for n, j in enumerate(jobs)])
    assert len(outcomes) == 3
    assert vfs.synced[-1] == "store.db-wal"
