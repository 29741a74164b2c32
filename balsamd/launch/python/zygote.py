"""The zygote: a fork server that has imported what a warm worker needs and forks workers.

Starting a worker by forking this one takes a millisecond and no imports: on a node of a
hundred cores that is a hundred workers without a hundred interpreters reading the same
modules from a parallel filesystem, and the first run starts as soon as its claim arrives.

The zygote is a fork of the launcher itself when the launcher asks for it inside its fork
window (``launch/forks.py``: no other thread runs, no SQLite database is open): it has
imported everything a worker needs, so the first worker starts some 80 ms sooner than from a
new interpreter.  Asked for outside the window, it is started as
``python -m balsamd.launch.python.zygote``.

The launcher holds a socket to the zygote.  It sends ``Fork`` with the new worker's socket
attached (SCM_RIGHTS); the zygote forks, answers ``Forked`` with the pid, and later reports
``Exited`` with the wait status.  The zygote ends when the launcher closes its socket.

Usage (started by Zygote below): python -m balsamd.launch.python.zygote FD
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

import msgspec

from balsamd.launch.forks import ForkedProcess, Forks, start_with_socket
from balsamd.launch.python import protocol as pp
from balsamd.launch.python import worker

log = logging.getLogger("balsamd.launcher")


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


def _become_worker(
    control: socket.socket, selector: selectors.BaseSelector, wake_r: int, wake_w: int, fd: int, base: str
) -> None:
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


class Zygote:
    """The launcher's end: start the zygote, fork workers, learn how they ended."""

    def __init__(self, process: ForkedProcess | subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self.buffer = pp.FrameBuffer()
        self.exits: dict[int, int] = {}

    @classmethod
    def start(cls, env: dict[str, str], forks: Forks | None) -> Zygote:
        """A fork of this process while ``forks``' window is open, else a new interpreter.

        ForkOrderError from ``forks`` if the window is open but the order broken; a fork the
        system refuses falls back to a new interpreter, with a warning."""
        if forks is not None and forks.open:
            try:
                return cls(*forks.fork(serve_forks, env, "the zygote"))
            except OSError as exc:
                log.warning("could not fork the zygote (%s); starting it as a new interpreter", exc)
        else:
            log.info("starting the zygote as a new interpreter: the launcher's fork window is not open")
        return cls(*start_with_socket("balsamd.launch.python.zygote", [], env))

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
