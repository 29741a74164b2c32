"""The scheduler contract, run against each command-line scheduler's fake commands.

Every backend here is driven only through balsamd.sched.base.Scheduler: a rendered job script is
submitted, its status followed as the fake moves it along, it is cancelled, backfill windows
are read, and every unreadable or failed reply must come back as SchedulerOutputError (with
the raw text) or SchedulerError, never as anything else.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from balsamd.ids import new_id
from balsamd.models import BatchJob, BatchJobState
from balsamd.sched import detect_scheduler, make_scheduler, scheduler_class
from balsamd.sched.base import BackfillWindow, Scheduler, SchedulerError, SchedulerOutputError
from balsamd.sched.script import render, values
from tests.sched.fakes import fakelib
from tests.sched.fakes.harness import KINDS, FakeCluster

B = BatchJobState
UNKNOWN = {"pbs": "999999.pbs01", "cobalt": "999999", "lsf": "999999"}
HELD = {"pbs": "H", "cobalt": "user_hold", "lsf": "PSUSP"}
FORGETS_FINISHED = {"cobalt"}  # Cobalt's qstat drops a job once it ends
BACKFILL = {
    "pbs": [BackfillWindow(num_nodes=2, wall_time_min=0)],
    "cobalt": [
        BackfillWindow(num_nodes=1, wall_time_min=70, queue="backfill"),
        BackfillWindow(num_nodes=2, wall_time_min=0, queue="debug-cache-quad"),
        BackfillWindow(num_nodes=7, wall_time_min=299, queue="default"),
        BackfillWindow(num_nodes=8, wall_time_min=70, queue="default"),
    ],
    "lsf": [
        BackfillWindow(num_nodes=n, wall_time_min=m)
        for n, m in [(1, 0), (3, 90), (5, 60), (7, 45), (15, 40), (18, 30), (20, 20)]
    ],
}


@pytest.fixture(params=KINDS)
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> FakeCluster:
    return FakeCluster(request.param, tmp_path / "fake-state")


@pytest.fixture
def sched(fake: FakeCluster) -> Scheduler:
    return make_scheduler(fake.kind, run=fake.run)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return tmp_path / "site"


def submit(sched: Scheduler, site: Path, **fields: object) -> str:
    """Render the default job script for a batch job as the daemon does, and submit it."""
    spec: dict = {"num_nodes": 2, "wall_time_min": 30, "project": "datascience", "queue": "debug", **fields}
    batch = BatchJob(id=new_id(), **spec)
    folder = site / "batch"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / f"{batch.id}.sh"
    script.write_text(render(sched.default_template, values(batch, site, sched.directives(batch))))
    script.chmod(0o755)
    return sched.submit(script, folder)


def assert_finished(fake: FakeCluster, statuses: dict, sid: str) -> None:
    if fake.kind in FORGETS_FINISHED:
        assert sid not in statuses
    else:
        assert statuses[sid].state == B.FINISHED
        assert statuses[sid].end_time is not None


def test_registered_with_its_commands(fake: FakeCluster, sched: Scheduler) -> None:
    assert sched.name == fake.kind
    assert isinstance(sched, scheduler_class(fake.kind))
    assert "{{ directives }}" in sched.default_template
    for program in sched.commands:
        assert shutil.which(program, path=str(fake.bin)), f"no fake for {program}"


def test_detected_from_its_commands(fake: FakeCluster) -> None:
    assert detect_scheduler(lambda c: shutil.which(c, path=str(fake.bin))) == fake.kind


def test_directives_reach_the_scheduler(fake: FakeCluster, sched: Scheduler, site: Path) -> None:
    sid = submit(sched, site, num_nodes=3, wall_time_min=45, queue="debug", project="datascience")
    job = fake.job(sid)
    assert (job["nodes"], job["queue"], job["project"]) == (3, "debug", "datascience")
    assert Path(job["cwd"]).resolve() == (site / "batch").resolve()


def test_queued_running_finished(fake: FakeCluster, sched: Scheduler, site: Path) -> None:
    before = time.time()
    sid = submit(sched, site)
    queued = sched.status([sid])[sid]
    assert (queued.scheduler_id, queued.state, queued.start_time, queued.end_time) == (sid, B.QUEUED, None, None)
    assert queued.raw_state

    fake.advance(sid)
    running = sched.status([sid])[sid]
    assert running.state == B.RUNNING
    assert running.start_time is not None and before - 61 <= running.start_time <= time.time() + 1
    assert running.nodes and running.end_time is None

    fake.advance(sid)
    assert_finished(fake, sched.status([sid]), sid)


def test_held_job_counts_as_queued(fake: FakeCluster, sched: Scheduler, site: Path) -> None:
    sid = submit(sched, site)
    fake.set_phase(sid, "held")
    st = sched.status([sid])[sid]
    assert (st.state, st.raw_state) == (B.QUEUED, HELD[fake.kind])


def test_one_query_for_many_jobs(fake: FakeCluster, sched: Scheduler, site: Path) -> None:
    queued, running, done = (submit(sched, site) for _ in range(3))
    fake.advance(running)
    fake.advance(done)
    fake.advance(done)
    fake.calls.clear()
    statuses = sched.status([queued, running, done, UNKNOWN[fake.kind], queued])
    assert len(fake.calls) == 1
    assert statuses[queued].state == B.QUEUED
    assert statuses[running].state == B.RUNNING
    assert_finished(fake, statuses, done)
    assert UNKNOWN[fake.kind] not in statuses


def test_status_of_no_jobs_asks_nothing(fake: FakeCluster, sched: Scheduler) -> None:
    assert sched.status([]) == {}
    assert fake.calls == []


def test_status_when_no_id_is_known(fake: FakeCluster, sched: Scheduler) -> None:
    assert sched.status([UNKNOWN[fake.kind]]) == {}


@pytest.mark.parametrize("phase", ["queued", "running"])
def test_cancel(fake: FakeCluster, sched: Scheduler, site: Path, phase: str) -> None:
    sid = submit(sched, site)
    fake.set_phase(sid, phase)
    sched.cancel(sid)
    assert fake.job(sid)["cancelled"]
    assert_finished(fake, sched.status([sid]), sid)
    sched.cancel(sid)  # cancelling a job that has ended is no error


def test_cancel_unknown_job_is_no_error(fake: FakeCluster, sched: Scheduler) -> None:
    sched.cancel(UNKNOWN[fake.kind])


def test_backfill_windows(fake: FakeCluster, sched: Scheduler) -> None:
    assert sched.backfill() == BACKFILL[fake.kind]


def _operations(sched: Scheduler, site: Path, sid: str) -> dict[str, Callable[[], object]]:
    """Each operation, for a job id the fake need not know: a misbehaving fake answers before looking."""
    return {
        "submit": lambda: submit(sched, site),
        "status": lambda: sched.status([sid]),
        "cancel": lambda: sched.cancel(sid),
        "backfill": sched.backfill,
    }


@pytest.mark.parametrize("mode", ["malformed", "empty"])
@pytest.mark.parametrize("operation", ["submit", "status", "backfill"])
def test_unreadable_reply_raises_output_error_with_the_text(
    fake: FakeCluster, sched: Scheduler, site: Path, mode: str, operation: str
) -> None:
    fake.mode = mode
    with pytest.raises(SchedulerOutputError) as caught:
        _operations(sched, site, UNKNOWN[fake.kind])[operation]()
    assert caught.value.raw == (fakelib.GARBAGE if mode == "malformed" else "")


@pytest.mark.parametrize("operation", ["submit", "status", "cancel", "backfill"])
def test_failed_command_raises_scheduler_error_with_its_message(
    fake: FakeCluster, sched: Scheduler, site: Path, operation: str
) -> None:
    fake.mode = "fail"
    with pytest.raises(SchedulerError) as caught:
        _operations(sched, site, UNKNOWN[fake.kind])[operation]()
    assert type(caught.value) is SchedulerError
    assert fakelib.FAILURE in str(caught.value)


def test_missing_commands_raise_scheduler_error(fake: FakeCluster, sched: Scheduler, site: Path) -> None:
    if any(shutil.which(c) for c in sched.commands):
        pytest.skip(f"this host has a real {fake.kind} command on PATH")
    fake.missing = True
    for operation, call in _operations(sched, site, UNKNOWN[fake.kind]).items():
        with pytest.raises(SchedulerError, match="not found") as caught:
            call()
        assert type(caught.value) is SchedulerError, operation
