"""``balsamd queue submit / ls / rm`` as users type them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import balsamd
from balsamd.models import BatchJobState
from balsamd.render import timestamp
from balsamd.rpc.record import DaemonRecord, this_host, write_record
from tests.cli.conftest import Balsamd

B = BatchJobState
NO_DAEMON = "note: the daemon is not running, so nothing will submit this batch job; start it with `balsamd start`\n"
LINE = re.compile(r"^(\w+) pending_submission: 2 node\(s\) x 30 min, queue local, project local, mpi mode\n$")


def batch_jobs(site: Path) -> list:
    with balsamd.connect(site) as s:
        return s.store.batch_jobs()


def move(site: Path, batch_id: str, *states: BatchJobState, **fields: object) -> None:
    with balsamd.connect(site) as s:
        for state in states:
            s.store.update_batch_job(batch_id, state, **fields)


def configure(site: Path, **scheduler: object) -> None:
    path = site / "settings.toml"
    text = path.read_text()
    for key, value in scheduler.items():
        text, n = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {json.dumps(value)} ", text, count=1)
        assert n == 1, key
    path.write_text(text)


def submit(run: Balsamd, *args: str) -> str:
    """Submit a 2-node, 30-minute batch job; returns its id."""
    result = run("queue", "submit", "--num-nodes", "2", "--wall-time-min", "30", *args)
    match = LINE.match(result.stdout)
    assert match, result.stdout
    return match.group(1)


# ----- submit -------------------------------------------------------------------------------


def test_submit_writes_a_pending_batch_job_and_warns_that_no_daemon_runs(run, site_path):
    result = run("queue", "submit", "--num-nodes", "2", "--wall-time-min", "30")
    match = LINE.match(result.stdout)
    assert match, result.stdout
    assert result.stderr == NO_DAEMON
    [made] = batch_jobs(site_path)
    assert (made.id, made.state, made.origin, made.num_nodes, made.wall_time_min) == (
        match.group(1), B.PENDING_SUBMISSION, "user", 2, 30,
    )  # fmt: skip
    assert (made.queue, made.project, str(made.job_mode), made.filter_tags) == ("local", "local", "mpi", {})


def test_submit_with_every_option_and_json(run, site_path):
    result = run("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--queue", "debug",
                 "--project", "chem", "--job-mode", "serial", "--tag", "run=a b", "--tag", "x=1", "--json")  # fmt: skip
    assert result.stderr == NO_DAEMON
    data = json.loads(result.stdout)
    [made] = batch_jobs(site_path)
    assert data == msgspec.to_builtins(made)
    assert (data["queue"], data["project"], data["job_mode"], data["filter_tags"]) == (
        "debug", "chem", "serial", {"run": "a b", "x": "1"},
    )  # fmt: skip
    assert data["state"] == "pending_submission"


@pytest.fixture
def fake_daemon(site_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """daemon.json naming a live process that looks like a daemon (its command line says balsamd)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "balsamd"])
    write_record(site_path, DaemonRecord(pid=proc.pid, host=this_host(), port=1, started_at=0.0))
    yield proc
    proc.kill()
    proc.wait()


def test_submit_does_not_warn_when_the_daemon_runs(run, fake_daemon):
    assert run("queue", "submit", "--num-nodes", "2", "--wall-time-min", "30").stderr == ""


