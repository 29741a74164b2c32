"""The worker's side of a run: where it writes (Files) and what environment it gets."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.launch import dirwatch
from balsamd.launch import pyproto as pp
from balsamd.launch.pyserve import Environment, Files, _without_starts_of_ended
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


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WORKER_OWN", "worker")
    monkeypatch.delenv("ONLY_FIRST", raising=False)
    monkeypatch.delenv("JOB_ID", raising=False)
    yield


def test_each_job_gets_its_values_and_the_workers_own_come_back(environ: None) -> None:
    env = Environment()
    env.apply({"JOB_ID": "1", "WORKER_OWN": "job", "ONLY_FIRST": "x"})
    assert (os.environ["JOB_ID"], os.environ["WORKER_OWN"], os.environ["ONLY_FIRST"]) == ("1", "job", "x")
    env.apply({"JOB_ID": "2"})
    assert os.environ["JOB_ID"] == "2"
    assert os.environ["WORKER_OWN"] == "worker"
    assert "ONLY_FIRST" not in os.environ


def test_a_run_that_changed_the_environment_does_not_leak_into_the_next(environ: None) -> None:
    env = Environment()
    env.apply({"JOB_ID": "1", "WORKER_OWN": "job"})
    os.environ["JOB_ID"] = "changed by the run"
    del os.environ["WORKER_OWN"]
    env.apply({"JOB_ID": "1", "WORKER_OWN": "job"})  # the same values as the last job
    assert (os.environ["JOB_ID"], os.environ["WORKER_OWN"]) == ("1", "job")
    env.apply({})
    assert os.environ["WORKER_OWN"] == "worker" and "JOB_ID" not in os.environ


def test_a_run_that_ended_in_the_same_batch_is_reported_by_its_end_alone() -> None:
    batch = [pp.Started("a", 1.0), pp.Done("a", 1.5, 0.5, True, b""), pp.Started("b", 1.5)]
    assert _without_starts_of_ended(batch) == [pp.Done("a", 1.5, 0.5, True, b""), pp.Started("b", 1.5)]
    assert _without_starts_of_ended([pp.Started("b", 1.5)]) == [pp.Started("b", 1.5)]
