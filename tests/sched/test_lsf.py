"""LSF: the parse functions on recorded bsub / bjobs / bslots output, and the commands run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import BackfillWindow, Completed, SchedulerError, SchedulerOutputError
from balsamd.sched.lsf import (
    BJOBS_FIELDS,
    SUBMIT_SHELL,
    LsfScheduler,
    exec_hosts,
    parse_backfill,
    parse_duration,
    parse_status,
    parse_submit,
    parse_time,
)
from tests.sched import Replies, sample
from tests.sched.fakes.harness import FakeCluster

B = BatchJobState


def local(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))


NOW = local(2024, 12, 30, 12, 0)


def test_parse_submit() -> None:
    assert parse_submit(sample("lsf_bsub.txt")) == "806290"
    assert parse_submit(sample("lsf_bsub_default_queue.txt")) == "806291"


@pytest.mark.parametrize("text", ["", sample("lsf_bsub_rejected.txt"), "Job <abc> is submitted to queue <batch>.\n"])
def test_parse_submit_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_submit(text)
    assert caught.value.raw == text


def test_parse_status_sample() -> None:
    got = parse_status(sample("lsf_bjobs.json"), NOW)
    assert {i: (st.state, st.raw_state) for i, st in got.items()} == {
        "806290": (B.RUNNING, "RUN"),
        "806291": (B.QUEUED, "PEND"),
        "806292": (B.QUEUED, "PSUSP"),
        "806280": (B.FINISHED, "DONE"),
        "806281": (B.FINISHED, "EXIT"),
        "806282": (B.QUEUED, "USUSP"),
    }  # 806299 is "not found": absent
    running = got["806290"]
    assert (running.start_time, running.end_time) == (local(2024, 12, 28, 19, 56), None)
    assert running.nodes == ["batch3", "a01n01", "a01n02"]
    done = got["806280"]
    assert (done.start_time, done.end_time) == (local(2024, 12, 28, 19, 56), local(2024, 12, 28, 20, 10))
    assert done.nodes == ["tbi-cn019"]
    killed_while_pending = got["806281"]
    assert (killed_while_pending.start_time, killed_while_pending.end_time) == (None, local(2024, 1, 7, 9, 59))
    assert got["806282"].start_time is None  # suspended: counted as queued


def test_parse_status_with_years() -> None:
    got = parse_status(sample("lsf_bjobs_with_year.json"), NOW)
    assert (got["22005"].start_time, got["22005"].end_time) == (local(2016, 5, 3, 10, 21), local(2016, 5, 4, 10, 21))


def test_parse_time_without_year_is_never_in_the_future() -> None:
    new_year = local(2025, 1, 2, 8, 0)
    assert parse_time("Dec 28 19:56", new_year) == local(2024, 12, 28, 19, 56)
    assert parse_time("Jan  2 08:30 E", new_year) == local(2025, 1, 2, 8, 30)  # within a day ahead: clock skew
    assert parse_time("May  4 10:21:05 2016 L", new_year) == local(2016, 5, 4, 10, 21) + 5
    assert parse_time("", new_year) is None and parse_time("-", new_year) is None


@pytest.mark.parametrize("text", ["Dez 28 19:56", "28 Dec 19:56", "Dec 28", "2024-12-28T19:56:00"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError):
        parse_time(text, NOW)


def test_exec_hosts() -> None:
    assert exec_hosts("1*batch3:42*a01n01:42*a01n02") == ["batch3", "a01n01", "a01n02"]
    assert exec_hosts("tbi-cn019:tbi-cn019") == ["tbi-cn019"]
    assert exec_hosts("") == exec_hosts("-") == []


def _record(change: dict) -> str:
    doc = json.loads(sample("lsf_bjobs.json"))
    doc["RECORDS"][0].update(change)
    return json.dumps(doc)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Job <806290> is not found\n",
        sample("lsf_bjobs.json")[:200],
        json.dumps({"COMMAND": "bjobs", "JOBS": 0}),
        json.dumps({"COMMAND": "bjobs", "RECORDS": ["806290 RUN"]}),
        _record({"STAT": "RUNNING"}),
        _record({"JOBID": 806290}),
        _record({"JOBID": "job806290"}),
        _record({"START_TIME": "yesterday"}),
        _record({"EXEC_HOST": None}),
        json.dumps({"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [{"ERROR": "User permission denied"}]}),
    ],
    ids=[
        "empty",
        "text",
        "truncated",
        "no-records",
        "record-string",
        "unknown-stat",
        "numeric-id",
        "bad-id",
        "bad-time",
        "host-null",
        "other-error",
    ],
)
def test_parse_status_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_status(text, NOW)
    assert caught.value.raw == text


def test_parse_status_no_records() -> None:
    assert parse_status('{"COMMAND":"bjobs","JOBS":0,"RECORDS":[]}', NOW) == {}


def test_parse_duration() -> None:
    assert parse_duration("16 hours 6 minutes 59 seconds") == 966
    assert parse_duration("1 hours 0 minutes") == 60
    assert parse_duration("2 days 1 hour") == 2940
    assert parse_duration("45 minute(s)") == 45
    for bad in ("", "forever", "3 fortnights", "1 hours and 5 minutes"):
        with pytest.raises(SchedulerOutputError):
            parse_duration(bad)


def test_parse_backfill_sample() -> None:
    assert parse_backfill(sample("lsf_bslots.txt")) == [
        BackfillWindow(num_nodes=n, wall_time_min=m)
        for n, m in [(1, 0), (3, 90), (5, 60), (7, 45), (15, 40), (18, 30), (20, 20)]
    ]


def test_parse_backfill_seconds_and_slots_per_node() -> None:
    # the 42-second row is too short for any job
    assert parse_backfill(sample("lsf_bslots_seconds.txt")) == [
        BackfillWindow(num_nodes=4, wall_time_min=966),
        BackfillWindow(num_nodes=12, wall_time_min=2),
    ]
    assert parse_backfill(sample("lsf_bslots.txt"), slots_per_node=4) == [
        BackfillWindow(num_nodes=n, wall_time_min=m) for n, m in [(1, 60), (1, 45), (3, 40), (4, 30), (5, 20)]
    ]


def test_parse_backfill_none() -> None:
    assert parse_backfill(sample("lsf_bslots_none.txt")) == []


@pytest.mark.parametrize(
    "text",
    ["", "SLOTS RUNTIME\nmany UNLIMITED\n", "SLOTS RUNTIME\n3\n", "SLOTS RUNTIME\n3 a while\n", "HOST SLOTS\n1 x\n"],
    ids=["empty", "bad-slots", "no-runtime", "bad-runtime", "other-header"],
)
def test_parse_backfill_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_backfill(text)
    assert caught.value.raw == text


def test_directives() -> None:
    batch = BatchJob(id="01J0", num_nodes=8, wall_time_min=120, project="BIP152", queue="batch")
    assert LsfScheduler().directives(batch) == [
        "#BSUB -J balsamd-01J0",
        "#BSUB -P BIP152",
        "#BSUB -q batch",
        "#BSUB -nnodes 8",
        "#BSUB -W 120",
        "#BSUB -o 01J0.out",
        "#BSUB -e 01J0.err",
    ]


def test_submit_feeds_the_script_on_stdin(tmp_path: Path) -> None:
    run = Replies(Completed(0, sample("lsf_bsub.txt"), ""))
    assert LsfScheduler(run).submit(tmp_path / "x.sh", tmp_path) == "806290"
    assert run.calls == [["sh", "-c", SUBMIT_SHELL, "sh", str(tmp_path), str(tmp_path / "x.sh")]]
    assert "bsub < " in SUBMIT_SHELL


def test_submit_through_the_fake_reads_directives_from_stdin(tmp_path: Path) -> None:
    fake = FakeCluster("lsf", tmp_path / "state")
    folder = tmp_path / "a dir; with 'quotes'"
    folder.mkdir()
    script = folder / "job.sh"
    script.write_text("#!/bin/bash\n#BSUB -nnodes 5\n#BSUB -W 15\n#BSUB -q debug\n")
    sid = LsfScheduler(fake.run).submit(script, folder)
    assert (fake.job(sid)["nodes"], fake.job(sid)["queue"], fake.job(sid)["cwd"]) == (5, "debug", str(folder))


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Completed(127, "", "sh: 1: exec: bsub: not found\n"), "bsub: command not found"),
        (Completed(255, "", sample("lsf_bsub_rejected.txt")), "Job not submitted"),
        (Completed(1, "", "sh: 1: cannot open /x.sh: No such file\n"), "cannot open"),
    ],
)
def test_submit_failure(reply: Completed, message: str) -> None:
    with pytest.raises(SchedulerError, match=message) as caught:
        LsfScheduler(Replies(reply)).submit(Path("/x.sh"), Path("/"))
    assert type(caught.value) is SchedulerError


def test_status_tolerates_unknown_ids() -> None:
    run = Replies(Completed(255, sample("lsf_bjobs.json"), ""))
    got = LsfScheduler(run).status(["806290", "806299", "806290", "12.pbs01"])
    assert run.calls == [["bjobs", "-o", BJOBS_FIELDS, "-json", "806290", "806299"]]
    assert set(got) == {"806290"}


def test_status_when_every_id_is_unknown() -> None:
    run = Replies(Completed(255, "", sample("lsf_bjobs_not_found.stderr")))
    assert LsfScheduler(run).status(["806299"]) == {}


@pytest.mark.parametrize(
    "reply",
    [
        Completed(255, "", "LSF is down. Please wait ...\n"),
        Completed(255, "Cannot connect to LSF. Please wait ...\n", ""),
        Completed(1, "", ""),
    ],
)
def test_status_failure(reply: Completed) -> None:
    with pytest.raises(SchedulerError) as caught:
        LsfScheduler(Replies(reply)).status(["806290"])
    assert type(caught.value) is SchedulerError


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        (Completed(0, "Job <806290> is being terminated\n", ""), True),
        (Completed(255, "", sample("lsf_bkill_finished.stderr")), True),
        (Completed(255, "", "Job <806299>: No matching job found\n"), True),
        (Completed(255, "", "Job <806290>: User permission denied\n"), False),
    ],
)
def test_cancel(reply: Completed, ok: bool) -> None:
    run = Replies(reply)
    if ok:
        LsfScheduler(run).cancel("806290")
    else:
        with pytest.raises(SchedulerError, match="permission denied"):
            LsfScheduler(run).cancel("806290")
    assert run.calls == [["bkill", "806290"]]


def test_backfill_command() -> None:
    run = Replies(Completed(0, sample("lsf_bslots.txt"), ""), Completed(255, sample("lsf_bslots_none.txt"), ""))
    sched = LsfScheduler(run, slots_per_node=42, resource="select[CN]")
    assert sched.backfill() == []  # no row reaches 42 slots
    assert sched.backfill() == []  # "No backfill window exists at this time", exit 255
    assert run.calls == [["bslots", "-R", "select[CN]"]] * 2


def test_backfill_failure() -> None:
    with pytest.raises(SchedulerError, match="LSF is down") as caught:
        LsfScheduler(Replies(Completed(255, "", "LSF is down. Please wait ...\n"))).backfill()
    assert type(caught.value) is SchedulerError
