"""The transfer service records what a backend hands on as moved while its task runs: those
jobs move on then, the task stays running until it ends, and what cannot be recorded early is
recorded with the task's results."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from balsamd.config import TransferSettings
from balsamd.daemon.transferring import Transferring
from balsamd.models import App, JobSpec, TransferSlot
from balsamd.states import JobState
from balsamd.store.queries import JobFilter
from balsamd.store.store import SiteStore
from balsamd.transfers import backend
from balsamd.transfers.backend import ItemResult
from balsamd.transfers.records import TransferOutcome
from balsamd.validate import SiteRules

APP = App(name="staged", command_template="true",
          transfers={"input": TransferSlot(direction="in", local_path="in.dat", required=True)})  # fmt: skip
JOBS = 6


class Watched(SiteStore):
    """A site store that notes, each time items are recorded early, which tasks still run."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, SiteRules(transfer_locations={"far": "file"}))
        self.running_then: list[list[str]] = []

    def transfer_items_done(self, task_id: str, results: list[ItemResult], now: float | None = None) -> TransferOutcome:
        outcome = super().transfer_items_done(task_id, results, now)
        self.running_then.append([t.id for t in self.transfer_tasks()])
        return outcome


def stage(store: SiteStore, tmp_path: Path, fail_early: bool = False) -> Transferring:
    far = tmp_path / "far"
    for i in range(JOBS):
        (far / "in").mkdir(parents=True, exist_ok=True)
        (far / "in" / f"{i}.dat").write_text(f"input {i}")
    (tmp_path / "data").mkdir()
    store.put_apps([APP])
    store.create_jobs([JobSpec(app="staged", workdir=f"w{i}", transfers={"input": f"far:/in/{i}.dat"})
                       for i in range(JOBS)])  # fmt: skip
    settings = TransferSettings(locations={"far": f"file://{far}"})

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    service = Transferring(store, call, settings, tmp_path)

    async def main() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run, stop)
            while service.task_group is None:
                await anyio.sleep(0.01)
            await service.step(time.time())
            while service.running:
                await anyio.sleep(0.01)
            stop.set()

    anyio.run(main)
    return service


def test_jobs_move_on_as_their_items_are_handed_on_while_the_task_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    store = Watched(tmp_path / "balsamd.db")
    try:
        stage(store, tmp_path)

        assert len(store.running_then) == JOBS, "each item handed on as it was placed"
        assert all(len(running) == 1 for running in store.running_then), "while its task ran"
        assert store.count(JobFilter(states=[JobState.PREPROCESSED])) == JOBS
        assert store.transfer_tasks() == []
        for job in store.filter(JobFilter()):
            assert [e.to_state for e in store.events(job.id)].count(JobState.PREPROCESSED) == 1
    finally:
        store.close()


class Refusing(Watched):
    """A site store that cannot record items early (its disk full, say)."""

    def transfer_items_done(self, task_id: str, results: list[ItemResult], now: float | None = None) -> TransferOutcome:
        raise OSError("database or disk is full")


def test_items_that_cannot_be_recorded_early_are_recorded_when_their_task_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    store = Refusing(tmp_path / "balsamd.db")
    try:
        service = stage(store, tmp_path)

        assert store.count(JobFilter(states=[JobState.PREPROCESSED])) == JOBS
        assert service.stats["items_done"] == JOBS and service.last_error == ""
    finally:
        store.close()
