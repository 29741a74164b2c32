"""The zygote: forks warm workers and reports how each one ended."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

from balsamd.launch.python import zygote as zygote_module
from balsamd.launch.python.handle import worker_environment
from balsamd.launch.python.zygote import ForkedProcess, Zygote, describe_status
from balsamd.store.store import SiteStore

WAIT = 20.0


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote(worker_environment())
    yield z
    z.close()


def test_every_worker_that_ends_is_reported_not_only_the_first(zygote: Zygote, tmp_path) -> None:
    # a child's end wakes the zygote with no message waiting: it must not then sit in a
    # blocking read until the launcher next writes
    forked = [zygote.fork(str(tmp_path / f"w{k}")) for k in range(3)]
    for pid, sock in forked:
        os.kill(pid, signal.SIGKILL)
        assert describe_status(zygote.status(pid, timeout=WAIT)) == "killed by SIGKILL"
        sock.close()


def test_a_worker_ending_on_its_own_is_reported_with_its_exit_code(zygote: Zygote, tmp_path) -> None:
    pid, sock = zygote.fork(str(tmp_path / "w"))
    sock.close()  # the worker's socket closing is its cue to exit
    assert describe_status(zygote.status(pid, timeout=WAIT)) == "exit code 0"


def test_a_launcher_running_no_other_thread_and_holding_no_database_forks_itself_into_the_zygote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(zygote_module, "_sqlite_files_open", lambda: False)  # whatever other tests left open
    z = Zygote(worker_environment())
    try:
        assert isinstance(z.process, ForkedProcess)  # no new interpreter, no imports to wait for
    finally:
        z.close()


def test_a_launcher_holding_a_database_open_starts_the_zygote_as_a_new_interpreter(tmp_path) -> None:
    # a fork would copy SQLite's record of this process's locks into every worker
    store = SiteStore(tmp_path / "store.db")
    try:
        z = Zygote(worker_environment())
    finally:
        store.close()
    try:
        assert isinstance(z.process, subprocess.Popen)
    finally:
        z.close()


def test_with_another_thread_running_the_zygote_is_a_new_interpreter() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        z = Zygote(worker_environment())
    finally:
        stop.set()
        other.join()
    try:
        assert isinstance(z.process, subprocess.Popen)
        pid, sock = z.fork("unused")
        sock.close()
        assert describe_status(z.status(pid, timeout=WAIT)) == "exit code 0"
    finally:
        z.close()


def test_workers_of_a_forked_zygote_keep_none_of_the_launchers_descriptors_open(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # like the watchdog's pipe: it must see the launcher's end close while workers still run
    monkeypatch.setattr(zygote_module, "_sqlite_files_open", lambda: False)
    read_end, write_end = os.pipe()
    z = Zygote(worker_environment())
    try:
        assert isinstance(z.process, ForkedProcess)
        pid, sock = z.fork(str(tmp_path / "w"))
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert f"pipe:[{os.fstat(write_end).st_ino}]" not in held
        os.close(write_end)
        readable, _, _ = select.select([read_end], [], [], WAIT)
        assert readable and os.read(read_end, 1) == b""  # end of file now, not when the worker exits
        sock.close()
        z.status(pid, timeout=WAIT)
    finally:
        os.close(read_end)
        z.close()
