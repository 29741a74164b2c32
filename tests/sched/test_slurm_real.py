"""SlurmScheduler against the real single-node Slurm of scripts/slurm.sh (the real_slurm fixture)."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from balsamd import ids
from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import JobStatus, SchedulerError
from balsamd.sched.script import render, values
from balsamd.sched.slurm import SlurmScheduler

# the first test also waits for the fixture, which may install Slurm
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
B = BatchJobState
WAIT = 60.0


def submit(sched: SlurmScheduler, site: Path, body: str, **fields) -> tuple[BatchJob, Path, str]:
    """Render the default template for a batch job whose launcher is ``body``, and submit it."""
    batch = BatchJob(**{"id": ids.new_id(), "num_nodes": 1, "wall_time_min": 5, **fields})
    text = render(sched.default_template, {**values(batch, site, sched.directives(batch)), "launcher": body})
    folder = site / "batch"
    folder.mkdir(exist_ok=True)
    script = folder / f"{batch.id}.sh"
    script.write_text(text)
    return batch, script, sched.submit(script, script.parent)


def watch(sched: SlurmScheduler, job_id: str, done: Callable[[JobStatus], bool]) -> list[JobStatus]:
    """Poll the job's status until ``done`` holds; every status seen, in order."""
    seen: list[JobStatus] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        st = sched.status([job_id]).get(job_id)
        if st is not None:
            seen.append(st)
            if done(st):
                return seen
        time.sleep(0.1)
    pytest.fail(f"job {job_id} not done after {WAIT:g} s; seen {[s.raw_state for s in seen]}")


def test_submitted_job_runs_and_finishes(real_slurm, tmp_path):
    submitted = math.floor(time.time())  # Slurm's times are whole seconds
    batch, script, job_id = submit(real_slurm, tmp_path, "echo started; sleep 2", queue="debug", project="tests")
    assert job_id.isdigit()
    seen = watch(real_slurm, job_id, lambda st: st.state == B.FINISHED)
    looked = time.time()
    states = [s.state for s in seen]
    assert states[0] in (B.QUEUED, B.RUNNING)
    assert B.RUNNING in states
    assert states == sorted(states, key=[B.QUEUED, B.RUNNING, B.FINISHED].index)
    last = seen[-1]
    assert last.raw_state == "COMPLETED"
    assert last.nodes == [socket.gethostname().split(".")[0]]
    assert last.start_time is not None and last.end_time is not None
    assert last.end_time - last.start_time >= 1
    assert submitted <= last.start_time <= last.end_time <= looked
    # the output lands in the script's folder, named by the directives
    assert (script.parent / f"{batch.id}.out").read_text().strip() == "started"


def test_cancel_a_running_job(real_slurm, tmp_path):
    _, _, job_id = submit(real_slurm, tmp_path, "sleep 300")
    watch(real_slurm, job_id, lambda st: st.state != B.QUEUED)
    real_slurm.cancel(job_id)
    last = watch(real_slurm, job_id, lambda st: st.state == B.FINISHED)[-1]
    assert last.raw_state == "CANCELLED"
    real_slurm.cancel(job_id)  # again: already ended, no error


def test_status_of_ids_slurm_does_not_know(real_slurm, tmp_path):
    _, _, job_id = submit(real_slurm, tmp_path, "true")
    assert real_slurm.status(["999999"]) == {}
    assert real_slurm.status(["999998", "999999"]) == {}
    assert list(real_slurm.status([job_id, "999999"])) == [job_id]


def test_submit_to_an_unknown_partition_fails(real_slurm, tmp_path):
    with pytest.raises(SchedulerError, match=r"[Ii]nvalid partition"):
        submit(real_slurm, tmp_path, "true", queue="no-such-partition")


def test_backfill_returns_the_idle_node(real_slurm):
    deadline = time.monotonic() + WAIT
    while (windows := real_slurm.backfill()) == [] and time.monotonic() < deadline:
        time.sleep(0.2)  # jobs of the tests before may still be ending
    by_queue = {w.queue: w for w in windows}
    assert by_queue["debug"].num_nodes == 1
    assert by_queue["debug"].wall_time_min == 0  # MaxTime=INFINITE
    if "short" in by_queue:  # scripts/slurm.sh's limited partition
        assert by_queue["short"].wall_time_min == 30
