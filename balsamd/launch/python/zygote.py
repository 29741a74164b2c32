"""A process that has imported what a warm worker needs and forks workers from itself.

Starting a worker by forking this one takes a millisecond and no imports: on a node of a
hundred cores that is a hundred workers without a hundred interpreters reading the same
modules from a parallel filesystem, and the first run starts as soon as its claim arrives.

The zygote is a fork of the launcher itself when the launcher runs no other thread and holds
no SQLite database open (a launcher on the store closes its connection meanwhile): it has
imported everything a worker needs, so the first worker starts some 80 ms sooner than from a
new interpreter.  Otherwise it is started as ``python -m balsamd.launch.python.zygote``.

The launcher holds a socket to the zygote.  It sends ``Fork`` with the new worker's socket
attached (SCM_RIGHTS); the zygote forks, answers ``Forked`` with the pid, and later reports
``Exited`` with the wait status.  The zygote ends when the launcher closes its socket.

Usage (started by Zygote below): python -m balsamd.launch.python.zygote FD
"""

from __future__ import annotations

import array
import contextlib
import gc
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable

import msgspec

from balsamd.launch.python import protocol as pp
from balsamd.launch.python import worker


class Fork(msgspec.Struct, tag=True, array_like=True):
    base: str


class Forked(msgspec.Struct, tag=True, array_like=True):
    pid: int


class Exited(msgspec.Struct, tag=True, array_like=True):
    pid: int
    status: int  # as os.waitpid gives it


_decode_fork = msgspec.msgpack.Decoder(Fork).decode
_decode_reply = msgspec.msgpack.Decoder(Forked | Exited).decode


def serve_forks(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector through the pipe
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    buffer = pp.FrameBuffer()
    fds: list[int] = []  # received with frames not yet complete
    while True:
        selector.select()
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 4096)
        _report_exits(control)
        try:
            data, new_fds = _recv_fds_nowait(control)
        except BlockingIOError:
            continue
        if not data:
            return
        buffer.feed(data)
        fds.extend(new_fds)
        for raw in buffer.frames():
            worker_fd = fds.pop(0)
            pid = os.fork()
            if pid == 0:
                _become_worker(control, selector, wake_r, wake_w, worker_fd, _decode_fork(raw).base)
            os.close(worker_fd)
            control.sendall(pp.frame(Forked(pid)))


def _recv_fds_nowait(control: socket.socket) -> tuple[bytes, list[int]]:
    """What has arrived, with the descriptors attached; BlockingIOError if nothing has.

    Not ``socket.recv_fds``: before Python 3.12 it drops its flags and would block here when
    a child's end, not a message, woke the loop, leaving that end unreported."""
    fds = array.array("i")
    data, ancdata, _flags, _addr = control.recvmsg(1 << 16, socket.CMSG_LEN(16 * fds.itemsize), socket.MSG_DONTWAIT)
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def _report_exits(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        control.sendall(pp.frame(Exited(pid, status)))


def _become_worker(control, selector, wake_r: int, wake_w: int, fd: int, base: str) -> None:
    """In the forked child: drop the zygote's state and serve as a worker until the end."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        selector.close()
        control.close()
        os.close(wake_r)
        os.close(wake_w)
        os.setsid()  # its own process group: stopping a run stops what the run started
        code = worker.main(fd, base)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def start_with_socket(
    module: str, args: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start ``python -m MODULE FD ARGS...`` in a session of its own, FD being its end of a
    socket pair; returns the process and this end."""
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


def fork_self(env: dict[str, str]) -> tuple[ForkedProcess, socket.socket] | None:
    """This process forked into a zygote, or None where a fork is not safe (see fork_child)."""
    return fork_child(serve_forks, env)


def fork_child(serve: Callable[[int], None], env: dict[str, str]) -> tuple[ForkedProcess, socket.socket] | None:
    """A fork of this process that leaves it (``leave_parent``) and runs ``serve`` on its end of
    a socket pair, or None when a fork is not safe now.

    Not while this process runs other threads: a fork copies their locks in whatever state they
    are, and nobody would ever release them.  Nor while it holds an SQLite database open (the
    site's store, whenever the launcher works on it directly): SQLite's record of the locks this
    process holds would be copied, and an app that opens the same database from a worker would
    trust it."""
    if not fork_safe():
        return None
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # else the child would write what was still buffered again
    ours, theirs = socket.socketpair()
    pid = os.fork()
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


def fork_safe() -> bool:
    """Whether a fork of this process would inherit no other thread's locks and no SQLite locks."""
    return threading.active_count() == 1 and not _sqlite_files_open()


def _sqlite_files_open() -> bool:
    import apsw  # the store's driver: what a launcher of this process could have open

    return any(connection.filename for connection in apsw.connections())


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
    sys.stdin = sys.__stdin__ = os.fdopen(0, closefd=False)
    sys.stdout = sys.__stdout__ = os.fdopen(1, "w", closefd=False)
    sys.stderr = sys.__stderr__ = os.fdopen(2, "w", buffering=1, closefd=False)
    for sig in signal.valid_signals():
        if callable(signal.getsignal(sig)):
            signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.setsid()
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


class Zygote:
    """The launcher's end: start the zygote, fork workers, learn how they ended."""

    def __init__(self, env: dict[str, str]) -> None:
        started = fork_self(env)
        self.process: ForkedProcess | subprocess.Popen[bytes]
        self.process, self.sock = started or start_with_socket("balsamd.launch.python.zygote", [], env)
        self.buffer = pp.FrameBuffer()
        self.exits: dict[int, int] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def fork(self, base: str) -> tuple[int, socket.socket]:
        """A new worker's pid and the launcher's socket to it; OSError if the zygote is gone."""
        ours, theirs = socket.socketpair()
        try:
            socket.send_fds(self.sock, [pp.frame(Fork(base))], [theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        while True:
            for reply in self._replies(block=True):
                if isinstance(reply, Forked):
                    return reply.pid, ours

    def status(self, pid: int, timeout: float = 1.0) -> int | None:
        """The wait status of an ended worker, waiting for the news at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while pid not in self.exits and time.monotonic() < deadline:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                list(self._replies(block=True))
            except (TimeoutError, OSError):
                break
            finally:
                self.sock.settimeout(None)
        return self.exits.pop(pid, None)

    def _replies(self, block: bool) -> list[Forked | Exited]:
        data = self.sock.recv(1 << 16, 0 if block else socket.MSG_DONTWAIT)
        if not data:
            raise ConnectionResetError("the zygote exited")
        self.buffer.feed(data)
        replies = [_decode_reply(raw) for raw in self.buffer.frames()]
        for reply in replies:
            if isinstance(reply, Exited):
                self.exits[reply.pid] = reply.status
        return replies

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def describe_status(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


if __name__ == "__main__":
    serve_forks(int(sys.argv[1]))
