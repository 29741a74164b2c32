"""``balsamd events``: the history filtered by state, time, tag and app, and followed live."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import balsamd
from balsamd.states import JobState

S = JobState


def changes(run, *args: str) -> list[tuple[str, str]]:
    return [(e["job_id"], e["to_state"]) for e in run.json("events", *args)]


def test_events_to_a_state_from_a_state(hello, run_to) -> None:
    killed, ran = hello.job("k"), hello.job("r")
    hello("job", "kill", killed)
    assert run_to(ran, S.RUN_DONE) == S.JOB_FINISHED
    assert changes(hello, "--state", "killed") == [(killed, "KILLED")]
    assert changes(hello, "--from-state", "RUNNING") == [(ran, "RUN_DONE")]
    assert changes(hello, "--state", "KILLED", "--state", "JOB_FINISHED") == [(killed, "KILLED"), (ran, "JOB_FINISHED")]
    table = hello("events", "--state", "KILLED").stdout.splitlines()
    assert table[0].split() == ["TIME", "JOB", "FROM", "TO", "REASON"]
    assert table[1].split()[2:] == [killed, "PREPROCESSED", "KILLED", "killed", "by", "user"]


def test_events_since_and_until_a_time_ago_or_an_iso_time(hello) -> None:
    job_id = hello.job("w")
    assert {j for j, _ in changes(hello, "--since", "10m")} == {job_id}
    assert changes(hello, "--until", "10m") == []
    in_an_hour = (datetime.datetime.now() + datetime.timedelta(hours=1)).isoformat(timespec="seconds")
    assert changes(hello, "--since", in_an_hour) == []
    assert {j for j, _ in changes(hello, "--until", in_an_hour)} == {job_id}
    assert {j for j, _ in changes(hello, "--since", "2026-01-01", "--until", "2h")} == set()


def test_events_of_jobs_with_a_tag_or_of_an_app(hello) -> None:
    hello("app", "create", "other", "--command", "true")
    tagged = hello.job("t", "a", "-t", "run=1")
    other = hello.json("job", "create", "--app", "other", "--workdir", "o")["id"]
    assert {j for j, _ in changes(hello, "--tag", "run=1")} == {tagged}
    assert {j for j, _ in changes(hello, "--app", "other")} == {other}


def test_the_latest_events_oldest_first(hello, run_to) -> None:
    job_id = hello.job("w")
    assert run_to(job_id, S.RUN_DONE) == S.JOB_FINISHED
    everything = hello.json("events")
    assert hello.json("events", "--latest", "2") == everything[-2:]
    assert [e["to_state"] for e in everything[-2:]] == ["STAGED_OUT", "JOB_FINISHED"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--since", "yesterday"), "Invalid value for '--since': 'yesterday' is not a time; give an ISO time"),
        (("--state", "DONE"), "'DONE' is not a job state"),
        (("--tag", "run"), "'run' is not KEY=VALUE"),
        (("--follow", "--limit", "3"), "--limit takes the oldest events, --follow the newest: give --latest N instead"),
    ],
)
def test_events_refuse_a_command_line_that_means_nothing(hello, args, said) -> None:
    assert said in hello.fails("events", *args, code=2)


def test_the_store_refuses_filters_that_contradict_each_other(hello) -> None:
    assert hello.fails("events", "--since", "1h", "--until", "2h") == (
        "Error: events: since is after until: nothing lies between; swap them\n"
    )
    assert hello.fails("events", "--latest", "2", "--limit", "2") == (
        "Error: events: give latest (the last N) or limit (the first N), not both\n"
    )


def test_follow_prints_a_change_made_after_it_started_until_interrupted(hello, site_path: Path) -> None:
    before = hello.job("before")
    env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_DEBUG")}
    argv = [sys.executable, "-m", "balsamd", "--site", str(site_path), "events", "--follow", "--json", "--poll", "0.1"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        listed = [json.loads(proc.stdout.readline()) for _ in range(3)]  # what was there: its creation
        assert [(e["job_id"], e["to_state"]) for e in listed][-1] == (before, "PREPROCESSED")
        with balsamd.connect(site_path) as site:
            site.jobs.kill([before])
        new = json.loads(proc.stdout.readline())
        assert (new["job_id"], new["to_state"], new["reason"]) == (before, "KILLED", "killed by user")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert (proc.returncode, out, err) == (0, "", "")
