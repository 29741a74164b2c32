"""Slurm output parsing on real and hand-made samples, and SlurmScheduler with a fake ``run``.

Samples without "malformed", "bad", "unknown", "cluster" or "multinode" in their names were
captured from Slurm 22.05 started by scripts/slurm.sh; the others are made by hand.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from balsamd.models import BatchJob, BatchJobState
from balsamd.sched import detect_scheduler, make_scheduler
from balsamd.sched.base import BackfillWindow, Completed, SchedulerError, SchedulerOutputError
from balsamd.sched.script import render, values
from balsamd.sched.slurm import (
    SlurmScheduler,
    parse_sinfo,
    parse_squeue,
    parse_submit,
    parse_time,
    parse_time_limit,
)
from tests.sched import sample

B = BatchJobState


def local(iso: str) -> float:
    return time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%S"))


class FakeRun:
    """Answers each command from a queue of replies per program, and records every argv."""

    def __init__(self, **replies: list[Completed]) -> None:
        self.replies = replies
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        return self.replies[argv[0]].pop(0)


def ok(stdout: str = "") -> Completed:
    return Completed(0, stdout, "")


def failed(stderr: str, returncode: int = 1) -> Completed:
    return Completed(returncode, "", stderr)


INVALID = sample("slurm_squeue_invalid_id.stderr")


# ----- sbatch -------------------------------------------------------------------------------


def test_parse_submit_real_reply():
    assert parse_submit(sample("slurm_sbatch_parsable.txt")) == "9"


def test_parse_submit_with_cluster_name():
    assert parse_submit(sample("slurm_sbatch_cluster.txt")) == "1234"


@pytest.mark.parametrize("text", ["", "\n", "Submitted batch job 12\n", "abc;cluster\n"])
def test_parse_submit_rejects_other_text(text):
    with pytest.raises(SchedulerOutputError) as err:
        parse_submit(text)
    assert err.value.raw == text


# ----- squeue -------------------------------------------------------------------------------


def test_parse_squeue_real_states():
    got = parse_squeue(sample("slurm_squeue_states.txt"))
    assert {i: (s.state, s.raw_state) for i, s in got.items()} == {
        "1": (B.FINISHED, "COMPLETED"),
        "2": (B.FINISHED, "FAILED"),
        "3": (B.RUNNING, "RUNNING"),
        "4": (B.QUEUED, "PENDING"),
        "5": (B.FINISHED, "CANCELLED"),
        "6": (B.QUEUED, "PENDING"),
    }
    assert got["1"].start_time == local("2026-11-21T12:14:35")
    assert got["1"].end_time == local("2026-11-21T12:14:37")
    assert got["1"].nodes == ["vm"]
    # running: started, no end yet (NONE: no time limit); pending: neither
    assert (got["3"].start_time, got["3"].end_time) == (local("2026-11-21T12:14:37"), None)
    assert (got["4"].start_time, got["4"].end_time, got["4"].nodes) == (None, None, [])
    # cancelled before it ran: Slurm gives the cancel time as start and end, and no nodes
    assert got["5"].end_time == local("2026-11-21T12:14:36")
    assert got["5"].nodes == []


def test_parse_squeue_leaves_out_forecasts():
    got = parse_squeue(sample("slurm_squeue_forecast_timeout.txt"))
    # a pending job's start is Slurm's forecast and a running job's end its time limit
    assert got["12"].state == B.QUEUED
    assert (got["12"].start_time, got["12"].end_time) == (None, None)
    assert got["11"].state == B.RUNNING
    assert (got["11"].start_time, got["11"].end_time) == (local("2026-11-21T12:14:58"), None)
    assert (got["10"].state, got["10"].raw_state) == (B.FINISHED, "TIMEOUT")
    assert got["10"].end_time == local("2026-11-21T12:15:59")


def test_parse_squeue_expands_host_lists():
    got = parse_squeue(sample("slurm_squeue_multinode.txt"))
    assert got["4242"].nodes == ["nid0001", "nid0002", "nid0003", "nid0007"]
    assert got["4243"].state == B.RUNNING  # COMPLETING
    assert got["4243"].nodes == ["nid0010"]
    assert (got["4244"].state, got["4244"].start_time) == (B.QUEUED, None)


@pytest.mark.parametrize(
    "word, state",
    [
        ("PENDING", B.QUEUED), ("CONFIGURING", B.QUEUED), ("REQUEUED", B.QUEUED),
        ("RUNNING", B.RUNNING), ("COMPLETING", B.RUNNING), ("SUSPENDED", B.RUNNING),
        ("COMPLETED", B.FINISHED), ("FAILED", B.FINISHED), ("CANCELLED", B.FINISHED),
        ("TIMEOUT", B.FINISHED), ("NODE_FAIL", B.FINISHED), ("PREEMPTED", B.FINISHED),
        ("OUT_OF_MEMORY", B.FINISHED), ("BOOT_FAIL", B.FINISHED), ("DEADLINE", B.FINISHED),
    ],
)  # fmt: skip
def test_parse_squeue_state_words(word, state):
    assert parse_squeue(f"7|{word}|N/A|N/A|\n")["7"].state == state


def test_parse_squeue_empty():
    assert parse_squeue("") == {}
    assert parse_squeue("\n  \n") == {}


@pytest.mark.parametrize(
    "name",
    ["slurm_squeue_malformed.txt", "slurm_squeue_unknown_state.txt", "slurm_squeue_bad_time.txt",
     "slurm_squeue_invalid_id.stderr", "slurm_sinfo_busy.txt"],
)  # fmt: skip
def test_parse_squeue_rejects_malformed(name):
    text = sample(name)
    with pytest.raises(SchedulerOutputError) as err:
        parse_squeue(text)
    assert err.value.raw == text


def test_parse_squeue_rejects_bad_host_list():
    with pytest.raises(SchedulerOutputError):
        parse_squeue("7|RUNNING|N/A|N/A|nid[0001-\n")


@pytest.mark.parametrize("text", ["N/A", "NONE", "Unknown", "", " "])
def test_parse_time_without_a_time(text):
    assert parse_time(text) is None


def test_parse_time_is_local_time():
    assert parse_time("2026-11-21T12:00:00") == local("2026-11-21T12:00:00")
    with pytest.raises(SchedulerOutputError):
        parse_time("21/11/2026 12:00")


# ----- sinfo --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, minutes",
    [
        ("infinite", 0), ("INFINITE", 0), ("UNLIMITED", 0), ("30:00", 30), ("30:59", 30), ("45", 45),
        ("2:00:00", 120), ("12:30:00", 750), ("1-00:00:00", 1440), ("2-01:30:00", 2970),
        ("1-12", 2160), ("1-12:30", 2190),
    ],
)  # fmt: skip
def test_parse_time_limit(text, minutes):
    assert parse_time_limit(text) == minutes


@pytest.mark.parametrize("text", ["soon", "1:2:3:4", "-5", "a-01:00:00", "1-", "30:xx"])
def test_parse_time_limit_rejects(text):
    with pytest.raises(SchedulerOutputError):
        parse_time_limit(text)


def test_parse_sinfo_real_idle_node():
    assert parse_sinfo(sample("slurm_sinfo_idle.txt")) == [
        BackfillWindow(num_nodes=1, wall_time_min=0, queue="debug"),
        BackfillWindow(num_nodes=1, wall_time_min=30, queue="short"),
    ]


def test_parse_sinfo_real_busy_node():
    assert parse_sinfo(sample("slurm_sinfo_busy.txt")) == []


def test_parse_sinfo_real_partition_down():
    assert parse_sinfo(sample("slurm_sinfo_partition_down.txt")) == [
        BackfillWindow(num_nodes=1, wall_time_min=0, queue="debug")
    ]


def test_parse_sinfo_counts_only_idle_nodes_of_up_partitions():
    assert parse_sinfo(sample("slurm_sinfo_cluster.txt")) == [
        BackfillWindow(num_nodes=14, wall_time_min=2880, queue="regular"),
        BackfillWindow(num_nodes=4, wall_time_min=30, queue="debug"),
        BackfillWindow(num_nodes=7, wall_time_min=240, queue="long"),
    ]


def test_parse_sinfo_empty():
    assert parse_sinfo("") == []


@pytest.mark.parametrize("name", ["slurm_sinfo_malformed.txt", "slurm_sinfo_bad_limit.txt", "slurm_squeue_states.txt"])
def test_parse_sinfo_rejects_malformed(name):
    text = sample(name)
    with pytest.raises(SchedulerOutputError) as err:
        parse_sinfo(text)
    assert err.value.raw == text


# ----- the scheduler with a fake run --------------------------------------------------------


def batch(**fields) -> BatchJob:
    return BatchJob(**{"id": "b1", "num_nodes": 2, "wall_time_min": 90, **fields})


def test_found_by_name_and_on_path():
    assert isinstance(make_scheduler("slurm"), SlurmScheduler)
    on_path = {"sbatch", "squeue", "scancel", "sinfo"}
    assert detect_scheduler(lambda c: f"/usr/bin/{c}" if c in on_path else None) == "slurm"
    assert SlurmScheduler.name == "slurm"
    assert set(SlurmScheduler.commands) == on_path


def test_directives_minimal():
    assert SlurmScheduler().directives(batch()) == [
        "#SBATCH --job-name=balsamd-b1",
        "#SBATCH --nodes=2",
        "#SBATCH --time=01:30:00",
        "#SBATCH --output=b1.out",
    ]


def test_directives_with_queue_and_project():
    lines = SlurmScheduler().directives(batch(queue="debug", project="chem42", wall_time_min=1500))
    assert "#SBATCH --partition=debug" in lines
    assert "#SBATCH --account=chem42" in lines
    assert "#SBATCH --time=25:00:00" in lines


def test_rendered_script_puts_directives_before_any_command(tmp_path):
    sched = SlurmScheduler()
    b = batch()
    text = render(sched.default_template, values(b, tmp_path, sched.directives(b)))
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    sbatch = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    commands = [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]
    assert sbatch == list(range(1, 5))
    assert max(sbatch) < min(commands)


def test_submit(tmp_path):
    run = FakeRun(sbatch=[ok("4321\n")])
    script = tmp_path / "b1.sh"
    assert SlurmScheduler(run).submit(script, tmp_path) == "4321"
    assert run.calls == [["sbatch", "--parsable", f"--chdir={tmp_path}", str(script)]]


def test_submit_failure_carries_stderr(tmp_path):
    run = FakeRun(sbatch=[failed(sample("slurm_sbatch_bad_partition.stderr"))])
    with pytest.raises(SchedulerError, match="Invalid partition name specified") as err:
        SlurmScheduler(run).submit(tmp_path / "b1.sh", tmp_path)
    assert not isinstance(err.value, SchedulerOutputError)


def test_submit_unreadable_reply(tmp_path):
    with pytest.raises(SchedulerOutputError):
        SlurmScheduler(FakeRun(sbatch=[ok("queued, probably\n")])).submit(tmp_path / "b1.sh", tmp_path)


def test_status_asks_once_for_all():
    run = FakeRun(squeue=[ok(sample("slurm_squeue_states.txt"))])
    got = SlurmScheduler(run).status(["1", "3", "4", "77"])
    assert run.calls == [["squeue", "-h", "-t", "all", "-j", "1,3,4,77", "-o", "%i|%T|%S|%e|%N"]]
    # only the ids asked for; 77 is unknown to Slurm and so absent
    assert {i: s.state for i, s in got.items()} == {"1": B.FINISHED, "3": B.RUNNING, "4": B.QUEUED}


def test_status_of_nothing_runs_nothing():
    run = FakeRun()
    assert SlurmScheduler(run).status([]) == {}
    assert SlurmScheduler(run).status(["1234:567", "not-a-job"]) == {}  # not Slurm ids
    assert run.calls == []


def test_status_of_one_forgotten_id():
    run = FakeRun(squeue=[failed(INVALID)])
    assert SlurmScheduler(run).status(["999"]) == {}
    assert len(run.calls) == 1


def test_status_falls_back_to_one_query_per_id_on_invalid_id():
    run = FakeRun(squeue=[failed(INVALID), ok("3|RUNNING|2026-11-21T12:14:37|NONE|vm\n"), failed(INVALID)])
    got = SlurmScheduler(run).status(["3", "999"])
    assert list(got) == ["3"]
    assert [c[5] for c in run.calls] == ["3,999", "3", "999"]


def test_status_failure_is_a_scheduler_error():
    run = FakeRun(squeue=[failed("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")])
    with pytest.raises(SchedulerError, match="Unable to contact slurm controller"):
        SlurmScheduler(run).status(["1"])


def test_status_unreadable_reply():
    run = FakeRun(squeue=[ok(sample("slurm_squeue_malformed.txt"))])
    with pytest.raises(SchedulerOutputError):
        SlurmScheduler(run).status(["4242"])


def test_cancel():
    run = FakeRun(scancel=[ok()])
    SlurmScheduler(run).cancel("4321")
    assert run.calls == [["scancel", "4321"]]


@pytest.mark.parametrize(
    "stderr",
    [
        "scancel: error: Kill job error on job id 4321: Invalid job id specified",
        "scancel: error: Kill job error on job id 4321: Job/step already completing or completed",
    ],
)
def test_cancel_of_an_ended_job_is_no_error(stderr):
    SlurmScheduler(FakeRun(scancel=[failed(stderr)])).cancel("4321")


def test_cancel_failure():
    run = FakeRun(scancel=[failed("scancel: error: Kill job error on job id 4321: Access/permission denied")])
    with pytest.raises(SchedulerError, match="permission denied"):
        SlurmScheduler(run).cancel("4321")


def test_backfill():
    run = FakeRun(sinfo=[ok(sample("slurm_sinfo_idle.txt"))])
    windows = SlurmScheduler(run).backfill()
    assert run.calls == [["sinfo", "-h", "-o", "%P|%a|%l|%D|%t"]]
    assert [(w.queue, w.num_nodes, w.wall_time_min) for w in windows] == [("debug", 1, 0), ("short", 1, 30)]


def test_backfill_failure():
    run = FakeRun(sinfo=[failed(sample("slurm_sinfo_malformed.txt"))])
    with pytest.raises(SchedulerError, match="Unable to contact"):
        SlurmScheduler(run).backfill()
