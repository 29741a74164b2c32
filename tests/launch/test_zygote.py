"""The zygote: forks warm workers and reports how each one ended."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from balsamd.launch.pyworkers import worker_environment
from balsamd.launch.zygote import Zygote, describe_status

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
