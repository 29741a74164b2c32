"""Python runs of the local runner on warm workers: forked from a zygote, running queued jobs
back to back, handing back what they never started, and making files only for runs that use
them when their app's runs are short."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.config import LauncherSettings
from balsamd.launch.forks import ForkedProcess, Forks
from balsamd.launch.python.worker import NICE
from balsamd.launch.running.local import LocalRunner
from balsamd.launch.running.protocol import Finished, HandedBack, Placement, RunEvent, RunStarted
from balsamd.models import App, AppKind, Job
from balsamd.results import Returned, unpack

APP = """\
import logging
import os
import time

from balsamd import ApplicationDefinition


class Probe(ApplicationDefinition):
    def run(self, write: str = "", say: str = "", sleep: float = 0.0, ask_workdir: bool = False):
        if write:
            with open(write, "w") as f:
                f.write("data")
        if say:
            print(say, flush=True)
        if ask_workdir:
            return str(self.workdir), os.getcwd()
        time.sleep(sleep)
        return os.getpid()
"""

PROBE = App(name="Probe", kind=AppKind.PYTHON, source="probe.py", class_name="Probe")
WAIT = 20.0


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[LocalRunner]:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "probe.py").write_text(APP)
    (tmp_path / "data").mkdir()
    with Forks().window() as forks:  # as the launcher makes it: its zygote a fork of this process
        r = LocalRunner(tmp_path, {"Probe": PROBE}, LauncherSettings(), use_mpi=False, forks=forks)
    yield r
    r.close()


def value(blob: bytes) -> object:
    result = unpack(blob)
    assert isinstance(result, Returned), result
    return result.value


def job(name: str, **parameters: object) -> Job:
    return Job(id=name, app="Probe", workdir=f"probe/{name}", parameters=parameters)


def place(job_id: str) -> Placement:
    return Placement(job_id, ["localhost"], {}, 1.0, 1.0)


def events_until(runner: LocalRunner, done: int) -> list[RunEvent]:
    """Events until ``done`` runs ended or were handed back."""
    events: list[RunEvent] = []
    deadline = time.monotonic() + WAIT
    while sum(not isinstance(e, RunStarted) for e in events) < done:
        assert time.monotonic() < deadline, f"only these events in {WAIT} s: {events}"
        events.extend(runner.wait(0.2))
    return events


def start(runner: LocalRunner, first: Job, *queued: Job) -> None:
    assert runner.start(first, place(first.id)) is None
    if queued:
        assert runner.follow(first.id, list(queued), place(first.id))


def test_workers_are_forked_from_the_zygote(runner: LocalRunner) -> None:
    start(runner, job("a"))
    events_until(runner, 1)
    [worker] = runner.python.workers
    assert runner.python.zygote is not None and isinstance(runner.python.zygote.process, ForkedProcess)
    stat = Path(f"/proc/{worker.pid}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[1]) == runner.python.zygote.pid  # the worker's parent


def test_queued_jobs_run_in_order_on_one_worker_each_start_known_by_its_end(runner: LocalRunner) -> None:
    start(runner, job("a"), job("b"), job("c"))
    events = events_until(runner, 3)
    results = [e for e in events if isinstance(e, Finished)]
    assert [f.job_id for f in results] == ["a", "b", "c"]
    assert {value(f.result) for f in results if f.result} == {runner.python.workers[0].pid}
    assert all(f.return_code == 0 and f.elapsed is not None and f.elapsed >= 0 for f in results)
    # a start is reported on its own while the run goes on, else with its end
    starts = {e.job_id: e.ts for e in events if isinstance(e, RunStarted)}
    for f in results:
        assert f.started_at is not None
        assert starts.get(f.job_id, f.started_at) == pytest.approx(f.started_at, abs=0.01)
    assert results[0].started_at <= results[1].started_at <= results[2].started_at


def test_a_long_runs_start_is_reported_while_it_runs(runner: LocalRunner) -> None:
    start(runner, job("long", sleep=30.0))
    deadline = time.monotonic() + WAIT
    events: list[RunEvent] = []
    while not events:
        assert time.monotonic() < deadline, "the start of a running job was never reported"
        events = runner.wait(0.1)
    assert [(type(e).__name__, e.job_id) for e in events] == [("RunStarted", "long")]


def test_eager_runs_get_their_workdir_and_output_file_while_they_run(runner: LocalRunner, tmp_path: Path) -> None:
    start(runner, job("slow", say="hello", sleep=1.0))
    out = tmp_path / "data" / "probe" / "slow" / "job.out"
    deadline = time.monotonic() + WAIT
    while not (out.exists() and out.read_text() == "hello\n"):
        assert time.monotonic() < deadline, "the output of a running eager run never showed"
        runner.wait(0.05)
    events_until(runner, 1)


def test_short_runs_that_write_nothing_leave_no_directory_and_no_output_file(
    runner: LocalRunner, tmp_path: Path
) -> None:
    runner.short_apps_changed("Probe", True)
    start(runner, job("q1"), job("q2"), job("q3"))
    events_until(runner, 3)
    assert not (tmp_path / "data" / "probe").exists()


def test_what_a_short_run_writes_or_prints_ends_up_in_its_workdir(runner: LocalRunner, tmp_path: Path) -> None:
    runner.short_apps_changed("Probe", True)
    start(runner, job("file", write="result.txt"), job("print", say="hi"), job("none"))
    events_until(runner, 3)
    probe = tmp_path / "data" / "probe"
    assert (probe / "file" / "result.txt").read_text() == "data"
    assert not (probe / "file" / "job.out").exists()
    assert (probe / "print" / "job.out").read_text() == "hi\n"
    assert not (probe / "none").exists()


def test_a_short_run_asking_for_its_workdir_is_moved_there_with_what_it_wrote(
    runner: LocalRunner, tmp_path: Path
) -> None:
    runner.short_apps_changed("Probe", True)
    start(runner, job("ask", write="early.txt", ask_workdir=True))
    [*_, finished] = events_until(runner, 1)
    assert isinstance(finished, Finished) and finished.result is not None
    workdir = tmp_path / "data" / "probe" / "ask"
    assert value(finished.result) == (str(workdir), str(workdir))
    assert (workdir / "early.txt").read_text() == "data"


def test_a_short_run_starts_in_its_workdir_when_that_exists(runner: LocalRunner, tmp_path: Path) -> None:
    runner.short_apps_changed("Probe", True)
    staged = tmp_path / "data" / "probe" / "staged"
    staged.mkdir(parents=True)
    start(runner, job("staged", write="out.txt"))
    events_until(runner, 1)
    assert (staged / "out.txt").read_text() == "data"


def test_stopping_a_run_hands_back_the_jobs_queued_behind_it(runner: LocalRunner) -> None:
    start(runner, job("long", sleep=30.0), job("next1"), job("next2"))
    deadline = time.monotonic() + WAIT
    while runner.python.workers[0].current != "long":
        assert time.monotonic() < deadline
        runner.wait(0.1)
    runner.signal(["long", "next1", "next2"], signal.SIGTERM)
    events = events_until(runner, 3)
    ended = {e.job_id: e for e in events if not isinstance(e, RunStarted)}
    assert isinstance(ended["long"], Finished) and ended["long"].stopped and not ended["long"].lost
    assert isinstance(ended["next1"], HandedBack) and isinstance(ended["next2"], HandedBack)
    assert runner.running() == []


def test_a_worker_that_dies_ends_its_run_and_hands_back_the_rest(runner: LocalRunner) -> None:
    start(runner, job("victim", sleep=30.0), job("after"))
    deadline = time.monotonic() + WAIT
    while runner.python.workers[0].current != "victim":
        assert time.monotonic() < deadline
        runner.wait(0.1)
    os.kill(runner.python.workers[0].pid, signal.SIGKILL)
    events = events_until(runner, 2)
    ended = {e.job_id: e for e in events if not isinstance(e, RunStarted)}
    victim = ended["victim"]
    assert isinstance(victim, Finished) and victim.return_code is None
    assert "the Python worker running this job died (killed by SIGKILL)" in victim.reason
    assert isinstance(ended["after"], HandedBack)
    assert runner.python.workers == []


def test_a_new_job_after_a_dead_worker_gets_a_fresh_one(runner: LocalRunner) -> None:
    start(runner, job("first"))
    events_until(runner, 1)
    [old] = runner.python.workers
    os.kill(old.pid, signal.SIGKILL)
    events_until(runner, 0)
    deadline = time.monotonic() + WAIT
    while runner.python.workers:
        assert time.monotonic() < deadline, "the dead worker was never noticed"
        runner.wait(0.1)
    start(runner, job("second"))
    [*_, finished] = events_until(runner, 1)
    assert isinstance(finished, Finished) and finished.return_code == 0
    assert runner.python.workers[0].pid != old.pid


def test_workers_run_below_the_launchers_priority_so_its_bookkeeping_goes_first(runner: LocalRunner) -> None:
    start(runner, job("a"))
    events_until(runner, 1)
    [worker] = runner.python.workers
    fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
    assert int(fields[16]) == min(19, os.nice(0) + NICE)  # field 19 of stat: nice


def test_workers_start_as_new_interpreters_when_the_zygote_is_gone(
    runner: LocalRunner, caplog: pytest.LogCaptureFixture
) -> None:
    assert runner.python.zygote is not None
    runner.python.zygote.process.kill()
    runner.python.zygote.process.wait()
    with caplog.at_level(logging.WARNING, logger="balsamd.launcher"):
        start(runner, job("after-zygote"))
    [*_, finished] = events_until(runner, 1)
    assert isinstance(finished, Finished) and finished.return_code == 0
    assert runner.python.zygote is None
    assert "the worker zygote failed" in caplog.text
    assert "starting workers as new interpreters" in caplog.text
