"""The zygote: forks warm workers and reports how each one ended, whether it is a fork of the
launcher or a new interpreter."""

from __future__ import annotations

import os
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.launch.forks import ForkedProcess, Forks
from balsamd.launch.python.handle import worker_environment
from balsamd.launch.python.zygote import Zygote, describe_status

WAIT = 20.0


@pytest.fixture(params=["forked", "new interpreter"])
def zygote(request: pytest.FixtureRequest) -> Iterator[Zygote]:
    """The zygote as a fork of this process (in a fork window) and as a new interpreter."""
    if request.param == "forked":
        with Forks().window() as forks:
            z = Zygote.start(worker_environment(), forks)
        assert isinstance(z.process, ForkedProcess)
    else:
        z = Zygote.start(worker_environment(), None)
        assert isinstance(z.process, subprocess.Popen)
    yield z
    z.close()


def test_every_worker_that_ends_is_reported_not_only_the_first(zygote: Zygote, tmp_path: Path) -> None:
    # a child's end wakes the zygote with no message waiting: it must not then sit in a
    # blocking read until the launcher next writes
    forked = [zygote.fork(str(tmp_path / f"w{k}")) for k in range(3)]
    for pid, sock in forked:
        os.kill(pid, signal.SIGKILL)
        assert describe_status(zygote.status(pid, timeout=WAIT)) == "killed by SIGKILL"
        sock.close()


def test_a_worker_ending_on_its_own_is_reported_with_its_exit_code(zygote: Zygote, tmp_path: Path) -> None:
    pid, sock = zygote.fork(str(tmp_path / "w"))
    sock.close()  # the worker's socket closing is its cue to exit
    assert describe_status(zygote.status(pid, timeout=WAIT)) == "exit code 0"


def test_workers_of_a_forked_zygote_keep_none_of_the_launchers_descriptors_open(tmp_path: Path) -> None:
    # like the watchdog's pipe: it must see the launcher's end close while workers still run
    read_end, write_end = os.pipe()
    with Forks().window() as forks:
        z = Zygote.start(worker_environment(), forks)
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
