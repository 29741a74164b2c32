"""The transfer service: stage-in and stage-out of jobs' transfer items, in batches.

Each step takes the pending items whose jobs wait for them, groups them into tasks (one
direction, one location: ``transfers.plan``), records each task in the store, and only then
hands it to a backend in a worker thread; at most ``max_concurrent_transfers`` tasks run at
once.  Items the backend has moved for good while the task runs are recorded as it hands them
on, and their jobs move on then; the task's results are recorded in one transaction that also
moves its other jobs on (or fails them).  When the daemon stops, running tasks are left
recorded and unfinished: the next start resumes each under its own id (a Globus task with its
recorded submission id), so none is started twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from balsamd import ids
from balsamd.config import TransferSettings
from balsamd.launch.workdirs import WorkdirOutside, job_workdir
from balsamd.store.store import SiteStore
from balsamd.transfers.backend import Backend, Item, ItemResult, Task, TransferError
from balsamd.transfers.backends import backend_for
from balsamd.transfers.locations import Location, LocationError, parse_location, resolve
from balsamd.transfers.plan import plan_tasks
from balsamd.transfers.records import TransferItem, TransferTask
from balsamd.transfers.rsync import RsyncBackend

log = logging.getLogger("balsamd.transfers")

StoreCall = Callable[..., Awaitable[Any]]
STAGING = ".transfers"  # under data/: each task's private directory, on the workdirs' filesystem


class Transferring:
    def __init__(self, store: SiteStore, store_call: StoreCall, settings: TransferSettings, site_dir: Path) -> None:
        self.store = store
        self.call = store_call
        self.settings = settings
        self.site_dir = site_dir
        self.data_prefix = f"{site_dir / 'data'}{os.sep}"
        self.cancel = threading.Event()
        self.limiter = anyio.CapacityLimiter(settings.max_concurrent_transfers)
        self.running: dict[str, TransferTask] = {}
        self.moved_early: dict[str, int] = {}  # task -> its jobs moved on while it ran
        self.task_group: anyio.abc.TaskGroup | None = None
        self.wake: Callable[[], None] = lambda: None  # the service's trigger: a slot is free
        self.stats = {"tasks_done": 0, "items_done": 0, "items_retrying": 0, "jobs_failed": 0, "bytes": 0}
        self.last_error = ""

    def detail(self) -> dict[str, object]:
        return {"tasks_running": len(self.running), **self.stats, "last_error": self.last_error}

    async def run(self, stop: anyio.Event) -> None:
        """The companion task: resumes the tasks a previous daemon left, then holds the task
        group new tasks run in until the daemon stops."""
        async with anyio.create_task_group() as tg:
            for task in await self.call(self.store.transfer_tasks):
                log.info("resuming transfer task %s (%d item(s), %s %s)", task.id, len(task.items),
                         task.direction, task.location)  # fmt: skip
                self._start(tg, task)
            self.task_group = tg
            await stop.wait()
            self.task_group = None
            self.cancel.set()  # backends return soon; their tasks stay recorded for the next start

    async def step(self, now: float) -> None:
        tg = self.task_group
        free = self.settings.max_concurrent_transfers - len(self.running)
        if tg is None or free <= 0:
            return
        size = self.settings.transfer_batch_size
        items = await self.call(self.store.transfer_work, size * free, now)
        batches = plan_tasks(items, size, free)
        for name in dict.fromkeys(batch[0].location for batch in batches):
            self._log_in_soon(name)
        for batch in batches:
            first = batch[0]
            task = await self.call(
                self.store.start_transfer_task, ids.new_ids(1, now)[0], first.direction, first.location,
                [i.id for i in batch], now,
            )  # fmt: skip
            if task.items:
                self._start(tg, task)

    def _log_in_soon(self, name: str) -> None:
        """Log in to an rsync location while its tasks are recorded (a login costs a
        connection's set-up, a few tenths of a second); its tasks wait for that login."""
        try:
            location = self._location(name)
            backend = backend_for(location, self.settings, self.site_dir)
        except (LocationError, TransferError):  # the task says why
            return
        if isinstance(backend, RsyncBackend):
            threading.Thread(target=backend.log_in, args=(location, self.cancel), daemon=True).start()

    def _start(self, tg: anyio.abc.TaskGroup, task: TransferTask) -> None:
        self.running[task.id] = task
        tg.start_soon(self._run_task, task)

    async def _run_task(self, task: TransferTask) -> None:
        try:
            results = await anyio.to_thread.run_sync(self._move, task, limiter=self.limiter)
            if self.cancel.is_set():
                return
            outcome = await self.call(
                self.store.finish_transfer_task, task.id, results, self.settings.max_attempts,
                self.settings.retry_backoff_s,
            )  # fmt: skip
        except Exception as exc:  # the task stays recorded: the next start resumes it
            self.last_error = f"task {task.id}: {type(exc).__name__}: {exc}"
            log.error("transfer task %s could not be finished: %s", task.id, exc)
            return
        finally:
            self.running.pop(task.id, None)
            early = self.moved_early.pop(task.id, 0)
            self.wake()
        shutil.rmtree(self._staging(task), ignore_errors=True)
        moved = [r for r in results if r.ok]
        self.stats["tasks_done"] += 1
        self.stats["items_done"] += len(moved)
        self.stats["bytes"] += sum(r.bytes for r in moved)
        self.stats["items_retrying"] += len(outcome.retrying)
        self.stats["jobs_failed"] += len(outcome.failed)
        log.info("transfer task %s (%s %s): %d of %d item(s) moved, %d job(s) on, %d to retry, %d job(s) failed",
                 task.id, task.direction, task.location, len(moved), len(results), early + len(outcome.moved),
                 len(outcome.retrying), len(outcome.failed))  # fmt: skip
        for job_id, reason in outcome.failed.items():
            log.warning("job %s failed: %s", job_id, reason)

    def _staging(self, task: TransferTask) -> str:
        return os.path.join(self.data_prefix, STAGING, task.id)

    def _move(self, task: TransferTask) -> list[ItemResult]:
        """Run one task's backend (in a worker thread); every item gets a result."""
        failed: dict[int, str] = {}
        try:
            location = self._location(task.location)
            backend: Backend = backend_for(location, self.settings, self.site_dir)
        except (LocationError, TransferError) as exc:
            return [ItemResult(item_id=i.id, ok=False, error=str(exc)) for i in task.items]
        items = []
        for item in task.items:
            try:
                items.append(self._item(location, item))
            except (LocationError, WorkdirOutside, OSError) as exc:
                failed[item.id] = str(exc)
        staging = self._staging(task)
        os.makedirs(staging, mode=0o700, exist_ok=True)
        btask = Task(task_id=task.id, direction=task.direction, location=location, items=tuple(items),
                     staging=staging, external_id=task.external_id)  # fmt: skip
        try:
            results = backend.run(btask, lambda external: self.store.transfer_external_id(task.id, external),
                                  self.cancel, lambda done: self._arrived(task, done)) if items else []  # fmt: skip
        except TransferError as exc:
            results = [ItemResult(item_id=i.item_id, ok=False, error=str(exc)) for i in items]
        answered = {r.item_id for r in results}
        missing = [ItemResult(item_id=i.item_id, ok=False, error="the backend gave no result for it")
                   for i in items if i.item_id not in answered]  # fmt: skip
        return [*results, *missing, *(ItemResult(item_id=i, ok=False, error=e) for i, e in failed.items())]

    def _arrived(self, task: TransferTask, done: list[ItemResult]) -> None:
        """Items the backend moved for good while their task runs (called in the backend's
        thread, which goes on placing files at once): recorded as any store call, so that their
        jobs move on now.  What is not recorded so (the daemon stopping, the store failing) the
        task's finish records."""
        with contextlib.suppress(RuntimeError):  # the event loop is gone: the daemon stops
            anyio.from_thread.run_sync(self._record_soon, task, done)

    def _record_soon(self, task: TransferTask, done: list[ItemResult]) -> None:
        if self.task_group is not None:
            self.task_group.start_soon(self._record_early, task, done)

    async def _record_early(self, task: TransferTask, done: list[ItemResult]) -> None:
        try:
            outcome = await self.call(self.store.transfer_items_done, task.id, done)
        except Exception as exc:
            log.warning("transfer task %s: %d item(s) moved, to be recorded when it ends: %s", task.id, len(done), exc)
            return
        if task.id in self.running:
            self.moved_early[task.id] = self.moved_early.get(task.id, 0) + len(outcome.moved)

    def _location(self, name: str) -> Location:
        url = self.settings.locations.get(name)
        if url is None:
            raise LocationError(f"location {name!r} is no longer in [transfers.locations] of settings.toml; "
                                "add it back and retry the job (`balsamd job retry`)")  # fmt: skip
        return parse_location(url)

    def _item(self, location: Location, item: TransferItem) -> Item:
        """The backend's view of an item: the concrete remote path (inside the location's base)
        and the job's workdir (checked to stay in data/; a stage-in's backend makes it)."""
        workdir = job_workdir(self.data_prefix, item)
        return Item(item_id=item.id, remote=resolve(location, item.path).path, workdir=workdir,
                    local=item.local_path, recursive=item.recursive)  # fmt: skip
