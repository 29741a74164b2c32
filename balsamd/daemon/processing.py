"""The processing service: lifecycle hooks of apps that override them, and stragglers of the DAG.

Apps that keep a default hook never come here: the store applies the default in the
transaction that reached the state.  This service finds jobs waiting for a user hook, runs the
hooks in worker processes (never in the daemon) and records each outcome, then releases or
fails any job still waiting on parents that already settled.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from balsamd.daemon.hookjobs import hook_workdir, parents_reply
from balsamd.daemon.hooks import HookPool, ParentsReply, hook_task, next_state
from balsamd.lifecycle import HOOKS
from balsamd.models import App, Job
from balsamd.states import IllegalTransition, JobState
from balsamd.store.errors import DiskFull
from balsamd.store.queries import JobFilter
from balsamd.store.store import SiteStore

log = logging.getLogger("balsamd.processing")

StoreCall = Callable[..., Awaitable[Any]]


def find_hook_work(store: SiteStore, apps: dict[str, App], limit: int) -> list[tuple[Job, str]]:
    """(job, hook) pairs for jobs sitting in a state whose hook their app overrides."""
    work: list[tuple[Job, str]] = []
    for hook in HOOKS:
        for app in apps.values():
            if hook.name in app.hooks and len(work) < limit:
                f = JobFilter(states=[hook.runs_in], app=app.name, limit=limit - len(work))
                work.extend((job, hook.name) for job in store.filter(f))
    return work


class Outcome(msgspec.Struct, frozen=True):
    """What a hook decided for its job, which left ``was`` for it."""

    job_id: str
    was: JobState
    state: JobState
    reason: str
    data: dict[str, Any] | None


class Processing:
    def __init__(
        self, store: SiteStore, store_call: StoreCall, apps_dir: Path, data_dir: Path, pool: HookPool, batch: int = 256
    ) -> None:
        self.store = store
        self.call = store_call
        self.apps_dir = apps_dir
        self.data_prefix = f"{data_dir}{os.sep}"
        self.pool = pool
        self.batch = batch
        self.hooks_run = 0
        self.released = 0
        # outcomes of hooks not recorded yet because the disk was full: recorded before any new
        # work, so that no hook runs twice for it
        self.outcomes: list[Outcome] = []

    async def step(self, _now: float) -> None:
        await self._record_outcomes()
        apps = await self.call(self.store.apps)
        work = await self.call(find_hook_work, self.store, apps, self.batch)
        if work:
            tasks = []
            for job, hook in work:
                app = apps[job.app]
                try:
                    workdir = hook_workdir(self.data_prefix, job)
                    tasks.append((hook, hook_task(job, hook, self.apps_dir / app.source, app.class_name, workdir)))
                except Exception as exc:  # e.g. data a hook worker cannot be sent: fail the job, not the service
                    reason = f"{hook} hook: the job cannot be handed to it: {type(exc).__name__}: {exc}"
                    await self._record(job.id, job.state, JobState.FAILED, reason, None)
            started_in = {job.id: job.state for job, _ in work}
            full = ""
            for hook, result in await anyio.to_thread.run_sync(self.pool.run, tasks, self._parents):
                if result.full:  # not run: the job stays where it is, for a step with space
                    full = result.full
                    continue
                state, reason = next_state(hook, result)
                self.outcomes.append(Outcome(result.job_id, started_in[result.job_id], state, reason, result.data))
                self.hooks_run += 1
            await self._record_outcomes()
            if full:
                raise DiskFull(full)
        self.released += await self.call(self.store.resolve_waiting)

    def _parents(self, job_id: str) -> ParentsReply:
        """For the hook pool's thread: read a job's parents through the store's one caller."""

        async def read() -> ParentsReply:
            reply: ParentsReply = await self.call(parents_reply, self.store, self.data_prefix, job_id)
            return reply

        return anyio.from_thread.run(read)

    async def _record_outcomes(self) -> None:
        """Record the hooks' outcomes in order.  On a full disk the rest wait for the next step;
        any other failure drops the outcome it met (its hook runs again)."""
        while self.outcomes:
            outcome = self.outcomes[0]
            try:
                await self._record(outcome.job_id, outcome.was, outcome.state, outcome.reason, outcome.data)
            except Exception as exc:
                if not isinstance(exc, DiskFull):
                    del self.outcomes[0]
                raise
            del self.outcomes[0]

    async def _record(self, job_id: str, was: JobState, state: JobState, reason: str, data) -> None:
        try:
            await self.call(self.store.finish_hook, job_id, was, state, reason, data)
        except IllegalTransition as exc:
            log.warning("job %s: hook chose an illegal state: %s", job_id, exc)
            await self.call(self.store.finish_hook, job_id, was, JobState.FAILED, f"hook chose an illegal state: {exc}")
