"""The launcher's calls on its job source, made from a thread of their own.

Recording a batch of state reports takes the store milliseconds; short runs end faster than
that.  So the launcher hands its calls to a courier and goes on starting runs: the store's
work (SQLite releases the GIL) overlaps the launcher's.  Calls are made one at a time, in the
order they were handed over, except that an urgent one (a claim the runs are waiting for) goes
before those still waiting.  Each finished call wakes the launcher's wait through a pipe.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Call(enum.Enum):
    """The kinds of call a launcher makes on its job source."""

    CLAIM = "claim"
    REPORT = "report"
    HEARTBEAT = "heartbeat"
    RELEASE = "release"


@dataclass
class Delivery:
    """A finished call: what was asked (``kind`` and ``request``) and its result or error."""

    kind: Call
    request: Any
    result: Any = None
    error: BaseException | None = None


class Courier:
    def __init__(self) -> None:
        self._calls: collections.deque[tuple[Call, Any, Callable[[], Any]] | None] = collections.deque()
        self._has_calls = threading.Condition()
        self._done: collections.deque[Delivery] = collections.deque()
        self._pending: collections.Counter[Call] = collections.Counter()
        self._idle = threading.Condition()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe already wakes the launcher
        self._thread = threading.Thread(target=self._serve, name="balsamd-courier", daemon=True)

    def fileno(self) -> int:
        """Readable when a call has finished."""
        return self._wake_r

    def send(self, kind: Call, request: Any, call: Callable[[], Any], urgent: bool = False) -> None:
        if self._thread.ident is None:
            self._thread.start()  # on first use: a launcher that never runs leaves no thread
        with self._idle:
            self._pending[kind] += 1
        self._put((kind, request, call), urgent)

    def _put(self, item: tuple[Call, Any, Callable[[], Any]] | None, urgent: bool = False) -> None:
        with self._has_calls:
            if urgent:
                self._calls.appendleft(item)
            else:
                self._calls.append(item)
            self._has_calls.notify()

    def _take(self) -> tuple[Call, Any, Callable[[], Any]] | None:
        with self._has_calls:
            self._has_calls.wait_for(lambda: bool(self._calls))
            return self._calls.popleft()

    def pending(self, kind: Call | None = None) -> int:
        """Calls handed over and not yet collected (of one kind)."""
        with self._idle:
            return self._pending[kind] if kind else self._pending.total()

    def collect(self) -> list[Delivery]:
        """The calls finished since the last collect, in order."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        done = []
        with self._idle:
            while self._done:
                delivery = self._done.popleft()
                self._pending[delivery.kind] -= 1
                done.append(delivery)
        return done

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every call handed over has finished (not necessarily been collected)."""
        with self._idle:
            return self._idle.wait_for(lambda: len(self._done) == self._pending.total(), timeout)

    def close(self) -> None:
        if self._thread.ident is not None:
            self._put(None)
            self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _serve(self) -> None:
        while (item := self._take()) is not None:
            kind, request, call = item
            delivery = Delivery(kind, request)
            try:
                delivery.result = call()
            except BaseException as exc:  # handed back to the launcher's thread, which decides
                delivery.error = exc
            with self._idle:
                self._done.append(delivery)
                self._idle.notify_all()
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")
