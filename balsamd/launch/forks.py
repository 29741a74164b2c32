"""The launcher's forks of itself, and the one object that keeps them in order.

Two helper processes are forks of the launcher: the zygote (``python/zygote.py``), which has
imported everything a warm worker needs and forks workers from itself, and the store process
(``leader/storeproc.py``), which answers the launcher's store calls beside its loop.  A fork
copies the whole process, so it is made only while the launcher

- runs no other thread: a fork copies other threads' locks in whatever state they are, and
  nobody would ever release them in the child;
- holds no SQLite database open: the child would copy SQLite's record of the locks this
  process holds, and an app that opens the same database from a worker would trust it.

:class:`Forks` owns that order.  The launcher opens its window before it starts any thread,
with the store's connection released for the window; what is forked inside is checked first,
and a fork asked for while the order is broken raises :class:`ForkOrderError` naming what
broke it.  After the window closes nothing is forked: a zygote wanted later is started as a
new interpreter (``start_with_socket``), by the caller's decision.  A fork that fails for the
system's reasons (``OSError``) is the caller's to fall back from.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol


class ForkOrderError(RuntimeError):
    """A fork of the launcher was asked for where the order of forks and threads is broken."""


class Releasable(Protocol):
    """A database connection that can be closed for a while (``balsamd.store.db.Database``)."""

    def released(self) -> AbstractContextManager[None]: ...


class _Window(enum.Enum):
    NOT_OPENED = "not opened yet"
    OPEN = "open"
    CLOSED = "closed"


class Forks:
    """The one owner of this process's forks of itself: a window, opened once, inside which
    forks are made while nothing else runs."""

    def __init__(self) -> None:
        self._window = _Window.NOT_OPENED

    @property
    def open(self) -> bool:
        """Whether forks may be asked for now (they are still checked when they are)."""
        return self._window is _Window.OPEN

    @contextlib.contextmanager
    def window(self, release: Sequence[Releasable] = ()) -> Iterator[Forks]:
        """Forks may be made inside the block; ``release``'s connections are closed for it.

        Open it before starting any thread, and start threads after it: it opens once."""
        if self._window is not _Window.NOT_OPENED:
            raise ForkOrderError(f"the fork window opens once, and this one is {self._window.value}")
        with contextlib.ExitStack() as released:
            for database in release:
                released.enter_context(database.released())
            self._window = _Window.OPEN
            try:
                yield self
            finally:
                self._window = _Window.CLOSED

    def fork(self, serve: Callable[[int], None], env: dict[str, str], what: str) -> tuple[ForkedProcess, socket.socket]:
        """A fork of this process (``what``, for messages) that leaves it (``leave_parent``) and
        runs ``serve`` on its end of a socket pair; returns the child and this end.

        ForkOrderError where the order is broken; OSError where the system refuses the fork."""
        self.check(what)
        return _fork_child(serve, env)

    def check(self, what: str) -> None:
        """Raise ForkOrderError, saying what broke the order, unless ``what`` may be forked now."""
        if self._window is not _Window.OPEN:
            raise ForkOrderError(
                f"cannot fork {what}: the launcher's fork window is {self._window.value}; forks of the "
                "launcher are made inside Forks.window(), before the launcher starts any thread"
            )
        others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        if others:
            raise ForkOrderError(
                f"cannot fork {what}: other threads run in this process ({', '.join(others)}) and the "
                "child would inherit their locks held forever; fork before starting them"
            )
        databases = _open_databases()
        if databases:
            raise ForkOrderError(
                f"cannot fork {what}: SQLite databases are open in this process ({', '.join(databases)}) "
                "and the child would inherit SQLite's record of their locks; release them for the "
                "window (Forks.window(release=...)) or close them"
            )


def _open_databases() -> list[str]:
    """Files of the SQLite connections open in this process; connections nobody refers to any
    more are collected first, so that only ones in use count."""
    import apsw  # the store's driver: what a launcher of this process could have open

    files = [c.filename for c in apsw.connections() if c.filename]
    if files:
        gc.collect()  # a connection caught in a reference cycle closes only when collected
        files = [c.filename for c in apsw.connections() if c.filename]
    return files


def _fork_child(serve: Callable[[int], None], env: dict[str, str]) -> tuple[ForkedProcess, socket.socket]:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # else the child would write what was still buffered again
    ours, theirs = socket.socketpair()
    try:
        pid = os.fork()
    except BaseException:
        ours.close()
        theirs.close()
        raise
    if pid == 0:
        code = 1
        try:
            fd = theirs.detach()
            leave_parent(fd, env)
            serve(fd)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    return ForkedProcess(pid), ours


def leave_parent(fd: int, env: dict[str, str]) -> None:
    """In the forked child: keep none of the launcher's files, handlers or session, and
    start workers as a new interpreter would: standard streams on fds 0-2, no log handlers."""
    # The launcher's objects are never finalized here (they would close descriptors by number
    # after these are reused), and its own descriptors are closed: a worker must not hold the
    # watchdog's pipe or the store's files open.
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
    logging.getLogger().setLevel(logging.WARNING)
    gc.freeze()
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = sys.__stdin__ = os.fdopen(0, closefd=False)  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = os.fdopen(1, "w", closefd=False)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = os.fdopen(2, "w", buffering=1, closefd=False)  # type: ignore[misc]
    for sig in signal.valid_signals():
        if callable(signal.getsignal(sig)):
            signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.setsid()
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


class ForkedProcess:
    """What the launcher needs of a child it forked: like ``subprocess.Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG if deadline is not None else 0)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            elif deadline is not None:
                time.sleep(0.001)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def start_with_socket(
    module: str, args: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """What is not forked: ``python -m MODULE FD ARGS...`` started in a session of its own, FD
    being its end of a socket pair; returns the process and this end."""
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(theirs.fileno()), *args],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours
