"""The fork window: the launcher forks its zygote and store process inside it, before any
thread starts and with no database open; a fork asked for where that order is broken raises,
and a zygote wanted after the window is a new interpreter by decision."""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.launch.forks import ForkedProcess, ForkOrderError, Forks
from balsamd.launch.leader.storeproc import ForkedStore
from balsamd.launch.python.handle import worker_environment
from balsamd.launch.python.zygote import Zygote
from balsamd.models import ClaimLimits
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from tests.conftest import make_jobs

WAIT = 20.0


def answer(fd: int) -> None:
    """What a test fork serves: its pid, once."""
    with socket.socket(fileno=fd) as sock:
        sock.sendall(str(os.getpid()).encode())


def forked_pid(forks: Forks) -> tuple[ForkedProcess, int]:
    process, sock = forks.fork(answer, {}, "a test fork")
    with sock:
        sock.settimeout(WAIT)
        told = int(sock.recv(64))
    assert process.wait(timeout=WAIT) == 0
    return process, told


@pytest.fixture
def other_thread() -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="not-the-launchers")
    thread.start()
    yield thread
    stop.set()
    thread.join()


# ----- the window works ---------------------------------------------------------------------


def test_inside_the_window_a_fork_of_this_process_runs_what_it_is_given() -> None:
    with Forks().window() as forks:
        process, told = forked_pid(forks)
    assert told == process.pid != os.getpid()


def test_the_window_releases_the_stores_connection_so_both_helpers_fork_and_the_store_works_after(
    store: SiteStore,
) -> None:
    make_jobs(store, 2)
    with Forks().window(release=[store.db]) as forks:
        zygote = Zygote.start(worker_environment(), forks)
        forked = ForkedStore.fork(store, forks)
    try:
        assert isinstance(zygote.process, ForkedProcess)
        assert forked is not None and isinstance(forked.process, ForkedProcess)
        session = forked.open_session(label="test")
        limits = ClaimLimits(max_jobs=10)
        assert len(claimed_jobs(forked.claim(session.id, limits), limits)) == 2
        assert store.get_session(session.id).id == session.id  # the store's own connection is back
    finally:
        zygote.close()
        if forked is not None:
            forked.close()


def test_after_the_window_closes_the_zygote_is_started_as_a_new_interpreter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forks = Forks()
    with forks.window():
        pass
    with caplog.at_level(logging.INFO, logger="balsamd.launcher"):
        zygote = Zygote.start(worker_environment(), forks)
    try:
        assert isinstance(zygote.process, subprocess.Popen)
        assert "starting the zygote as a new interpreter: the launcher's fork window is not open" in caplog.text
    finally:
        zygote.close()


def test_a_fork_the_system_refuses_falls_back_with_a_warning(
    store: SiteStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    with caplog.at_level(logging.WARNING, logger="balsamd.launcher"), Forks().window(release=[store.db]) as forks:
        zygote = Zygote.start(worker_environment(), forks)
        forked = ForkedStore.fork(store, forks)
    try:
        assert isinstance(zygote.process, subprocess.Popen)
        assert forked is None
        assert "could not fork the zygote" in caplog.text
        assert "could not fork the store process" in caplog.text
    finally:
        zygote.close()


# ----- breaking the order raises ------------------------------------------------------------


def test_a_fork_while_another_thread_runs_raises_naming_the_thread(other_thread: threading.Thread) -> None:
    with Forks().window() as forks, pytest.raises(ForkOrderError, match=r"other threads run .*not-the-launchers"):
        forks.fork(answer, {}, "the zygote")


def test_the_zygote_asked_for_in_the_window_while_a_thread_runs_raises_instead_of_a_slow_path(
    other_thread: threading.Thread,
) -> None:
    with Forks().window() as forks, pytest.raises(ForkOrderError, match="cannot fork the zygote"):
        Zygote.start(worker_environment(), forks)


def test_a_fork_while_a_database_is_open_raises_naming_its_file(tmp_path: Path) -> None:
    other = SiteStore(tmp_path / "other.db")
    try:
        with Forks().window() as forks, pytest.raises(ForkOrderError, match=r"SQLite databases are open .*other\.db"):
            ForkedStore.fork(other, forks)
    finally:
        other.close()


def test_no_fork_before_the_window_opens_nor_after_it_closes() -> None:
    forks = Forks()
    with pytest.raises(ForkOrderError, match="fork window is not opened yet"):
        forks.fork(answer, {}, "the store process")
    with forks.window():
        pass
    with pytest.raises(ForkOrderError, match="fork window is closed"):
        forks.fork(answer, {}, "the store process")
    with pytest.raises(ForkOrderError, match="opens once"), forks.window():
        pass
