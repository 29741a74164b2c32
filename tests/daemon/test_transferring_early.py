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
from tests.transfers.conftest import SshHost, rsync_then, ssh_host  # noqa: F401 (a fixture)

APP = App(name="staged", command_template="true",
          transfers={"input": TransferSlot(direction="in", local_path="in.dat", required=True)})  # fmt: skip
JOBS = 30


class Watched(SiteStore):
    """A site store that notes when each early record moved how many jobs on, and when the
    last task was finished."""

    def __init__(self, path: Path, scheme: str) -> None:
        super().__init__(path, SiteRules(transfer_locations={"far": scheme}))
        self.early: list[tuple[int, float]] = []
        self.finished_at = 0.0

    def transfer_items_done(self, task_id: str, results: list[ItemResult], now: float | None = None) -> TransferOutcome:
        outcome = super().transfer_items_done(task_id, results, now)
        self.early.append((len(outcome.moved), time.monotonic()))
        return outcome

    def finish_transfer_task(
        self, task_id: str, results: list[ItemResult], max_attempts: int, backoff_s: float, now: float | None = None
    ) -> TransferOutcome:
        outcome = super().finish_transfer_task(task_id, results, max_attempts, backoff_s, now)
        self.finished_at = time.monotonic()
        return outcome


class Refusing(Watched):
    """A site store that cannot record items early (its disk full, say)."""

    def transfer_items_done(self, task_id: str, results: list[ItemResult], now: float | None = None) -> TransferOutcome:
        raise OSError("database or disk is full")


def stage(store: SiteStore, site: Path, settings: TransferSettings) -> Transferring:
    """Make JOBS jobs with an input each (far:/in/N/in.dat) and run the service until no task runs."""
    (site / "data").mkdir()
    store.put_apps([APP])
    store.create_jobs([JobSpec(app="staged", workdir=f"w{i}", transfers={"input": f"far:/in/{i}/in.dat"})
                       for i in range(JOBS)])  # fmt: skip

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    service = Transferring(store, call, settings, site)

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


def inputs(far: Path) -> None:
    for i in range(JOBS):
        (far / "in" / str(i)).mkdir(parents=True)
        (far / "in" / str(i) / "in.dat").write_text(f"input {i}")


def moved_once(store: SiteStore) -> bool:
    return all(
        [e.to_state for e in store.events(job.id)].count(JobState.PREPROCESSED) == 1
        for job in store.filter(JobFilter())
    )


def test_jobs_move_on_as_their_files_arrive_while_the_task_still_runs(
    tmp_path: Path,
    ssh_host: SshHost,  # noqa: F811 (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rsync's process lives two seconds after its last file: every file but the last is
    recorded while it lives (the last once it has ended well, with or before the task's end),
    and each job moves on once."""
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    rsync_then(tmp_path, monkeypatch, "sleep 2")
    inputs(tmp_path / "far")
    ssh = list(ssh_host.ssh_command)
    for flag in ("-p", "-l"):
        del ssh[ssh.index(flag) : ssh.index(flag) + 2]
    url = f"rsync://{ssh_host.user}@127.0.0.1:{ssh_host.port}{tmp_path / 'far'}"
    store = Watched(tmp_path / "balsamd.db", "rsync")
    try:
        service = stage(store, tmp_path, TransferSettings(locations={"far": url}, ssh=ssh, ssh_multiplex=False))

        assert sum(moved for moved, at in store.early if at < store.finished_at - 1) == JOBS - 1
        assert store.count(JobFilter(states=[JobState.PREPROCESSED])) == JOBS
        assert store.transfer_tasks() == [] and moved_once(store)
        assert service.stats["items_done"] == JOBS
    finally:
        store.close()


def test_items_that_cannot_be_recorded_early_are_recorded_when_their_task_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    inputs(tmp_path / "far")
    store = Refusing(tmp_path / "balsamd.db", "file")
    try:
        service = stage(store, tmp_path, TransferSettings(locations={"far": f"file://{tmp_path / 'far'}"}))

        assert store.count(JobFilter(states=[JobState.PREPROCESSED])) == JOBS and moved_once(store)
        assert service.stats["items_done"] == JOBS and service.last_error == ""
    finally:
        store.close()