def test_submit_warns_when_daemon_json_is_left_by_a_daemon_that_is_gone(run, site_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_record(site_path, DaemonRecord(pid=gone.pid, host=this_host(), port=1, started_at=0.0))
    assert run("queue", "submit", "--num-nodes", "2", "--wall-time-min", "30").stderr == NO_DAEMON


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        (["--num-nodes", "3"], {}, "--num-nodes 3 exceeds the site's max_nodes=2 (lower it, or raise [nodes] "
                                   "max_nodes in settings.toml)"),
        (["--num-nodes", "0"], {}, "--num-nodes must be at least 1 (got 0); give 1 or more"),
        (["--wall-time-min", "61"], {"max_wall_time_min": 60}, "--wall-time-min 61 exceeds [scheduler] "
                                                                "max_wall_time_min=60"),
        (["--wall-time-min", "0"], {}, "--wall-time-min must be at least 1 (got 0); give 1 or more"),
        (["--queue", "gpu"], {"allowed_queues": ["local", "debug"]},
         "queue 'gpu' is not allowed here; use one of: local, debug"),
        (["--project", "x"], {"allowed_projects": ["chem"], "default_project": "chem"},
         "project 'x' is not allowed here; use one of: chem"),
        (["--queue", "debug\n#PBS -l x"], {}, "queue 'debug\\n#PBS -l x' is not a scheduler's queue name "
                                                "(letters, digits and _.@+:-, one word); "
                                                "give the scheduler's name for it"),
    ],
    ids=["too-wide", "no-nodes", "too-long", "no-time", "queue", "project", "queue-with-a-line"],
)  # fmt: skip
def test_submit_refuses_what_the_site_does_not_allow_and_writes_nothing(run, site_path, args, settings, message):
    configure(site_path, **settings)
    base = {"--num-nodes": "1", "--wall-time-min": "30"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [x for pair in base.items() for x in pair]
    assert run.fails("queue", "submit", *argv) == f"Error: batch job refused: {message}\n"
    assert batch_jobs(site_path) == []


def test_submit_reports_every_problem_at_once(run, site_path):
    err = run.fails("queue", "submit", "--num-nodes", "9", "--wall-time-min", "0")
    assert err == (
        "Error: batch job refused: --num-nodes 9 exceeds the site's max_nodes=2 (lower it, or raise [nodes] "
        "max_nodes in settings.toml); --wall-time-min must be at least 1 (got 0); give 1 or more\n"
    )


def test_submit_refuses_once_max_queued_batch_jobs_are_active(run, site_path):
    configure(site_path, max_queued=2)
    first, second = submit(run), submit(run)
    move(site_path, first, B.QUEUED, B.RUNNING)
    err = run.fails("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5")
    assert err == (
        "Error: batch job refused: 2 batch jobs are already pending, queued or running ([scheduler] "
        "max_queued=2); wait for one to finish or remove one with `balsamd queue rm ID`\n"
    )
    assert len(batch_jobs(site_path)) == 2
    run("queue", "rm", second)
    submit(run)


def test_submit_refuses_a_malformed_tag(run, site_path):
    result = run("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--tag", "novalue", code=2)
    assert "'novalue' is not KEY=VALUE" in result.stderr
    assert batch_jobs(site_path) == []


def test_submit_with_partitions_and_an_allowed_optional_parameter(run, site_path):
    configure(site_path, optional_params=["reservation"])
    result = run("queue", "submit", "--num-nodes", "2", "--wall-time-min", "5", "--partition",
                 "serial:1:size=small,run=a b", "--partition", "mpi:1", "--optional-param", "reservation=r7",
                 "--json")  # fmt: skip
    data = json.loads(result.stdout)
    assert data["partitions"] == [
        {"job_mode": "serial", "num_nodes": 1, "filter_tags": {"size": "small", "run": "a b"}},
        {"job_mode": "mpi", "num_nodes": 1, "filter_tags": {}},
    ]
    assert data["optional_params"] == {"reservation": "r7"}
    [made] = batch_jobs(site_path)
    assert msgspec.to_builtins(made) == data


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partition", "serial:2", "--partition", "mpi:1"],
         "Error: batch job refused: partitions take 2 + 1 = 3 nodes, more than the batch job's num_nodes=2; "
         "shrink them or ask for more nodes\n"),
        (["--partition", "gpu:1"],
         "Error: batch job: partitions[0].job_mode: 'gpu' is not a job mode; use one of mpi, serial\n"),
        (["--optional-param", "qos=high"],
         "Error: batch job refused: optional parameter 'qos' is not allowed at this site (allowed: none); its "
         "owner may add it to [scheduler] optional_params in settings.toml\n"),
    ],
    ids=["partitions-too-wide", "unknown-mode", "param-not-allowed"],
)  # fmt: skip
def test_submit_refuses_partitions_and_parameters_the_site_cannot_take(run, site_path, args, message):
    assert run.fails("queue", "submit", "--num-nodes", "2", "--wall-time-min", "5", *args) == message
    assert batch_jobs(site_path) == []


