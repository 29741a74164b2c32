"""The scheduler service in-process: it submits pending batch jobs, follows them through the
scheduler to their end, cancels those removed, and records every scheduler failure instead of
dying of it."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from balsamd.ids import new_id
from balsamd.models import BatchJob, BatchJobState, JobMode
from balsamd.sched.base import UNREAD, BackfillWindow, JobStatus, SchedulerError, SchedulerOutputError
from balsamd.sched.local import LocalScheduler
from balsamd.sched.script import COMMAND_ENV, GENERIC_TEMPLATE
from balsamd.sched.service import SchedulerService
from balsamd.store.store import SiteStore
from tests.daemon.conftest import DaemonSite, new_site

B = BatchJobState
DEADLINE = 30.0


class Recorder:
    """The daemon's store_call (positional arguments only, run in a thread), remembering every
    state each batch job was seen in."""

    def __init__(self) -> None:
        self.seen: dict[str, list[BatchJobState]] = {}

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        out = await anyio.to_thread.run_sync(functools.partial(fn, *args))
        for batch in out if isinstance(out, list) else [out]:
            if isinstance(batch, BatchJob):
                states = self.seen.setdefault(batch.id, [])
                if not states or states[-1] != batch.state:
                    states.append(batch.state)
        return out


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonSite]:
    monkeypatch.delenv("BALSAMD_SITE", raising=False)
    monkeypatch.delenv("BALSAMD_RPC", raising=False)
    monkeypatch.setenv(COMMAND_ENV, f"{sys.executable} -m balsamd")
    with new_site(tmp_path, {"nodes.cpus_per_node": 2, "launcher.idle_ttl_sec": 0.5}) as made:
        made.command_app("Hello", "echo hello {{ name }}")
        yield made


@pytest.fixture
def store(site: DaemonSite) -> Iterator[SiteStore]:
    s = SiteStore(site.root / "balsamd.db")
    yield s
    s.close()


@pytest.fixture
def local() -> Iterator[LocalScheduler]:
    made = LocalScheduler()
    yield made
    made.kill_all()


def pending(store: SiteStore, **fields: Any) -> BatchJob:
    base: dict[str, Any] = {"num_nodes": 1, "wall_time_min": 5, "job_mode": JobMode.SERIAL}
    return store.create_batch_job(BatchJob(id=new_id(), **{**base, **fields}))


def step(svc: SchedulerService, now: float | None = None) -> None:
    anyio.run(svc.step, time.time() if now is None else now)


def drive(svc: SchedulerService, until: Callable[[], bool], what: str) -> None:
    """Step the service every 50 ms until ``until()`` holds."""

    async def loop() -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            await svc.step(time.time())
            if until():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {DEADLINE:g} s waiting until {what}")
            await anyio.sleep(0.05)

    anyio.run(loop)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ----- the local scheduler, end to end ------------------------------------------------------


@pytest.mark.slow
def test_a_pending_batch_job_is_submitted_runs_its_launcher_and_finishes(site, store, local):
    jobs = site.create("Hello", 3, parameters={"name": "w"})
    batch = pending(store)
    recorder = Recorder()
    svc = SchedulerService(site.root, store, recorder, local)
    before = time.time()
    step(svc)

    script = site.root / "batch" / f"{batch.id}.sh"
    assert script.is_file()
    launcher = (
        f"{sys.executable} -m balsamd --site {site.root} launcher --job-mode serial --wall-time-min 5 "
        f"--batch-job {batch.id}"
    )
    assert launcher in script.read_text().splitlines()
    submitted = store.get_batch_job(batch.id)
    assert submitted.scheduler_id is not None
    assert submitted.scheduler_id.split(":")[0].isdigit()

    drive(svc, lambda: store.get_batch_job(batch.id).state == B.FINISHED, "the batch job has finished")
    assert recorder.seen[batch.id] == [B.PENDING_SUBMISSION, B.QUEUED, B.RUNNING, B.FINISHED]
    done = store.get_batch_job(batch.id)
    assert done.start_time is not None and done.end_time is not None
    assert before <= done.start_time <= done.end_time <= time.time()
    assert done.status_info == "exited"
    for job_id in jobs:
        job = store.get(job_id)
        assert (job.state, job.batch_job_id) == ("JOB_FINISHED", batch.id)
    out = script.with_suffix(".out").read_text()
    assert "launcher finished (idle" in out, out
    assert "3 started, 3 done" in out, out


def test_a_job_script_that_does_not_render_fails_the_submission_and_the_service_goes_on(site, store, local):
    (site.root / "job-template.sh").write_text("#!/bin/bash\n{{ directives }}\n#SBATCH -A {{ acount }}\n")
    bad = pending(store)
    svc = SchedulerService(site.root, store, Recorder(), local)
    step(svc)
    failed = store.get_batch_job(bad.id)
    assert failed.state == B.SUBMIT_FAILED
    assert failed.status_info.startswith("job template uses {{ acount }}, which is not known; known: ")
    assert not (site.root / "batch" / f"{bad.id}.sh").exists()
    assert failed.scheduler_id is None

    (site.root / "job-template.sh").write_text("#!/bin/bash\n{{ directives }}\nsleep 0.1\n")
    good = pending(store)
    step(svc)
    assert store.get_batch_job(good.id).state in (B.QUEUED, B.RUNNING, B.FINISHED)
    assert store.get_batch_job(bad.id).state == B.SUBMIT_FAILED  # never retried


def test_removing_a_running_batch_job_cancels_it_then_it_finishes(site, store, local):
    (site.root / "job-template.sh").write_text("#!/bin/bash\n{{ directives }}\nsleep 60\n")
    batch = pending(store)
    recorder = Recorder()
    svc = SchedulerService(site.root, store, recorder, local)
    drive(svc, lambda: store.get_batch_job(batch.id).state == B.RUNNING, "the batch job runs")
    pid = int(store.get_batch_job(batch.id).scheduler_id.split(":")[0])
    assert alive(pid)
    assert store.remove_batch_job(batch.id).state == B.PENDING_DELETION
    drive(svc, lambda: store.get_batch_job(batch.id).state == B.FINISHED, "the removed batch job has finished")
    assert not alive(pid)
    assert recorder.seen[batch.id][-2:] == [B.PENDING_DELETION, B.FINISHED]
    done = store.get_batch_job(batch.id)
    assert done.end_time is not None and done.start_time is not None


def test_the_default_template_is_used_when_the_site_has_none(site, store, local):
    (site.root / "job-template.sh").unlink()
    batch = pending(store, job_mode=JobMode.MPI, num_nodes=1, wall_time_min=1)
    svc = SchedulerService(site.root, store, Recorder(), local)
    drive(svc, lambda: store.get_batch_job(batch.id).state == B.FINISHED, "the batch job has finished")
    script = (site.root / "batch" / f"{batch.id}.sh").read_text()
    assert script.startswith(GENERIC_TEMPLATE.split("{{")[0])
    assert f"# balsamd batch job {batch.id}: 1 node(s), 1 min" in script


# ----- a scheduler that is told what to answer ----------------------------------------------


class FakeScheduler:
    name = "fake"
    commands: tuple[str, ...] = ()
    default_template = GENERIC_TEMPLATE

    def __init__(self) -> None:
        self.submitted: list[Path] = []
        self.cancelled: list[str] = []
        self.answers: dict[str, JobStatus] = {}
        self.status_error: SchedulerError | None = None
        self.submit_error: SchedulerError | None = None
        self.cancel_error: SchedulerError | None = None
        self.during_submit: Callable[[], None] | None = None

    def directives(self, batch: BatchJob) -> list[str]:
        return [f"#FAKE -N {batch.num_nodes}"]

    def submit(self, script: Path, cwd: Path) -> str:
        if self.submit_error:
            raise self.submit_error
        if self.during_submit:
            self.during_submit()
        self.submitted.append(script)
        return str(100 + len(self.submitted))

    def status(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        if self.status_error:
            raise self.status_error
        return {sid: self.answers[sid] for sid in scheduler_ids if sid in self.answers}

    def cancel(self, scheduler_id: str) -> None:
        if self.cancel_error:
            raise self.cancel_error
        self.cancelled.append(scheduler_id)

    def backfill(self) -> list[BackfillWindow]:
        return []


def answer(fake: FakeScheduler, sid: str, state: BatchJobState, raw: str, **times: float) -> None:
    fake.answers[sid] = JobStatus(scheduler_id=sid, state=state, raw_state=raw, **times)


def test_scheduler_states_and_times_are_recorded(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    batch = pending(store)
    answer(fake, "101", B.QUEUED, "PENDING")
    step(svc, now=1000.0)
    got = store.get_batch_job(batch.id)
    assert (got.state, got.scheduler_id, got.status_info) == (B.QUEUED, "101", "submitted as 101")
    assert fake.submitted == [site.root / "batch" / f"{batch.id}.sh"]
    assert "#FAKE -N 1" in fake.submitted[0].read_text()
    answer(fake, "101", B.RUNNING, "RUNNING", start_time=1005.0)
    step(svc, now=1010.0)
    got = store.get_batch_job(batch.id)
    assert (got.state, got.start_time, got.status_info) == (B.RUNNING, 1005.0, "RUNNING")
    answer(fake, "101", B.FINISHED, "COMPLETED", start_time=1005.0, end_time=1100.0)
    step(svc, now=1200.0)
    got = store.get_batch_job(batch.id)
    assert (got.state, got.start_time, got.end_time, got.status_info) == (B.FINISHED, 1005.0, 1100.0, "COMPLETED")
    step(svc, now=1300.0)  # an ended batch job is not asked about again
    assert store.get_batch_job(batch.id) == got


def test_a_batch_job_that_ends_between_two_polls_gets_times_from_the_poll(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    batch = pending(store)
    step(svc, now=1000.0)  # the scheduler does not know it yet: it ended
    got = store.get_batch_job(batch.id)
    assert (got.state, got.end_time, got.status_info) == (B.FINISHED, 1000.0, "no longer known to the scheduler")
    other = pending(store)
    answer(fake, "102", B.FINISHED, "COMPLETED")
    step(svc, now=2000.0)
    got = store.get_batch_job(other.id)
    assert (got.state, got.start_time, got.end_time) == (B.FINISHED, None, 2000.0)


def test_a_failed_submission_records_the_schedulers_words_and_the_rest_go_on(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    first = pending(store)
    fake.submit_error = SchedulerError("sbatch -A x failed: sbatch: error: Invalid account")
    step(svc)
    got = store.get_batch_job(first.id)
    assert (got.state, got.status_info) == (B.SUBMIT_FAILED, "sbatch -A x failed: sbatch: error: Invalid account")
    fake.submit_error = None
    second = pending(store)
    answer(fake, "101", B.QUEUED, "PENDING")
    step(svc)
    assert store.get_batch_job(second.id).state == B.QUEUED


def test_unreadable_status_output_is_recorded_with_its_text_and_nothing_crashes(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    batch = pending(store)
    answer(fake, "101", B.QUEUED, "PENDING")
    step(svc)
    fake.status_error = SchedulerOutputError("squeue output", "JOBID|STATE\n101|WEIRD|extra")
    step(svc)
    got = store.get_batch_job(batch.id)
    assert got.state == B.QUEUED
    assert got.status_info == (
        "status unknown: cannot parse squeue output: 'JOBID|STATE\\n101|WEIRD|extra'; batch jobs keep their last "
        "known state; if this goes on, check that [scheduler] kind in settings.toml is this cluster's scheduler"
    )
    # the next readable answer is taken up again
    fake.status_error = None
    answer(fake, "101", B.RUNNING, "RUNNING", start_time=5.0)
    step(svc)
    assert (store.get_batch_job(batch.id).state, store.get_batch_job(batch.id).status_info) == (B.RUNNING, "RUNNING")


def test_a_very_long_unreadable_output_is_cut(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    batch = pending(store)
    answer(fake, "101", B.QUEUED, "PENDING")
    step(svc)
    fake.status_error = SchedulerOutputError("qstat output", "x" * 5000)
    step(svc)
    info = store.get_batch_job(batch.id).status_info
    assert info == f"status unknown: cannot parse qstat output: {'x' * 2000 + '...'!r}; {UNREAD}"


def test_removal_while_pending_deletion_is_cancelled_then_finished(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    batch = pending(store)
    answer(fake, "101", B.RUNNING, "RUNNING", start_time=10.0)
    step(svc)
    assert store.get_batch_job(batch.id).state == B.RUNNING
    store.remove_batch_job(batch.id)
    step(svc)  # cancelled; the scheduler still shows it running
    assert fake.cancelled == ["101"]
    assert store.get_batch_job(batch.id).state == B.PENDING_DELETION
    answer(fake, "101", B.FINISHED, "CANCELLED", end_time=20.0)
    step(svc)
    got = store.get_batch_job(batch.id)
    assert (got.state, got.start_time, got.end_time) == (B.FINISHED, 10.0, 20.0)
    assert got.status_info == "CANCELLED (removal requested)"  # why it was cancelled stays visible


def test_a_failed_cancel_is_recorded_and_tried_again(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    batch = pending(store)
    answer(fake, "101", B.QUEUED, "PENDING")
    step(svc)
    store.remove_batch_job(batch.id)
    fake.cancel_error = SchedulerError("scancel 101 failed: Unable to contact slurm controller")
    step(svc)
    got = store.get_batch_job(batch.id)
    assert (got.state, got.status_info) == (
        B.PENDING_DELETION, "cancel failed: scancel 101 failed: Unable to contact slurm controller",
    )  # fmt: skip
    fake.cancel_error = None
    step(svc)
    assert fake.cancelled == ["101"]


def test_a_batch_job_removed_while_it_was_being_submitted_is_taken_back(site, store):
    fake = FakeScheduler()
    svc = SchedulerService(site.root, store, Recorder(), fake)
    batch = pending(store)
    fake.during_submit = lambda: store.remove_batch_job(batch.id)
    step(svc)
    assert fake.cancelled == ["101"]
    got = store.get_batch_job(batch.id)
    assert (got.state, got.status_info, got.scheduler_id) == (B.FINISHED, "removed before it ran", None)
