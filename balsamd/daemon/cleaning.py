"""The cleanup service: removes apps' ``cleanup_files`` from the workdirs of finished jobs.

Jobs finish in two places (in a launcher's report, when the app keeps its default hooks, or
after the daemon ran a hook), so the daemon finds them where every finish is recorded: rows
stamped after its cursor that are JOB_FINISHED.  The cursor is kept in the store's meta once
what it covers is cleaned; a daemon that dies in between cleans those jobs again, which
removes nothing more.  Removal never changes a job: what could not be removed is logged, once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from balsamd.cleanup import remove_matching
from balsamd.launch.workdirs import WorkdirOutside, job_workdir
from balsamd.models import Job
from balsamd.store.store import SiteStore

log = logging.getLogger("balsamd.cleanup")

CURSOR = "cleanup.seq"
WINDOW = 1000  # store transactions looked at per query
PER_STEP = 2000  # jobs cleaned per step at most, so that a long backlog does not hold the step

StoreCall = Callable[..., Awaitable[Any]]


class Cleaning:
    def __init__(self, store: SiteStore, store_call: StoreCall, data_dir: Path) -> None:
        self.store = store
        self.call = store_call
        self.data_prefix = f"{data_dir}{os.sep}"
        self.cursor: int | None = None
        self.cleaned = 0
        self.removed = 0

    async def step(self, _now: float) -> None:
        apps = await self.call(self.store.apps)
        globs = {name: app.cleanup_files for name, app in apps.items() if app.cleanup_files}
        top = await self.call(self.store.max_seq)
        if self.cursor is None:
            saved = await self.call(self.store.meta_get, CURSOR)
            self.cursor = int(saved) if saved is not None and saved.isdigit() else 0
        start, cursor, count = self.cursor, min(self.cursor, top), 0
        while cursor < top and count < PER_STEP:
            upto = min(top, cursor + WINDOW)
            jobs = await self.call(self.store.jobs_finished, cursor, upto, sorted(globs)) if globs else []
            await anyio.to_thread.run_sync(self._clean, jobs, globs)
            count += len(jobs)
            cursor = upto
        self.cursor = cursor
        if count and cursor != start:
            await self.call(self.store.meta_set, {CURSOR: str(cursor)})

    def _clean(self, jobs: list[Job], globs: dict[str, list[str]]) -> None:
        for job in jobs:
            try:
                workdir = job_workdir(self.data_prefix, job)
            except WorkdirOutside as exc:
                log.warning("job %s: its files were not cleaned up: %s", job.id, exc)
                continue
            done = remove_matching(workdir, globs[job.app])
            self.cleaned += 1
            self.removed += len(done.removed)
            if done.failed:
                log.warning(
                    "job %s: cleanup of %s left %d path(s): %s",
                    job.id,
                    workdir,
                    len(done.failed),
                    "; ".join(done.failed),
                )
