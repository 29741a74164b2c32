"""``balsamd top --once`` as a user types it: one frame as text or JSON; options checked first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import balsamd
from balsamd.states import JobState


def test_once_prints_one_frame_of_the_sites_jobs(hello, run_to) -> None:
    a = hello.job("r/1")
    hello.job("r/2", "b", "-t", "run=x")
    run_to(a, JobState.RUN_ERROR)
    lines = hello("top", "--once").stdout.splitlines()
    assert lines[0].startswith("balsamd top   site testsite   ") and lines[0].endswith("all jobs")
    assert lines[2:6] == ["JOBS  2", "  STATE         JOBS", "  PREPROCESSED  1", "  FAILED        1"]
    assert "DAEMON  the daemon is not running (no daemon.json in the site); start it with `balsamd start`" in lines
    failures = lines[lines.index("FAILURES  (latest first)") + 1 :]
    assert failures[0].split() == ["JOB", "APP", "STATE", "WHEN", "REASON"]
    assert failures[1].split()[:3] == [a, "hello", "FAILED"]


def test_once_json_prints_the_frames_data_narrowed_by_app_and_tags(hello) -> None:
    hello.job("r/1", "a", "-t", "run=x")
    hello.job("r/2", "b", "-t", "run=y")
    frame = hello.json("top", "--once", "--app", "hello", "--tag", "run=x")
    assert frame["site"] == "testsite"
    assert frame["view"] == {"app": "hello", "tags": {"run": "x"}}
    assert frame["total"] == 1
    assert frame["states"] == [{"state": "PREPROCESSED", "count": 1, "change": 0}]
    assert [r["minutes"] for r in frame["throughput"]] == [1, 5, 60]
    assert frame["batch_jobs"] == [] and frame["failures"] == [] and frame["transfers"] == {}


def test_a_frame_counts_what_the_api_changed(hello, site_path) -> None:
    ids = [hello.job(f"r/{n}") for n in range(3)]
    with balsamd.connect(site_path) as site:
        site.jobs.kill(ids[:2])
    frame = hello.json("top", "--once")
    assert {s["state"]: s["count"] for s in frame["states"]} == {"PREPROCESSED": 1, "KILLED": 2}


def test_json_without_once_is_a_usage_error(run) -> None:
    result = run("top", "--json", code=2)
    assert "--json prints one frame's data: give --once with it" in result.stderr


def test_a_malformed_tag_or_interval_is_refused_naming_the_option(run) -> None:
    assert "--tag" in run("top", "--once", "--tag", "nokey", code=2).stderr
    assert "--interval" in run("top", "--interval", "0", code=2).stderr


def test_top_runs_at_the_site_not_through_the_central_database(run) -> None:
    result = run("--central", "postgresql://u@h/db", "top", "--once", site=False, code=2)
    assert "`balsamd top` runs at the site" in result.stderr


def test_not_on_a_terminal_frames_follow_each_other_until_interrupted(hello, site_path) -> None:
    hello.job("r/1")
    env = {**os.environ, "PYTHONPATH": str(Path(balsamd.__file__).resolve().parents[1]), "COLUMNS": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "balsamd", "--site", str(site_path), "top", "--interval", "0.2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        headers = []
        while len(headers) < 2:
            line = proc.stdout.readline()
            assert line, f"top ended early: {proc.stderr.read() if proc.stderr else ''}"
            if line.startswith("balsamd top"):
                headers.append(line)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert all(len(line) <= 100 for line in out.splitlines())
