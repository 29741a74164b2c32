"""How the daemon runs its services: each a small step repeated on a period, watched.

A step that raises is logged, counted and retried after a growing backoff; it never takes the
daemon down.  One that finds its disk full is not a fault of the service: that is said without
a traceback, once, then once a minute, then when a step goes through again.  Each service's
health (last tick, last error) is what `balsamd status` shows.
Stopping lets a step in progress finish: only the sleep between steps is interrupted.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio

from balsamd.diskspace import FullWatch, Notice, Say, is_full
from balsamd.rpc.protocol import ServiceHealth
from balsamd.store.errors import DiskFull

log = logging.getLogger("balsamd.daemon")

MAX_BACKOFF_SEC = 60.0


class Trigger:
    """Wakes a service before its period is over (e.g. on a NOTIFY from the central database)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def fire(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()


@dataclass
class Service:
    """``step(now)`` does one round of work; it is awaited every ``period`` seconds, or sooner
    when its trigger fires.  ``companion`` is a long-running task started beside it."""

    name: str
    step: Callable[[float], Awaitable[None]]
    period: float
    detail: Callable[[], dict[str, object]] | None = None  # shown in status
    trigger: Trigger | None = None
    companion: Callable[[anyio.Event], Coroutine[Any, Any, None]] | None = None
    # its first step is taken before the other services start: they rely on what it does
    first: bool = False


class Health:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.last_tick: float | None = None
        self.last_error = ""
        self.last_error_at: float | None = None
        self.failures_in_a_row = 0
        self.restarts = 0
        self.full = FullWatch()  # its steps finding the disk full

    def healthy(self, now: float) -> bool:
        if self.failures_in_a_row:
            return False
        if self.last_tick is None:
            return True  # not due yet
        return now - self.last_tick <= 3 * self.service.period + 30

    def report(self, now: float) -> ServiceHealth:
        return ServiceHealth(
            name=self.service.name, healthy=self.healthy(now), last_tick=self.last_tick,
            last_error=self.last_error, last_error_at=self.last_error_at, restarts=self.restarts,
            detail=self.service.detail() if self.service.detail else {},
        )  # fmt: skip


def backoff(failures: int, period: float) -> float:
    """Seconds to wait after the n-th failure in a row: doubling from the period, capped."""
    return min(MAX_BACKOFF_SEC, max(period, 1.0) * 2 ** min(failures - 1, 10))


async def run_service(health: Health, stop: anyio.Event, clock: Callable[[], float] = time.time) -> None:
    while not stop.is_set():
        wait = await run_step(health, clock)
        await _sleep(wait, stop, health.service.trigger)


async def run_step(health: Health, clock: Callable[[], float] = time.time) -> float:
    """One step of the service, its outcome recorded in ``health``; returns the seconds to wait
    before the next."""
    service = health.service
    try:
        with anyio.CancelScope(shield=True):
            await service.step(clock())
    except Exception as exc:
        health.failures_in_a_row += 1
        health.restarts += 1
        health.last_error = f"{type(exc).__name__}: {exc}"
        health.last_error_at = clock()
        wait = backoff(health.failures_in_a_row, service.period)
        if isinstance(exc, DiskFull) or is_full(exc):
            say_full(service.name, health.full.failed(time.monotonic()), exc, wait)
        else:
            log.error("service %s failed (retry in %.0f s):\n%s", service.name, wait, traceback.format_exc())
        return wait
    health.failures_in_a_row = 0
    health.last_tick = clock()
    if health.full.full:
        say_full(service.name, health.full.succeeded(time.monotonic()), None, service.period)
    return service.period


def say_full(name: str, say: Say | None, error: Exception | None, retry_sec: float) -> None:
    """Log what a FullWatch of a service decided, if anything."""
    if say is None:
        return
    if say.notice is Notice.SPACE_AGAIN:
        log.info("service %s goes on: its disk has space again", name)
    elif say.notice is Notice.FULL:
        log.warning("service %s waits for disk space: %s (retry in %.0f s)", name, error, retry_sec)
    else:
        log.warning("service %s still waits for disk space: %s (%d more failed step(s))", name, error, say.held)


async def _sleep(seconds: float, stop: anyio.Event, trigger: Trigger | None) -> None:
    """Until the time is up, the daemon stops, or the trigger fires."""
    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:

            async def until(waiter: Callable[[], Awaitable[None]]) -> None:
                await waiter()
                tg.cancel_scope.cancel()

            tg.start_soon(until, stop.wait)
            if trigger is not None:
                tg.start_soon(until, trigger.wait)
