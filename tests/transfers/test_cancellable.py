"""Running a transfer program that stops when the daemon does: its exit code and output, and
a cancellation that ends it and what it started."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from balsamd.transfers import cancellable


def test_the_exit_code_and_the_output_of_the_program(tmp_path: Path) -> None:
    output = tmp_path / "out"

    code = cancellable.run(["sh", "-c", "echo said; echo warned >&2; exit 3"], str(output), threading.Event())

    assert code == 3
    assert output.read_text().split() == ["said", "warned"]


def test_meanwhile_runs_while_the_program_does(tmp_path: Path) -> None:
    started = tmp_path / "started"
    seen: list[bool] = []

    def meanwhile() -> None:  # sees what the running program did
        for _ in range(100):
            if started.exists():
                break
            time.sleep(0.05)
        seen.append(started.exists())

    code = cancellable.run(["sh", "-c", f"touch {started}; sleep 0.5"], str(tmp_path / "out"), threading.Event(),
                           meanwhile)  # fmt: skip

    assert code == 0 and seen == [True]


def test_a_cancel_ends_the_program_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cancel = threading.Event()
    script = f"sleep 60 & echo $$ $! > {pids}; wait"
    timer = threading.Timer(0.5, cancel.set)
    timer.start()

    code = cancellable.run(["sh", "-c", script], str(tmp_path / "out"), cancel)

    timer.join()
    assert code is None
    for pid in map(int, pids.read_text().split()):
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not running
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
