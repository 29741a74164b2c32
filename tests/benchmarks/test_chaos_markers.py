"""What chaos jobs write from inside their runs, run for real: the bash script of command and
MPI jobs, the functions of Python jobs, and the kernel's locks that tell concurrent runs apart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.chaos.markers import SCRIPT, Run, parse, python_writers, read


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    (tmp_path / "markers").mkdir()
    return tmp_path / "markers"


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "marked.sh"
    path.write_text(SCRIPT)
    return path


def start(script: Path, markers: Path, key: str, nap: str = "0", code: str = "0", **env: str):
    return subprocess.Popen(
        ["/bin/bash", str(script), str(markers), key, nap, code], env={**os.environ, **env}, start_new_session=True
    )


def wait_for_lines(markers: Path, key: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while not (markers / f"{key}.log").exists() or len((markers / f"{key}.log").read_text().splitlines()) < count:
        assert time.monotonic() < deadline, f"{key}: fewer than {count} marker lines after 30 s"
        time.sleep(0.01)


def test_a_run_writes_a_start_and_an_end_and_exits_with_the_code_asked_for(script: Path, markers: Path) -> None:
    proc = start(script, markers, "job1", nap="0.05", code="3")
    assert proc.wait(timeout=30) == 3
    [run] = read(markers, "job1").runs
    assert run.rank == 0 and run.pid == proc.pid and run.exclusive
    assert run.ended is not None and run.ended - run.started >= 0.05
    assert run.host == Path("/proc/sys/kernel/hostname").read_text().strip()


def test_a_second_run_while_the_first_holds_the_lock_says_so(script: Path, markers: Path) -> None:
    first = start(script, markers, "job1", nap="2")
    wait_for_lines(markers, "job1", 1)
    second = start(script, markers, "job1")
    assert second.wait(timeout=30) == 0
    assert first.wait(timeout=30) == 0
    runs = {r.pid: r for r in read(markers, "job1").runs}
    assert runs[first.pid].exclusive and not runs[second.pid].exclusive
    assert all(r.ended is not None for r in runs.values())


def test_a_run_killed_with_its_process_group_frees_the_lock_for_the_next(script: Path, markers: Path) -> None:
    killed = start(script, markers, "job1", nap="30")
    wait_for_lines(markers, "job1", 1)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    again = start(script, markers, "job1")
    assert again.wait(timeout=30) == 0
    first, second = read(markers, "job1").runs
    assert first.ended is None  # it died mid-run
    assert second.exclusive and second.ended is not None


def test_a_run_whose_shell_died_but_whose_child_lives_still_holds_the_lock(script: Path, markers: Path) -> None:
    """The nap is part of the run: while it lives, the run is not over."""
    orphaned = start(script, markers, "job1", nap="30")
    wait_for_lines(markers, "job1", 1)
    os.kill(orphaned.pid, signal.SIGKILL)
    orphaned.wait(timeout=30)
    try:
        assert start(script, markers, "job1").wait(timeout=30) == 0
        assert [r.exclusive for r in read(markers, "job1").runs] == [True, False]
    finally:
        os.killpg(orphaned.pid, signal.SIGKILL)


def test_each_rank_of_an_mpi_run_has_its_own_lock_and_lines(script: Path, markers: Path) -> None:
    ranks = [start(script, markers, "job1", nap="0.2", PMI_RANK=str(rank)) for rank in (0, 1)]
    assert [p.wait(timeout=30) for p in ranks] == [0, 0]
    runs = read(markers, "job1").runs
    assert sorted(r.rank for r in runs) == [0, 1]
    assert all(r.exclusive and r.ended is not None for r in runs)


def test_a_python_job_marks_its_work_and_a_run_inside_a_run_finds_the_lock_held(markers: Path) -> None:
    module: dict[str, object] = {}
    exec(python_writers(markers), module)
    marked = module["marked"]
    with marked("job2"), marked("job2"):  # type: ignore[operator]
        pass
    outer, inner = sorted(read(markers, "job2").runs, key=lambda r: r.started)
    assert outer.exclusive and not inner.exclusive
    assert outer.pid == inner.pid == os.getpid()
    assert inner.ended is not None and outer.ended is not None and outer.ended >= inner.ended


def test_reading_pairs_each_end_with_its_process_and_keeps_what_it_cannot_read() -> None:
    text = "\n".join([
        "start 0 n1 10 100,5 held",  # bash writes the locale's decimal separator
        "start 0 n1 11 101.0 busy",
        "end 0 n1 10 102.0",
        "garbage",
        "end 0 n1 99 103.0",  # no start of that process
    ])  # fmt: skip
    found = parse(text)
    assert found.runs == [
        Run(rank=0, host="n1", pid=10, started=100.5, ended=102.0, exclusive=True),
        Run(rank=0, host="n1", pid=11, started=101.0, ended=None, exclusive=False),
    ]
    assert found.unreadable == ["garbage", "end 0 n1 99 103.0"]
