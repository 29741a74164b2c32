"""The daemon: one process on the site's host that owns the store and runs the services.

Everything is wired in :meth:`Daemon.run`.  Services are listed in :func:`build_services`;
a later service (scheduler, elastic queue, sync) is one more entry there.
"""

from __future__ import annotations

import fcntl
import functools
import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import apsw
import msgspec

from balsamd.config import Settings
from balsamd.daemon.cleaning import Cleaning
from balsamd.daemon.hooks import HookPool
from balsamd.daemon.processing import Processing
from balsamd.daemon.publishing import Publishing
from balsamd.daemon.services import Health, Service, Trigger, run_service, run_step
from balsamd.daemon.syncing import SyncService
from balsamd.daemon.transferring import Transferring
from balsamd.modes import PRIVATE, open_file, site_modes
from balsamd.rpc.protocol import DaemonStatus, ServiceHealth
from balsamd.rpc.record import DaemonRecord, read_secret, remove_record, secret_id, this_host, write_record
from balsamd.rpc.server import RpcServer, handlers_for
from balsamd.sched import make_scheduler
from balsamd.sched.service import ElasticService, SchedulerService
from balsamd.site import SiteLayout
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules
from balsamd.version import __version__

log = logging.getLogger("balsamd.daemon")

# How long a thread runs Python before it gives the interpreter to another that waits (Python's
# default: 5 ms).  The daemon's threads mostly wait on system calls (SQLite, files, sockets,
# transfer programs), and one returning from a call waits for the thread running Python until
# this interval ends: placing a transfer task's 5,000 files (three calls each) took 0.4-0.7 s
# beside another task's placing and records at 5 ms, 0.17-0.29 s at 0.5 ms.
SWITCH_INTERVAL_S = 0.001
# How many new containers (lists, dicts, tuples: a step's thousands of items and results) the
# interpreter lets be made before it looks for reference cycles among the young ones (Python's
# default: 700).  Each look stops every thread: staging in 10,000 files took 140 looks and 0.1 s
# of them at the default, 5 looks and 0.013 s at 10,000; cyclic garbage waits at most that long.
GC_YOUNG_THRESHOLD = 10_000


class AlreadyRunning(Exception):
    pass


class Daemon:
    """``stdio_log``: the log this process's stdout and stderr go to, if they do (in the
    background); its hook workers' go there too."""

    def __init__(self, layout: SiteLayout, settings: Settings, stdio_log: Path | None = None) -> None:
        self.layout = layout
        self.settings = settings
        self.stdio_log = stdio_log
        self.name = layout.name(settings)
        self.stop = anyio.Event()
        self.started_at = time.time()
        self.port = 0
        self.health: list[Health] = []
        self._lock_fd: int | None = None
        self._last_port = 0

    def lock(self) -> None:
        """Hold SITE/daemon.lock for the daemon's life: a second daemon on this host fails here.

        The lock file also keeps the port the last daemon served on (see :meth:`listen`)."""
        fd = open_file(self.layout.root / "daemon.lock", os.O_RDWR, PRIVATE.file)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(f"another balsamd daemon holds {self.layout.root / 'daemon.lock'}") from None
        self._lock_fd = fd
        text = os.pread(fd, 16, 0).decode(errors="replace").strip()
        self._last_port = int(text) if text.isdigit() and 0 < int(text) < 65536 else 0

    async def listen(self):
        """Listen on the configured port; with none configured, on the port the previous daemon
        used if it is free, so that launchers still running find a restarted daemon again."""
        d = self.settings.daemon
        port = d.port or self._last_port
        try:
            listener = await anyio.create_tcp_listener(local_host=d.bind, local_port=port, reuse_port=False)
        except OSError as exc:
            if d.port or not port:
                raise
            log.warning("port %d of the previous daemon is taken (%s); listening on another", port, exc)
            listener = await anyio.create_tcp_listener(local_host=d.bind, local_port=0, reuse_port=False)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{self.port}\n".encode(), 0)
        return listener

    async def run(self, on_ready: Callable[[DaemonRecord], None] | None = None) -> None:
        self.lock()
        tune_interpreter()
        store = SiteStore(self.layout.store, SiteRules.of(self.settings))
        limiter = anyio.CapacityLimiter(1)
        pool = HookPool(self.settings.daemon.hook_workers, self.settings.daemon.hook_timeout_sec, self.stdio_log)
        store_call = one_at_a_time(limiter)
        self.health = [Health(s) for s in build_services(self, store, store_call, pool)]
        secret = read_secret(self.layout.root)
        server = store_server(store, secret, self.name, limiter)
        server.handlers.update(
            status=lambda _a: self.status(store), services=lambda _a: self.services(), shutdown=self._shutdown
        )
        listener = await self.listen()
        record = DaemonRecord(
            pid=os.getpid(), host=this_host(), port=self.port, started_at=self.started_at, version=__version__,
            secret_id=secret_id(secret),
        )  # fmt: skip
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._signals)
                tg.start_soon(server.serve, listener)
                write_record(self.layout.root, record)
                log.info("daemon serving site %s on %s:%d (pid %d)", self.name, record.host, self.port, record.pid)
                if on_ready is not None:
                    on_ready(record)
                for health in self.health:
                    if health.service.first:  # a failure is recorded and retried like any step's
                        await run_step(health)
                for health in self.health:
                    tg.start_soon(run_service, health, self.stop)
                    if health.service.companion is not None:
                        tg.start_soon(health.service.companion, self.stop)
                await self.stop.wait()
                log.info("stopping: services finish their current step")
                tg.cancel_scope.cancel()
        finally:
            remove_record(self.layout.root, os.getpid())
            await anyio.to_thread.run_sync(pool.close)
            store.close()
            log.info("daemon stopped")

    async def _signals(self) -> None:
        import signal

        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                self.stop.set()
                return

    async def _shutdown(self, _args: Any) -> None:
        self.stop.set()

    def services(self) -> list[ServiceHealth]:
        now = time.time()
        return [h.report(now) for h in self.health]

    def status(self, store: SiteStore) -> DaemonStatus:
        services = self.services()
        return DaemonStatus(
            site=self.name, host=this_host(), port=self.port, pid=os.getpid(), started_at=self.started_at,
            healthy=all(s.healthy for s in services), services=services,
            job_counts=store.counts_by_state(), sessions=store.sessions(open_only=True),
            batch_jobs=[msgspec.to_builtins(b) for b in store.batch_jobs()[-20:]],
        )  # fmt: skip


