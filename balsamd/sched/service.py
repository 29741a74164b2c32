"""The daemon's scheduler and elastic-queue services.

The scheduler service submits pending batch jobs, polls the status of all active ones in one
query, records start and end times, and cancels those pending deletion.  Any scheduler
failure or unreadable reply is written into the batch job's status_info and the step goes on:
the daemon never dies of a scheduler reply.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from balsamd.config import Settings
from balsamd.diskspace import is_full
from balsamd.ids import new_id
from balsamd.models import BatchJob, BatchJobState, JobMode
from balsamd.modes import PRIVATE, Modes, changeable_by_others, make_dir, write_file
from balsamd.sched import elastic
from balsamd.sched.base import Scheduler, SchedulerError
from balsamd.sched.script import TemplateError, render, values
from balsamd.store.contract import Store
from balsamd.store.errors import DiskFull
from balsamd.validate import Refused

log = logging.getLogger("balsamd.sched")
B = BatchJobState
StoreCall = Callable[..., Awaitable[Any]]
TEMPLATE_FILE = "job-template.sh"


async def update_batch(call: StoreCall, store: Store, batch_id: str, *args: Any, **fields: Any) -> BatchJob:
    """store.update_batch_job through the daemon's store_call, which passes positional arguments only."""
    return await call(functools.partial(store.update_batch_job, batch_id, *args, **fields))


def job_script(site: Path, scheduler: Scheduler, batch: BatchJob, modes: Modes) -> Path:
    """Render the site's job template (or the scheduler's default) into SITE/batch/ID.sh.

    The template is checked at each use, as the site is when opened: the daemon may have been
    running for weeks when someone else could first write it."""
    template_file = site / TEMPLATE_FILE
    try:
        st = template_file.stat()
    except FileNotFoundError:
        template = scheduler.default_template
    else:
        problem = changeable_by_others(template_file, st)
        if problem:
            raise TemplateError(problem)
        template = template_file.read_text()
    text = render(template, values(batch, site, scheduler.directives(batch)))
    folder = site / "batch"
    make_dir(folder, modes.directory, exist_ok=True)
    script = folder / f"{batch.id}.sh"
    write_file(script, text, modes.script)
    return script


class SchedulerService:
    def __init__(
        self, site: Path, store: Store, store_call: StoreCall, scheduler: Scheduler, modes: Modes = PRIVATE
    ) -> None:
        self.site = site
        self.store = store
        self.call = store_call
        self.scheduler = scheduler
        self.modes = modes

    async def step(self, now: float) -> None:
        for batch in await self.call(self.store.batch_jobs, [B.PENDING_SUBMISSION]):
            await self._submit(batch)
        active = await self.call(self.store.batch_jobs, [B.QUEUED, B.RUNNING, B.PENDING_DELETION])
        for batch in active:
            if batch.state == B.PENDING_DELETION and batch.scheduler_id:
                await self._blocking(self.scheduler.cancel, batch.scheduler_id, batch=batch, what="cancel")
        ids = [b.scheduler_id for b in active if b.scheduler_id]
        if not ids:
            return
        try:
            statuses = await anyio.to_thread.run_sync(self.scheduler.status, ids)
        except Exception as exc:  # whatever a scheduler printed, this service goes on
            if isinstance(exc, SchedulerError):
                log.warning("status query failed: %s", exc)
            else:
                log.exception("status query failed unexpectedly")
                exc = SchedulerError(f"its reply could not be read ({type(exc).__name__}: {exc})")
            for batch in active:
                await update_batch(self.call, self.store, batch.id, status_info=f"status unknown: {exc}")
            return
        for batch in active:
            st = statuses.get(batch.scheduler_id)
            if st is None:  # the scheduler has forgotten it: it ended
                await update_batch(self.call, self.store, batch.id, B.FINISHED, end_time=batch.end_time or now,
                                status_info="no longer known to the scheduler")  # fmt: skip
            elif st.state == B.RUNNING and batch.state == B.QUEUED:
                await update_batch(self.call, self.store, batch.id, B.RUNNING, start_time=st.start_time or now,
                                status_info=st.raw_state)  # fmt: skip
            elif st.state == B.FINISHED:
                # keep why it was removed ("withdrawn: ...", "removal requested") beside the end state
                info = f"{st.raw_state} ({batch.status_info})" if batch.state == B.PENDING_DELETION else st.raw_state
                await update_batch(self.call, self.store, batch.id, B.FINISHED,
                                start_time=batch.start_time or st.start_time, end_time=st.end_time or now,
                                status_info=info)  # fmt: skip

    async def _submit(self, batch: BatchJob) -> None:
        try:
            script = job_script(self.site, self.scheduler, batch, self.modes)
            scheduler_id = await anyio.to_thread.run_sync(self.scheduler.submit, script, script.parent)
        except OSError as exc:
            if is_full(exc):  # its script cannot be written: it stays pending, the step is retried
                raise DiskFull(exc.filename or self.site / "batch") from exc
            await self._submit_failed(batch, exc)
            return
        except (SchedulerError, TemplateError) as exc:
            await self._submit_failed(batch, exc)
            return
        updated = await update_batch(
            self.call, self.store, batch.id, B.QUEUED, B.PENDING_SUBMISSION,
            scheduler_id=scheduler_id, status_info=f"submitted as {scheduler_id}",
        )  # fmt: skip
        if updated.state != B.QUEUED:  # removed by its user while we submitted: take it back
            await self._blocking(self.scheduler.cancel, scheduler_id, batch=batch, what="cancel")
            await update_batch(self.call, self.store, batch.id, B.FINISHED, status_info="removed before it ran")

    async def _submit_failed(self, batch: BatchJob, exc: Exception) -> None:
        log.warning("batch job %s: submission failed: %s", batch.id, exc)
        await update_batch(self.call, self.store, batch.id, B.SUBMIT_FAILED, status_info=str(exc))

    async def _blocking(self, fn: Callable[..., Any], *args: Any, batch: BatchJob, what: str) -> None:
        try:
            await anyio.to_thread.run_sync(fn, *args)
        except SchedulerError as exc:
            await update_batch(self.call, self.store, batch.id, status_info=f"{what} failed: {exc}")


