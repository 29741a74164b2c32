"""Where a warm worker's run writes: eagerly, or for short runs only if it uses its files."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.launch.python import dirwatch
from balsamd.launch.python import protocol as pp
from balsamd.launch.python.files import Files
from balsamd.models import Job


@contextlib.contextmanager
def worker_files(tmp_path: Path) -> Iterator[Files]:
    """Files of a worker in this process; fds 1 and 2 and the cwd are restored afterwards."""
    saved = os.dup(1), os.dup(2)
    cwd = os.getcwd()
    (tmp_path / "workers").mkdir()
    f = Files(str(tmp_path / "workers" / "w0"), io.StringIO())
    try:
        yield f
    finally:
        f.remove()
        os.chdir(cwd)
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    with worker_files(tmp_path) as f:
        yield f


def lazy_task(tmp_path: Path, name: str) -> pp.PyTask:
    cwd = str(tmp_path / "data" / name)
    return pp.PyTask(Job(id=name, app="A", workdir=name), "app.py", "A", cwd, f"{cwd}/job.out", {}, lazy=True)


def run(files: Files, task: pp.PyTask, write: str | None = None, remove_after: bool = False) -> None:
    files.begin(task)
    if write:
        Path(write).write_text("data")
        if remove_after:
            os.unlink(write)
    files.end()


def test_lazy_runs_that_leave_nothing_make_nothing(files: Files, tmp_path: Path) -> None:
    for name in ("a", "b"):
        run(files, lazy_task(tmp_path, name))
    assert not (tmp_path / "data").exists()


def test_each_lazy_run_that_leaves_a_file_gets_it_in_its_own_workdir(files: Files, tmp_path: Path) -> None:
    # the second file is written into a fresh scratch directory: it must be noticed too
    for name in ("a", "b", "c"):
        run(files, lazy_task(tmp_path, name), write=f"{name}.txt" if name != "b" else None)
    assert (tmp_path / "data" / "a" / "a.txt").read_text() == "data"
    assert not (tmp_path / "data" / "b").exists()
    assert (tmp_path / "data" / "c" / "c.txt").read_text() == "data"


def test_a_file_made_and_removed_by_a_run_leaves_no_workdir(files: Files, tmp_path: Path) -> None:
    run(files, lazy_task(tmp_path, "tidy"), write="tmp.txt", remove_after=True)
    run(files, lazy_task(tmp_path, "next"), write="kept.txt")
    assert not (tmp_path / "data" / "tidy").exists()
    assert (tmp_path / "data" / "next" / "kept.txt").exists()


def test_a_lazy_run_whose_workdir_exists_starts_there(files: Files, tmp_path: Path) -> None:
    (tmp_path / "data" / "staged").mkdir(parents=True)
    task = lazy_task(tmp_path, "staged")
    files.begin(task)
    assert os.getcwd() == task.cwd
    files.end()


def test_without_inotify_the_scratch_directory_is_listed_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dirwatch, "_libc", lambda: None)
    with worker_files(tmp_path) as files:
        run(files, lazy_task(tmp_path, "a"))
        run(files, lazy_task(tmp_path, "b"), write="b.txt")
        run(files, lazy_task(tmp_path, "c"), write="c.txt")
    assert not (tmp_path / "data" / "a").exists()
    assert (tmp_path / "data" / "b" / "b.txt").exists() and (tmp_path / "data" / "c" / "c.txt").exists()