def tune_interpreter() -> None:
    """Let a thread back from a system call run Python again soon (``SWITCH_INTERVAL_S``), and
    look for reference cycles less often (``GC_YOUNG_THRESHOLD``)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def one_at_a_time(limiter: anyio.CapacityLimiter) -> Callable[..., Awaitable[Any]]:
    """How services call the store from the event loop: in a worker thread, one call at a time
    (``limiter`` is shared with the RPC server's calls)."""

    async def store_call(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=limiter)

    return store_call


def store_server(store: SiteStore, secret: str, site_name: str, limiter: anyio.CapacityLimiter) -> RpcServer:
    """The daemon's RPC server over ``store``: every operation of the contract, and ping.

    Hot calls are answered on the event loop when the store is free at once (a thread hop costs
    more than the call); anything else, or a busy store, goes to a thread under ``limiter``."""
    handlers = handlers_for(store)
    handlers["ping"] = lambda _a: "pong"
    server = RpcServer(handlers, secret, site_name, limiter)

    def inline(handler: Callable[[Any], Any], args: Any) -> tuple[bool, Any]:
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            return False, None
        try:
            with store.db.without_waiting() as free:
                if not free:
                    return False, None
                try:
                    return True, handler(args)
                except apsw.BusyError:  # another process writes: wait for it in a thread
                    return False, None
        finally:
            limiter.release()

    server.inline = inline
    return server


def build_services(daemon: Daemon, store: SiteStore, store_call, pool: HookPool) -> list[Service]:
    """Every service of the daemon, in one place."""
    d = daemon.settings.daemon
    expiry = daemon.settings.launcher.session_expiry_sec
    processing = Processing(store, store_call, daemon.layout.apps, daemon.layout.data, pool)
    cleaning = Cleaning(store, store_call, daemon.layout.data)

    async def reap(_now: float) -> None:
        expired = await store_call(store.expire_sessions, expiry)
        if expired:
            log.warning("expired %d silent launcher session(s): %s", len(expired), ", ".join(expired))

    scheduler = make_scheduler(daemon.settings.scheduler.kind)
    modes = site_modes(daemon.settings.site.group_readable)
    scheduling = SchedulerService(daemon.layout.root, store, store_call, scheduler, modes)
    publishing = Publishing(daemon.layout.apps, daemon.name, store, store_call, d.apps_load_timeout_sec)
    transferring = Transferring(store, store_call, daemon.settings.transfers, daemon.layout.root)
    transfer_trigger = Trigger()
    transferring.wake = transfer_trigger.fire  # a finished task frees a slot for the next
    services = [
        Service("apps", publishing.step, d.apps_period_sec, publishing.detail, first=True),
        Service("processing", processing.step, d.processing_period_sec,
                lambda: {"hooks_run": processing.hooks_run, "released": processing.released}),
        Service("cleanup", cleaning.step, d.processing_period_sec,
                lambda: {"jobs_cleaned": cleaning.cleaned, "files_removed": cleaning.removed}),
        Service("session-reaper", reap, d.reaper_period_sec),
        Service(f"scheduler ({scheduler.name})", scheduling.step, d.scheduler_period_sec),
        Service("transfers", transferring.step, d.processing_period_sec, transferring.detail, transfer_trigger,
                transferring.run),
    ]  # fmt: skip
    if daemon.settings.sync.central:
        syncing = SyncService(daemon.layout.root, daemon.name, daemon.settings, store)
        publishing.on_change = syncing.trigger.fire  # new apps reach central at once
        services.append(
            Service("sync", syncing.step, daemon.settings.sync.period_sec, syncing.detail, syncing.trigger,
                    syncing.listen)
        )  # fmt: skip
    if daemon.settings.elastic.enabled:
        queue = ElasticService(daemon.settings, store, store_call, scheduler)
        services.append(Service("elastic-queue", queue.step, daemon.settings.elastic.period_sec, lambda: queue.detail))
    return services


def log_file(layout: SiteLayout) -> Path:
    return layout.log / "daemon.log"
