"""``balsamd job wait``: blocks until the jobs end; its exit code says how they ended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import balsamd
from balsamd.cli.job_wait import summary
from balsamd.models import StateUpdate
from balsamd.states import JobState
from balsamd.waiting import Failure, WaitOutcome, next_interval, tally, wait_for

S = JobState
FAILED_EXIT, TIMED_OUT_EXIT = 4, 124


def waiting(site: Path, *args: str) -> subprocess.Popen[str]:
    """`balsamd job wait ARGS` as a process of its own, as a user's script runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_DEBUG")}
    argv = [sys.executable, "-m", "balsamd", "--site", str(site), "job", "wait", *args]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def still_waiting(proc: subprocess.Popen[str], seconds: float = 1.5) -> bool:
    """Whether ``proc`` is still blocked after ``seconds`` (it polls several times meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return True


def test_wait_blocks_until_every_job_finished_then_exits_0(hello, run_to) -> None:
    ids = [hello.job(f"w{n}", "a", "-t", "batch=1") for n in range(3)]
    other = hello.job("other")  # not waited for: it never runs
    proc = waiting(hello.site, "--tag", "batch=1")
    try:
        assert still_waiting(proc)
        for job_id in ids[:2]:
            assert run_to(job_id, S.RUN_DONE) == S.JOB_FINISHED
        assert still_waiting(proc, 1.0)
        assert run_to(ids[2], S.RUN_DONE) == S.JOB_FINISHED
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 0, err
    assert err == ""  # no bar: stderr is no terminal
    assert out.startswith("3 job(s): 3 finished, 0 failed, 0 killed, 0 not ended (0:00:")
    assert hello.json("job", "show", other)["state"] == "PREPROCESSED"


def test_wait_exits_4_when_a_job_failed_naming_it_and_why(hello, site_path, hold, run_to) -> None:
    good, bad = hello.job("good"), hello.job("bad")
    assert run_to(good, S.RUN_DONE) == S.JOB_FINISHED
    session = hold(bad)
    with balsamd.connect(site_path) as site:
        failed = StateUpdate(job_id=bad, state=S.RUN_ERROR, ts=2.0, return_code=3, reason="ran\nexit code 3")
        site.store.update_states(session.id, [StateUpdate(job_id=bad, state=S.RUNNING, ts=1.0), failed])
    out = hello("job", "wait", good, bad[:12], code=FAILED_EXIT).stdout.splitlines()
    assert out[0].startswith("2 job(s): 1 finished, 1 failed, 0 killed, 0 not ended (0:00:0")
    assert out[1:] == [f"  FAILED {bad}: exit code 3"]


def test_a_killed_job_is_a_failure_too(hello) -> None:
    job_id = hello.job("w")
    hello("job", "kill", job_id)
    result = hello("job", "wait", "--app", "hello", code=FAILED_EXIT)
    assert result.stdout.splitlines()[1] == f"  KILLED {job_id}: killed by user"


def test_wait_exits_124_at_its_timeout_saying_how_far_it_got(hello, run_to) -> None:
    done, left = hello.job("done"), hello.job("left")
    assert run_to(done, S.RUN_DONE) == S.JOB_FINISHED
    started = time.monotonic()
    out = hello("job", "wait", done, left, "--timeout", "0.6", code=TIMED_OUT_EXIT).stdout
    assert time.monotonic() - started >= 0.6
    assert out.startswith("timed out: 2 job(s): 1 finished, 0 failed, 0 killed, 1 not ended (0:00:0")


def test_wait_json_is_the_outcome(hello, run_to) -> None:
    job_id = hello.job("w")
    assert run_to(job_id, S.RUN_ERROR) == S.FAILED
    result = hello("job", "wait", job_id, "--json", code=FAILED_EXIT)
    outcome = json.loads(result.stdout)
    assert {k: outcome[k] for k in ("total", "finished", "failed", "killed", "timed_out", "pending")} == {
        "total": 1, "finished": 0, "failed": 1, "killed": 0, "timed_out": False, "pending": 0,
    }  # fmt: skip
    assert [(f["id"], f["state"]) for f in outcome["failures"]] == [(job_id, "FAILED")]


def test_wait_for_nothing_is_refused(hello) -> None:
    assert hello.fails("job", "wait", "--tag", "no=such") == (
        "Error: no job matches what was given: nothing to wait for (see `balsamd job ls`)\n"
    )


def test_wait_refuses_a_timeout_that_is_no_length_of_time(hello) -> None:
    err = hello.fails("job", "wait", "--timeout", "soon", code=2)
    assert "Invalid value for '--timeout': 'soon' is not a length of time; give seconds (90)" in err


def test_wait_from_python_returns_the_outcome(hello, site_path, run_to) -> None:
    ids = [hello.job(f"w{n}") for n in range(2)]
    assert run_to(ids[0], S.RUN_DONE) == S.JOB_FINISHED
    with balsamd.connect(site_path) as site:
        seen: list[WaitOutcome] = []
        outcome = site.jobs.wait_for(ids, timeout=0.3, progress=seen.append)
        assert (outcome.total, outcome.finished, outcome.pending, outcome.timed_out) == (2, 1, 1, True)
        assert seen and all(o.total == 2 for o in seen)
        site.jobs.kill([ids[1]])
        outcome = site.jobs.wait_for(site.jobs.filter())
    assert (outcome.finished, outcome.killed, outcome.succeeded) == (1, 1, False)
    assert outcome.failures == [Failure(id=ids[1], state=S.KILLED, reason="killed by user")]


def test_polls_back_off_while_nothing_changes_and_never_outpace_the_count() -> None:
    assert next_interval(0.25, 0.001, changed=True, first=0.25, most=5.0) == 0.25
    assert next_interval(1.0, 0.001, changed=False, first=0.25, most=5.0) == 1.5
    assert next_interval(4.0, 0.001, changed=False, first=0.25, most=5.0) == 5.0
    assert next_interval(0.25, 0.8, changed=True, first=0.25, most=5.0) == 8.0  # a count of 0.8 s


def test_a_tally_counts_the_final_states() -> None:
    outcome = tally({"RUNNING": 2, "JOB_FINISHED": 5, "FAILED": 1, "KILLED": 1, "READY": 1})
    assert (outcome.total, outcome.finished, outcome.failed, outcome.killed, outcome.pending) == (10, 5, 1, 1, 3)


def test_the_summary_names_a_screenful_of_failures_and_counts_the_rest() -> None:
    failures = [Failure(id=f"J{n}", state=S.FAILED, reason="line one\nexit code 1\n") for n in range(20)]
    outcome = WaitOutcome(total=100, finished=70, failed=30, seconds=3725.0, failures=failures)
    lines = summary(outcome).splitlines()
    assert lines[0] == "100 job(s): 70 finished, 30 failed, 0 killed, 0 not ended (1:02:05)"
    assert lines[1] == "  FAILED J0: exit code 1"
    assert lines[-1] == "  and 10 more (`balsamd job ls --state FAILED --state KILLED` lists them)"
    assert len(lines) == 22


def test_on_a_terminal_a_bar_shows_how_many_ended(hello, run_to) -> None:
    ids = [hello.job(f"w{n}") for n in range(2)]
    assert run_to(ids[0], S.RUN_DONE) == S.JOB_FINISHED
    hello("job", "kill", ids[1])
    leader, follower = os.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_DEBUG")}
    argv = [sys.executable, "-m", "balsamd", "--site", str(hello.site), "job", "wait", *ids]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    out, _ = proc.communicate(timeout=60)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end is closed: all was read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    assert proc.returncode == FAILED_EXIT
    assert "waiting" in drawn.decode() and "2/2" in drawn.decode() and "1 failed" in drawn.decode()
    assert out.startswith("2 job(s): 1 finished, 0 failed, 1 killed")


def test_wait_for_the_jobs_in_a_state_when_it_begins(hello, run_to) -> None:
    waiting_ids = [hello.job(f"w{n}") for n in range(2)]
    killed = hello.job("k")
    hello("job", "kill", killed)  # not PREPROCESSED: not waited for, though final and failed
    out = hello("job", "wait", "--state", "preprocessed", "--timeout", "0.3", code=TIMED_OUT_EXIT).stdout
    assert out.startswith("timed out: 2 job(s): 0 finished, 0 failed, 0 killed, 2 not ended")
    for job_id in waiting_ids:
        assert run_to(job_id, S.RUN_DONE) == S.JOB_FINISHED
    assert hello("job", "wait", *waiting_ids).stdout.startswith("2 job(s): 2 finished")
    assert "nothing to wait for" in hello.fails("job", "wait", "--state", "RUNNING")


def test_polls_space_out_while_nothing_changes_and_start_over_when_a_job_ends(hello, site_path, run_to) -> None:
    ids = [hello.job(f"w{n}") for n in range(2)]
    pauses: list[float] = []

    def between_polls(seconds: float) -> None:
        """Instead of sleeping: the first job ends after the third pause, the second after the fifth."""
        pauses.append(seconds)
        ending = {3: ids[0], 5: ids[1]}.get(len(pauses))
        if ending:
            assert run_to(ending, S.RUN_DONE) == S.JOB_FINISHED

    with balsamd.connect(site_path) as site:
        outcome = wait_for(site.jobs, criteria={"ids": ids}, first_poll=1.0, max_poll=2.0, sleep=between_polls)
    assert pauses == [1.0, 1.5, 2.0, 1.0, 1.5]
    assert (outcome.finished, outcome.succeeded) == (2, True)
