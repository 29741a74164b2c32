"""How runs end when the launcher must stop: wall time, SIGTERM, a user's kill, and a launcher
killed outright whose jobs a second launcher recovers."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from balsamd.cli import cli

from .conftest import LaunchSite, new_site, records, timed

# traps SIGTERM to record it; "@ready" once the trap is set
TRAPPING = "trap 'echo \"@term $(date +%s.%N)\"; exit 143' TERM; echo '@ready x'; sleep 60 & wait"
WALL_MIN = 0.05  # a 3 s allocation
GRACE_SEC = 1.0


def ready(site: LaunchSite, job_ids: list[str]) -> bool:
    return set(site.states(job_ids)) == {"RUNNING"} and all(records(site.output(i), "ready") for i in job_ids)


class WallTime:
    """A launcher with a 3 s wall time: two endless runs, a job that fits the time left and
    one that does not."""

    def __init__(self, site: LaunchSite) -> None:
        self.site = site
        site.configure(timeout_grace_sec=GRACE_SEC, stop_claiming_min=0.0)
        site.command_app("Endless", "sleep 60")
        site.command_app("Quick", "true")
        self.endless = site.create("Endless", count=2, node_packing_count=4)
        self.fits = site.create("Quick", wall_time_min=0.01, node_packing_count=4)
        self.too_long = site.create("Quick", wall_time_min=1.0, node_packing_count=4)
        proc = site.start_launcher(
            "--job-mode", "serial", "--nodes", "n1", "--wall-time-min", str(WALL_MIN), "--idle-ttl", "60"
        )
        self.summary = site.finish(proc)
        self.session = site.session_of(proc.pid)


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WallTime]:
    with new_site(tmp_path_factory.mktemp("wall")) as site:
        yield WallTime(site)


def test_wall_time_end_times_out_runs_which_become_restart_ready(wall: WallTime) -> None:
    assert "launcher finished (wall time is ending)" in wall.summary
    assert "2 timed out" in wall.summary
    for job_id in wall.endless:
        assert wall.site.path(job_id)[-3:] == ["RUNNING", "RUN_TIMEOUT", "RESTART_READY"]
        [timeout] = [e for e in wall.site.events(job_id) if e.to_state == "RUN_TIMEOUT"]
        assert timeout.reason == "stopped: wall time is ending"
        # stopped within the allocation, not after it
        assert timeout.ts < wall.session.created_at + WALL_MIN * 60
    assert wall.session.state == "closed"
    assert wall.session.ended_at is not None
    assert wall.session.ended_at < wall.session.created_at + WALL_MIN * 60


def test_jobs_longer_than_the_remaining_wall_time_are_not_claimed(wall: WallTime) -> None:
    assert wall.site.states(wall.fits) == ["JOB_FINISHED"]
    [job_id] = wall.too_long
    job = wall.site.job(job_id)
    assert (job.state, job.session_id) == ("PREPROCESSED", None)
    assert "RUNNING" not in wall.site.path(job_id)


def test_sigterm_drains_runs_as_run_timeout_and_closes_the_session(site: LaunchSite) -> None:
    site.command_app("Trapping", TRAPPING)
    job_ids = site.create("Trapping", count=2, node_packing_count=2)
    proc = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "60")
    site.wait_until(lambda: ready(site, job_ids), "both runs are running")

    os.kill(proc.pid, signal.SIGTERM)
    summary = site.finish(proc)

    assert "launcher finished (received SIGTERM): 2 started, 0 done, 0 errors, 2 timed out" in summary
    for job_id in job_ids:
        assert records(site.output(job_id), "term"), "the run did not get SIGTERM"
        assert site.path(job_id)[-3:] == ["RUNNING", "RUN_TIMEOUT", "RESTART_READY"]
    assert site.session_of(proc.pid).state == "closed"


def test_user_kill_stops_a_running_job_at_the_next_heartbeat_and_it_stays_killed(
    site: LaunchSite,
) -> None:
    site.configure(heartbeat_sec=0.3)
    site.command_app("Trapping", TRAPPING)
    [job_id] = site.create("Trapping")
    proc = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
    site.wait_until(lambda: ready(site, [job_id]), "the run is running")

    killed_at = time.time()
    result = CliRunner().invoke(cli, ["--site", str(site.root), "job", "kill", job_id], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = site.finish(proc)

    assert "1 started, 0 done, 0 errors, 0 timed out, 1 killed" in summary
    [[term_at]] = records(site.output(job_id), "term")
    assert float(term_at) >= killed_at
    job = site.job(job_id)
    assert (job.state, job.session_id) == ("KILLED", None)
    assert site.path(job_id)[-2:] == ["RUNNING", "KILLED"]


def test_a_claimed_job_killed_before_it_started_is_never_started(site: LaunchSite) -> None:
    # four runs fill the node; the fifth job waits in the launcher's backlog, claimed
    site.configure(heartbeat_sec=0.3)
    site.command_app("Trapping", TRAPPING)
    site.command_app("Stamped", timed("true"))
    blockers = site.create("Trapping", count=4, node_packing_count=4)
    [waiting] = site.create("Stamped", node_packing_count=4)
    proc = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
    site.wait_until(lambda: ready(site, blockers), "the node is full")
    assert site.job(waiting).session_id == site.session_of(proc.pid).id

    # the waiting job is killed first, so the heartbeat that frees the node knows of it
    for job_ids in ([waiting], blockers):
        result = CliRunner().invoke(cli, ["--site", str(site.root), "job", "kill", *job_ids], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    summary = site.finish(proc)

    assert "4 started, 0 done, 0 errors, 0 timed out, 4 killed" in summary
    assert site.output(waiting) == ""
    assert site.path(waiting)[-2:] == ["PREPROCESSED", "KILLED"]


def test_killed_launcher_jobs_time_out_once_and_a_second_launcher_finishes_them(site: LaunchSite) -> None:
    site.configure(heartbeat_sec=0.75, session_expiry_sec=1.0)
    log = site.scratch / "runs.log"
    site.command_app(
        "Logged",
        f'echo "$BALSAMD_JOB_ID start $(date +%s.%N)" >> {log}; sleep 0.4; '
        f'echo "$BALSAMD_JOB_ID end $(date +%s.%N)" >> {log}',
    )
    job_ids = site.create("Logged", count=4, node_packing_count=4)
    [held] = site.create("Logged", node_packing_count=4)  # claimed too, but no room to start
    first = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "60")
    site.wait_until(lambda: set(site.states(job_ids)) == {"RUNNING"}, "four jobs are running")
    assert site.job(held).session_id == site.session_of(first.pid).id

    os.kill(first.pid, signal.SIGKILL)
    site.finish(first, code=-signal.SIGKILL)
    dead = site.session_of(first.pid)
    assert dead.state == "open"
    # the second launcher's first heartbeat finds the dead session past its expiry
    site.wait_until(lambda: time.time() > dead.heartbeat_at + 1.0, "the dead session is stale")
    second = site.start_launcher("--job-mode", "serial", "--nodes", "n1,n2", "--idle-ttl", "2")
    summary = site.finish(second)

    assert "5 started, 5 done" in summary
    assert site.session_of(first.pid).state == "expired"
    for job_id in job_ids:
        events = site.events(job_id)
        states = [str(e.to_state) for e in events]
        assert states[states.index("RUNNING") :] == [
            "RUNNING", "RUN_TIMEOUT", "RESTART_READY",
            "RUNNING", "RUN_DONE", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED",
        ]  # fmt: skip
        [timeout] = [e for e in events if e.to_state == "RUN_TIMEOUT"]
        assert timeout.reason == "launcher session expired"
        running = [e.ts for e in events if e.to_state == "RUNNING"]
        ended = [e.ts for e in events if e.to_state in ("RUN_TIMEOUT", "RUN_DONE")]
        assert running[0] < ended[0] <= running[1] < ended[1]
    # the job that never started goes back without a timeout and runs once
    assert site.path(held)[-5:] == ["RUNNING", "RUN_DONE", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]
    assert site.path(held).count("RUNNING") == 1
    # the runs themselves: the first died with its launcher, the rerun completed
    lines = [line.split() for line in log.read_text().splitlines()]
    for job_id in job_ids:
        marks = [(float(ts), what) for jid, what, ts in lines if jid == job_id]
        assert [what for _, what in sorted(marks)] == ["start", "start", "end"]


def test_runs_of_a_killed_launcher_stop_before_its_session_expires(site: LaunchSite) -> None:
    site.configure(heartbeat_sec=0.5, session_expiry_sec=1.0)
    site.command_app("Sleeper", "echo $$ > run.pid; exec sleep 30")
    [job_id] = site.create("Sleeper")
    pid_file = site.data / site.job(job_id).workdir / "run.pid"
    first = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "60")
    site.wait_until(
        lambda: site.states([job_id]) == ["RUNNING"] and pid_file.exists() and pid_file.read_text(),
        "the run is running",
    )
    run_pid = int(pid_file.read_text())

    with _stop_leftover(run_pid):
        os.kill(first.pid, signal.SIGKILL)
        site.finish(first, code=None)
        dead = site.session_of(first.pid)
        site.wait_until(lambda: time.time() > dead.heartbeat_at + 1.0, "the session could expire")
        assert not _alive(run_pid), f"run {run_pid} still running after its launcher was killed"


def _alive(pid: int) -> bool:
    """A live (not zombie) process running ``sleep``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split()[1] == "(sleep)" and stat.split()[2] != "Z"


@contextlib.contextmanager
def _stop_leftover(pid: int) -> Iterator[None]:
    try:
        yield
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_heartbeats_never_stop_runs_that_were_just_started(site: LaunchSite) -> None:
    site.configure(cpus_per_node=8, heartbeat_sec=0.02)
    site.command_app("Nap", "sleep 0.05")
    job_ids = site.create("Nap", count=20, node_packing_count=4)

    summary = site.launch("--job-mode", "serial", "--nodes", "n1,n2", "--idle-ttl", "0.5")

    assert "20 started, 20 done, 0 errors, 0 timed out, 0 killed" in summary
    assert set(site.states(job_ids)) == {"JOB_FINISHED"}