def test_submit_refuses_a_malformed_partition(run, site_path):
    result = run("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--partition", "serial", code=2)
    assert "'serial' is not MODE:NODES[:KEY=VALUE,...] (e.g. serial:2:size=small)" in result.stderr
    assert batch_jobs(site_path) == []


# ----- ls -----------------------------------------------------------------------------------


def test_ls_without_batch_jobs(run):
    assert run("queue", "ls").stdout == "no active batch jobs (--all shows ended ones)\n"
    assert run("queue", "ls", "--all").stdout == "no batch jobs\n"
    assert run.json("queue", "ls") == []


def test_ls_shows_active_batch_jobs_and_all_with_all(run, site_path):
    pending, running, ended = submit(run), submit(run), submit(run)
    move(site_path, running, B.QUEUED, scheduler_id="4242")
    move(site_path, running, B.RUNNING, start_time=1_700_000_000.0, status_info="R\nsecond line")
    move(site_path, ended, B.FINISHED, status_info="removed by user")
    started = timestamp(1_700_000_000.0)
    assert run("queue", "ls").stdout == (
        f"ID{' ' * 24}  STATE               SCHED ID  NODES  MIN  MODE  QUEUE  STARTED{' ' * 14}STATUS\n"
        f"{pending}  pending_submission  -         2      30   mpi   local  -{' ' * 20}-\n"
        f"{running}  running             4242      2      30   mpi   local  {started}  R\n"
    )
    listed = run("queue", "ls", "--all").stdout.splitlines()
    assert [line.split()[0] for line in listed[1:]] == sorted([pending, running, ended])
    row = next(line for line in listed if line.startswith(ended))
    assert row.split(maxsplit=8)[1:] == ["finished", "-", "2", "30", "mpi", "local", "-", "removed by user"]


def test_ls_json_lists_whole_batch_jobs(run, site_path):
    pending, ended = submit(run), submit(run)
    run("queue", "rm", ended)
    active = run.json("queue", "ls")
    assert [b["id"] for b in active] == [pending]
    assert set(active[0]) == {
        "id", "num_nodes", "wall_time_min", "job_mode", "project", "queue", "filter_tags", "state", "scheduler_id",
        "status_info", "created_at", "start_time", "end_time", "origin", "partitions", "optional_params", "owner",
    }  # fmt: skip
    everything = run.json("queue", "ls", "--all")
    assert {b["id"]: b["state"] for b in everything} == {pending: "pending_submission", ended: "finished"}


# ----- rm -----------------------------------------------------------------------------------


def test_rm_of_a_batch_job_not_yet_submitted_finishes_it_at_once(run, site_path):
    batch_id = submit(run)
    assert run("queue", "rm", batch_id).stdout == f"{batch_id} finished\n"
    [gone] = batch_jobs(site_path)
    assert (gone.state, gone.status_info) == (B.FINISHED, "removed by user")


def test_rm_of_queued_and_running_batch_jobs_asks_the_daemon_to_cancel_them(run, site_path):
    queued, running = submit(run), submit(run)
    move(site_path, queued, B.QUEUED)
    move(site_path, running, B.QUEUED, B.RUNNING)
    assert run("queue", "rm", queued, running).stdout == f"{queued} pending_deletion\n{running} pending_deletion\n"
    assert {b.state for b in batch_jobs(site_path)} == {B.PENDING_DELETION}
    # asking again is harmless
    assert run("queue", "rm", queued).stdout == f"{queued} pending_deletion\n"


@pytest.mark.parametrize("state", [B.FINISHED, B.SUBMIT_FAILED])
def test_rm_of_an_ended_batch_job_is_an_error(run, site_path, state):
    batch_id = submit(run)
    move(site_path, batch_id, state)
    assert run.fails("queue", "rm", batch_id) == (
        f"Error: batch job {batch_id} has already ended ({state}); nothing to remove\n"
    )


def test_rm_of_an_unknown_batch_job_is_an_error(run):
    assert run.fails("queue", "rm", "nope") == (
        "Error: no batch job with id nope (list them with `balsamd queue ls`)\n"
    )


def test_rm_needs_an_id(run):
    assert "Missing argument 'BATCH_IDS...'" in run("queue", "rm", code=2).stderr
