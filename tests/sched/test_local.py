"""The local scheduler: a batch job is a background process group on this host."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from balsamd.models import BatchJobState
from balsamd.sched import detect_scheduler, make_scheduler
from balsamd.sched.base import SchedulerError
from balsamd.sched.local import LocalScheduler

B = BatchJobState
DEADLINE = 10.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def sched() -> Iterator[LocalScheduler]:
    """A local scheduler whose batch jobs are all killed at the end of the test."""
    made = LocalScheduler()
    yield made
    made.kill_all()


def script(tmp_path: Path, body: str, name: str = "batch") -> Path:
    path = tmp_path / f"{name}.sh"
    path.write_text(f"#!/bin/bash\n{body}\n")
    return path


def state(sched: LocalScheduler, sid: str) -> BatchJobState:
    return sched.status([sid])[sid].state


def test_a_submitted_script_runs_then_finishes_with_its_output_beside_it(sched, tmp_path):
    flag = tmp_path / "go"
    path = script(tmp_path, f"echo started in $PWD\nwhile [ ! -e {flag} ]; do sleep 0.02; done\necho done")
    sid = sched.submit(path, tmp_path)
    pid, _, started = sid.partition(":")
    assert pid.isdigit() and started.isdigit()
    st = sched.status([sid])[sid]
    assert (st.state, st.raw_state, st.end_time) == (B.RUNNING, "alive", None)
    released = time.time()
    flag.touch()
    wait_for(lambda: state(sched, sid) == B.FINISHED, "the script has ended")
    st = sched.status([sid])[sid]
    looked = time.time()
    assert st.raw_state == "exited"
    assert st.end_time is not None and released <= st.end_time <= looked
    assert path.with_suffix(".out").read_text() == f"started in {tmp_path}\ndone\n"


def test_status_answers_for_many_ids_at_once(sched, tmp_path):
    running = sched.submit(script(tmp_path, "sleep 30", "long"), tmp_path)
    ended = sched.submit(script(tmp_path, "true", "short"), tmp_path)
    wait_for(lambda: state(sched, ended) == B.FINISHED, "the short script has ended")
    answer = sched.status([running, ended, "garbage"])
    assert {sid: st.state for sid, st in answer.items()} == {
        running: B.RUNNING, ended: B.FINISHED, "garbage": B.FINISHED,
    }  # fmt: skip


def test_cancel_kills_the_whole_process_group(sched, tmp_path):
    child_pid = tmp_path / "child.pid"
    sid = sched.submit(script(tmp_path, f"sleep 60 &\necho $! > {child_pid}\nwait"), tmp_path)
    wait_for(lambda: child_pid.exists() and child_pid.read_text().strip() != "", "the child has started")
    child = int(child_pid.read_text())
    assert alive(child)
    sched.cancel(sid)
    wait_for(lambda: not alive(child), "the script's child is killed")
    wait_for(lambda: state(sched, sid) == B.FINISHED, "the script is gone")
    sched.cancel(sid)  # a second cancel of an ended batch job is harmless


def test_a_recycled_pid_is_not_mistaken_for_the_batch_job(sched, tmp_path):
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    real = sched.submit(script(tmp_path, "sleep 60"), tmp_path)
    try:
        # an id naming the bystander's pid, but another start time: an earlier batch job whose
        # pid the bystander now has
        fake = f"{bystander.pid}:1"
        assert sched.status([fake])[fake].state == B.FINISHED
        sched.cancel(fake)
        # a real cancel after it, seen to take effect: a signal the bystander had been sent
        # before it would have ended the bystander by then too
        sched.cancel(real)
        wait_for(lambda: state(sched, real) == B.FINISHED, "the real batch job is cancelled")
        assert bystander.poll() is None, "cancel killed a process that is not the batch job"
    finally:
        bystander.kill()
        bystander.wait()


def test_ids_that_are_not_pid_and_start_time_are_finished(sched):
    for sid in ("", "abc", "12x:5", ":"):
        assert state(sched, sid) == B.FINISHED
        sched.cancel(sid)


def test_a_script_that_cannot_be_started_is_a_scheduler_error(sched, tmp_path):
    missing = tmp_path / "nowhere" / "batch.sh"
    with pytest.raises(SchedulerError, match="could not start"):
        sched.submit(missing, tmp_path)


def test_no_backfill_windows():
    assert LocalScheduler().backfill() == []


def test_local_is_made_and_detected_without_scheduler_commands():
    assert isinstance(make_scheduler("local"), LocalScheduler)
    assert detect_scheduler(lambda _cmd: None) == "local"
