"""Short command runs make their workdir and job.out only if they use them (LazyFiles)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.launch.running import lazyfiles
from balsamd.launch.running.lazyfiles import SCRATCH_PREFIX, LazyFiles, LazyRun


@pytest.fixture
def files(tmp_path: Path) -> Iterator[LazyFiles]:
    made = LazyFiles(str(tmp_path / "data" / ".workers"))
    yield made
    made.close()


def run(files: LazyFiles, workdir: Path, script: str = "") -> tuple[LazyRun, bool]:
    """A real process in the run's cwd with its stdout and stderr on the spill file."""
    lazy = files.begin(str(workdir))
    if script:
        subprocess.run(["sh", "-c", script], cwd=lazy.cwd, stdout=lazy.spill_fd, stderr=subprocess.STDOUT, check=True)
    return lazy, files.end(lazy, str(workdir), str(workdir / "job.out"))


def scratch_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"{SCRATCH_PREFIX}*"))


def test_a_silent_run_makes_no_workdir_and_its_scratch_serves_the_next_run(files: LazyFiles, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, wrote = run(files, data / "runs" / "1")
    assert not wrote
    assert first.in_scratch
    assert Path(first.cwd).parent == data / "runs"  # beside the workdir, not elsewhere
    second, _ = run(files, data / "runs" / "2")
    assert (second.cwd, second.spill) == (first.cwd, first.spill)
    assert not (data / "runs" / "1").exists() and not (data / "runs" / "2").exists()


def test_output_becomes_job_out_in_a_workdir_made_for_it(files: LazyFiles, tmp_path: Path) -> None:
    workdir = tmp_path / "data" / "runs" / "1"
    lazy, wrote = run(files, workdir, "echo to stdout; echo to stderr >&2")
    assert wrote
    assert (workdir / "job.out").read_text() == "to stdout\nto stderr\n"
    assert os.listdir(workdir) == ["job.out"]
    nxt, wrote = run(files, tmp_path / "data" / "runs" / "2")
    assert not wrote and nxt.spill != lazy.spill  # the written spill file is the job's now


def test_files_left_in_the_scratch_directory_become_the_workdir(files: LazyFiles, tmp_path: Path) -> None:
    workdir = tmp_path / "data" / "runs" / "1"
    lazy, wrote = run(files, workdir, "echo 42 > answer")
    assert not wrote
    assert sorted(os.listdir(workdir)) == ["answer"]
    assert (workdir / "answer").read_text() == "42\n"
    assert not Path(lazy.cwd).exists()
    again, _ = run(files, tmp_path / "data" / "runs" / "2")
    assert again.cwd != lazy.cwd  # a fresh scratch directory took its place


def test_relative_paths_name_what_they_would_from_the_workdir(files: LazyFiles, tmp_path: Path) -> None:
    runs = tmp_path / "data" / "runs"
    runs.mkdir(parents=True)
    (runs / "common.in").write_text("shared input\n")
    workdir = runs / "1"
    _, wrote = run(files, workdir, "cat ../common.in")
    assert wrote
    assert (workdir / "job.out").read_text() == "shared input\n"


def test_a_run_whose_workdir_exists_runs_in_it(files: LazyFiles, tmp_path: Path) -> None:
    workdir = tmp_path / "data" / "staged"
    workdir.mkdir(parents=True)
    (workdir / "input").write_text("staged\n")
    lazy, wrote = run(files, workdir, "cp input output")
    assert (lazy.cwd, lazy.in_scratch, wrote) == (str(workdir), False, False)
    assert sorted(os.listdir(workdir)) == ["input", "output"]


def test_two_runs_of_one_workdir_both_keep_what_they_left(files: LazyFiles, tmp_path: Path) -> None:
    workdir = tmp_path / "data" / "shared"
    a, b = files.begin(str(workdir)), files.begin(str(workdir))
    assert a.cwd != b.cwd
    Path(a.cwd, "from-a").write_text("a")
    Path(b.cwd, "from-b").write_text("b")
    files.end(a, str(workdir), str(workdir / "job.out"))
    files.end(b, str(workdir), str(workdir / "job.out"))
    assert sorted(os.listdir(workdir)) == ["from-a", "from-b"]
    assert scratch_dirs(tmp_path) == []  # both went with what they held


def test_close_removes_the_idle_scratch_directories_and_spill_files(tmp_path: Path) -> None:
    files = LazyFiles(str(tmp_path / "data" / ".workers"))
    runs = [files.begin(str(tmp_path / "data" / "runs" / str(i))) for i in range(3)]
    for i, lazy in enumerate(runs):
        files.end(lazy, str(tmp_path / "data" / "runs" / str(i)), "unused")
    assert len(scratch_dirs(tmp_path)) == 3
    files.close()
    assert scratch_dirs(tmp_path) == []
    assert os.listdir(tmp_path / "data" / ".workers") == []
    assert os.listdir(tmp_path / "data" / "runs") == []


def test_runs_spread_over_many_parents_keep_few_idle_scratch_directories(
    files: LazyFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lazyfiles, "KEEP_IDLE_SCRATCH", 4)
    for i in range(10):
        run(files, tmp_path / "data" / f"case{i}" / "run")
    left = scratch_dirs(tmp_path)
    assert [p.parent.name for p in left] == [f"case{i}" for i in range(6, 10)]  # the newest
    run(files, tmp_path / "data" / "case7" / "run")
    assert len(scratch_dirs(tmp_path)) == 4  # reused, not made


def test_names_left_by_an_earlier_launcher_are_passed_over(tmp_path: Path) -> None:
    spool = tmp_path / "data" / ".workers"
    files = LazyFiles(str(spool))
    probe = files.begin(str(tmp_path / "data" / "runs" / "0"))  # learns the names this launcher uses
    files.end(probe, str(tmp_path / "data" / "runs" / "0"), "unused")
    files.close()
    spool.mkdir(exist_ok=True)
    Path(probe.spill).write_text("an earlier launcher's output")
    Path(probe.cwd).mkdir()
    Path(probe.cwd, "kept").write_text("k")
    again = LazyFiles(str(spool))  # same host, same pid: the same names come up first
    lazy = again.begin(str(tmp_path / "data" / "runs" / "1"))
    assert (lazy.spill, lazy.cwd) != (probe.spill, probe.cwd)
    again.end(lazy, str(tmp_path / "data" / "runs" / "1"), "unused")
    again.close()
    assert Path(probe.spill).read_text() == "an earlier launcher's output"
    assert os.listdir(probe.cwd) == ["kept"]


def test_a_run_that_removes_its_own_directory_leaves_nothing_behind(files: LazyFiles, tmp_path: Path) -> None:
    workdir = tmp_path / "data" / "runs" / "1"
    lazy, wrote = run(files, workdir, 'cd .. && rmdir "$OLDPWD"')
    assert not wrote
    assert not workdir.exists() and not Path(lazy.cwd).exists()
    again, _ = run(files, tmp_path / "data" / "runs" / "2")
    assert Path(again.cwd).parent == workdir.parent and again.cwd != lazy.cwd


def test_a_spill_file_that_cannot_be_made_gives_its_scratch_directory_back(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".workers").write_text("a file where the spool directory belongs")
    files = LazyFiles(str(tmp_path / "data" / ".workers"))
    with pytest.raises(OSError):
        files.begin(str(tmp_path / "data" / "runs" / "1"))
    files.close()
    assert scratch_dirs(tmp_path) == []


def test_a_run_that_puts_a_file_where_its_workdir_belongs_has_its_files_put_aside(
    files: LazyFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workdir = tmp_path / "data" / "runs" / "1"
    lazy, _ = run(files, workdir, "echo result > result && echo in the way > ../1")
    assert workdir.read_text() == "in the way\n"
    assert Path(f"{lazy.cwd}.left", "result").read_text() == "result\n"
    assert f"could not move result into {workdir}" in caplog.text