class ElasticService:
    def __init__(self, settings: Settings, store: Store, store_call: StoreCall, scheduler: Scheduler) -> None:
        self.settings = settings
        self.store = store
        self.call = store_call
        self.scheduler = scheduler
        self.detail: dict[str, Any] = {}
        self.decisions = 0  # in detail: a watcher waits for the next decisions, not for time

    async def step(self, now: float) -> None:
        e = self.settings.elastic
        stats = await self.call(
            self.store.backlog_stats, e.max_nodes, e.max_wall_time_min - e.wall_time_pad_min, e.filter_tags
        )
        batch_jobs = await self.call(self.store.batch_jobs)
        windows = []
        if e.use_backfill:
            try:
                windows = await anyio.to_thread.run_sync(self.scheduler.backfill)
            except SchedulerError as exc:
                log.warning("backfill query failed: %s", exc)
        decision = elastic.plan(stats, batch_jobs, e, now, windows)
        for batch_id in decision.withdraw:  # expect QUEUED: not if it started or ended meanwhile
            await update_batch(self.call, self.store, batch_id, B.PENDING_DELETION, B.QUEUED,
                               status_info="withdrawn: queued longer than max_queue_wait_min")  # fmt: skip
        reason = decision.reason
        if decision.num_nodes:
            s = self.settings.scheduler
            batch = BatchJob(
                id=new_id(), num_nodes=decision.num_nodes, wall_time_min=decision.wall_time_min,
                job_mode=JobMode(e.job_mode), queue=e.queue or s.default_queue,
                project=e.project or s.default_project, filter_tags=dict(e.filter_tags), origin="elastic",
            )  # fmt: skip
            # [elastic] may allow more than the site's own limits, which every batch job keeps to
            try:
                await self.call(self.store.create_batch_job, batch, now)
            except Refused as exc:
                reason = "not submitted: " + "; ".join(exc.problems)
                log.warning("elastic queue: %s", reason)
            else:
                log.info("elastic queue: %d node(s) x %d min (%s)", batch.num_nodes, batch.wall_time_min, reason)
        self.decisions += 1  # carried out: what it submitted or withdrew is in the store
        self.detail.clear()
        self.detail.update(
            decision=reason, runnable=stats.runnable, unfit=decision.unfit,
            paused_until=decision.paused_until, decisions=self.decisions,
        )  # fmt: skip
        if decision.unfit:
            self.detail["unfit_note"] = (
                f"{decision.unfit} runnable job(s) need more than max_nodes={e.max_nodes} nodes or "
                f"{e.max_wall_time_min - e.wall_time_pad_min} minutes: the elastic queue will not run them"
            )
