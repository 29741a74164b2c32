"""PBS Pro: the parse functions on recorded qsub / qstat / pbsnodes output, and the commands run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import BackfillWindow, Completed, SchedulerError, SchedulerOutputError
from balsamd.sched.pbs import (
    SUBMIT_SHELL,
    PbsScheduler,
    exec_hosts,
    parse_backfill,
    parse_status,
    parse_submit,
    parse_time,
)
from tests.sched import Replies, sample
from tests.sched.fakes.harness import FakeCluster

B = BatchJobState
SERVER = "polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov"


def local(text: str) -> float:
    return time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))


def test_parse_submit() -> None:
    assert parse_submit(sample("pbs_qsub.txt")) == f"8998.{SERVER}"
    assert parse_submit("1234.pbs01\n") == "1234.pbs01"
    assert parse_submit("1234[].pbs01\n") == "1234[].pbs01"


@pytest.mark.parametrize("text", ["", "\n", "qsub: Job rejected by all possible destinations\n", "pbs01.1234\n"])
def test_parse_submit_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_submit(text)
    assert caught.value.raw == text


def test_parse_status_sample() -> None:
    got = parse_status(sample("pbs_qstat_jobs.json"))
    by_number = {job_id.split(".")[0]: st for job_id, st in got.items()}
    assert {n: (st.state, st.raw_state) for n, st in by_number.items()} == {
        "8998": (B.RUNNING, "R"),
        "8999": (B.QUEUED, "Q"),
        "9000": (B.QUEUED, "H"),
        "8990": (B.FINISHED, "F"),
        "8991": (B.FINISHED, "F"),
        "8992": (B.RUNNING, "E"),
    }
    running = got[f"8998.{SERVER}"]
    assert running.scheduler_id == f"8998.{SERVER}"
    assert running.start_time == local("Tue Nov 14 09:13:05 2023")
    assert running.end_time is None
    assert running.nodes == ["x3004c0s7b0n0", "x3004c0s13b0n0"]
    assert by_number["8999"].start_time is None and by_number["8999"].nodes == []
    finished = by_number["8990"]
    assert finished.start_time == local("Tue Nov 14 09:13:05 2023")
    assert finished.end_time == local("Tue Nov 14 09:40:11 2023")
    never_ran = by_number["8991"]  # deleted while queued: no stime, ended at its mtime
    assert (never_ran.start_time, never_ran.end_time) == (None, local("Tue Nov 14 09:20:30 2023"))
    assert by_number["8992"].nodes == ["x3004c0s19b0n0"]


def test_parse_status_without_jobs() -> None:
    assert parse_status(sample("pbs_qstat_none.json")) == {}


def test_parse_status_tolerates_control_characters() -> None:
    doc = json.loads(sample("pbs_qstat_jobs.json"))
    text = json.dumps(doc).replace('"PBS_O_LANG": "en_US.UTF-8"', '"PBS_O_LANG": "en_US\tUTF-8"')
    assert "\t" in text
    assert len(parse_status(text)) == 6


def _edit(change: dict) -> str:
    doc = json.loads(sample("pbs_qstat_jobs.json"))
    doc["Jobs"][f"8998.{SERVER}"].update(change)
    return json.dumps(doc)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"Jobs": {}}',  # no server header: not from qstat
        sample("pbs_qstat_jobs.json")[: len(sample("pbs_qstat_jobs.json")) // 2],
        json.dumps({"pbs_server": SERVER, "Jobs": []}),
        json.dumps({"pbs_server": SERVER, "Jobs": {"1.pbs01": "R"}}),
        _edit({"job_state": "Z"}),
        _edit({"job_state": None}),
        _edit({"exec_host": 7}),
        _edit({"stime": "yesterday"}),
    ],
    ids=[
        "empty",
        "brace",
        "list",
        "no-header",
        "truncated",
        "jobs-list",
        "job-string",
        "state-Z",
        "state-null",
        "exec-host-number",
        "bad-time",
    ],
)
def test_parse_status_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_status(text)
    assert caught.value.raw == text


def test_parse_time() -> None:
    assert parse_time("Wed Apr 14 23:34:17 2021") == local("Wed Apr 14 23:34:17 2021")
    assert parse_time(1618432467) == 1618432467.0
    assert parse_time(None) is None and parse_time("") is None
    for bad in ("2021-04-14T23:34:17", True, ["x"]):
        with pytest.raises(SchedulerOutputError):
            parse_time(bad)


def test_exec_hosts() -> None:
    assert exec_hosts("qot-calc0/10+qot-calc0/11+qot-calc0/12") == ["qot-calc0"]
    assert exec_hosts("a/0*64+b/0*64") == ["a", "b"]
    assert exec_hosts("") == []


def test_parse_backfill_counts_free_nodes_outside_reservations() -> None:
    # of 8 nodes: one free in a reservation, one free but running a shared job, 5 busy or down
    assert parse_backfill(sample("pbs_pbsnodes.json")) == [BackfillWindow(num_nodes=2, wall_time_min=0)]


def test_parse_backfill_by_queue_list() -> None:
    assert parse_backfill(sample("pbs_pbsnodes_qlist.json")) == [
        BackfillWindow(num_nodes=1, wall_time_min=0, queue="qexp"),
        BackfillWindow(num_nodes=1, wall_time_min=0, queue="qlong"),
        BackfillWindow(num_nodes=3, wall_time_min=0, queue="qprod"),
    ]


def test_parse_backfill_skips_unknown_node_entries() -> None:
    text = json.dumps({"timestamp": 0, "pbs_version": "2024.1.2", "pbs_server": "s", "nodes": {"pbs": {"Error": "x"}}})
    assert parse_backfill(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        json.dumps({"pbs_server": "s"}),
        json.dumps({"pbs_server": "s", "nodes": []}),
        json.dumps({"pbs_server": "s", "nodes": {"n1": {"state": 3}}}),
        json.dumps({"pbs_server": "s", "nodes": {"n1": {"state": "free", "resources_available": "x"}}}),
    ],
)
def test_parse_backfill_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_backfill(text)
    assert caught.value.raw == text


def test_directives() -> None:
    batch = BatchJob(id="01J0", num_nodes=4, wall_time_min=90, project="datascience", queue="debug")
    assert PbsScheduler().directives(batch) == [
        "#PBS -N balsamd-01J0",
        "#PBS -A datascience",
        "#PBS -q debug",
        "#PBS -l select=4",
        "#PBS -l place=scatter",
        "#PBS -l walltime=01:30:00",
    ]
    plain = PbsScheduler().directives(BatchJob(id="01J1", num_nodes=1, wall_time_min=5))
    assert not any(line.startswith(("#PBS -A", "#PBS -q")) for line in plain)


def test_submit_runs_qsub_in_the_folder_with_arguments_kept_apart(tmp_path: Path) -> None:
    run = Replies(Completed(0, "12.pbs01\n", ""))
    assert PbsScheduler(run).submit(tmp_path / "b" / "x.sh", tmp_path / "b") == "12.pbs01"
    assert run.calls == [["sh", "-c", SUBMIT_SHELL, "sh", str(tmp_path / "b"), str(tmp_path / "b" / "x.sh")]]


def test_submit_through_the_fake_with_an_awkward_folder(tmp_path: Path) -> None:
    fake = FakeCluster("pbs", tmp_path / "state")
    folder = tmp_path / "it's a $HOME `dir`"
    folder.mkdir()
    script = folder / "job.sh"
    script.write_text("#!/bin/bash\n#PBS -l select=2\n#PBS -l walltime=00:10:00\n")
    sid = PbsScheduler(fake.run).submit(script, folder)
    assert fake.job(sid)["cwd"] == str(folder)
    assert fake.job(sid)["script"] == str(script)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Completed(127, "", "sh: 1: exec: qsub: not found\n"), "qsub: command not found"),
        (Completed(1, "", "qsub: Unknown queue\n"), "qsub: Unknown queue"),
        (Completed(2, "", ""), "exit code 2"),
    ],
)
def test_submit_failure(reply: Completed, message: str) -> None:
    with pytest.raises(SchedulerError, match=message) as caught:
        PbsScheduler(Replies(reply)).submit(Path("/s/x.sh"), Path("/s"))
    assert type(caught.value) is SchedulerError


def test_status_asks_once_and_answers_by_the_ids_asked() -> None:
    run = Replies(Completed(153, sample("pbs_qstat_jobs.json"), sample("pbs_qstat_unknown.stderr")))
    got = PbsScheduler(run).status(["8998", f"8999.{SERVER}", f"9999.{SERVER}", "not-an-id"])
    assert run.calls == [["qstat", "-f", "-F", "json", "-x", "8998", f"8999.{SERVER}", f"9999.{SERVER}"]]
    assert set(got) == {"8998", f"8999.{SERVER}"}
    assert got["8998"].scheduler_id == "8998" and got["8998"].state == B.RUNNING


@pytest.mark.parametrize("stdout", ["", sample("pbs_qstat_none.json")])
def test_status_when_every_id_is_unknown(stdout: str) -> None:
    run = Replies(Completed(153, stdout, sample("pbs_qstat_unknown.stderr")))
    assert PbsScheduler(run).status([f"9999.{SERVER}"]) == {}


def test_status_cannot_connect() -> None:
    # qstat prints its header even when it cannot reach the server: the exit code decides
    run = Replies(Completed(255, sample("pbs_qstat_none.json"), sample("pbs_qstat_connect.stderr")))
    with pytest.raises(SchedulerError, match="cannot connect to server") as caught:
        PbsScheduler(run).status([f"8998.{SERVER}"])
    assert type(caught.value) is SchedulerError


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        (Completed(0, "", ""), True),
        (Completed(153, "", sample("pbs_qdel_unknown.stderr")), True),
        (Completed(35, "", f"qdel: Job has finished 8990.{SERVER}\n"), True),
        (Completed(159, "", "qdel: Unauthorized Request  8998.pbs01\n"), False),
        (Completed(1, "", ""), False),
    ],
)
def test_cancel(reply: Completed, ok: bool) -> None:
    run = Replies(reply)
    if ok:
        PbsScheduler(run).cancel("8998.pbs01")
    else:
        with pytest.raises(SchedulerError, match=r"qdel 8998\.pbs01 failed"):
            PbsScheduler(run).cancel("8998.pbs01")
    assert run.calls == [["qdel", "8998.pbs01"]]


def test_backfill_command() -> None:
    run = Replies(Completed(0, sample("pbs_pbsnodes.json"), ""))
    assert PbsScheduler(run).backfill() == [BackfillWindow(num_nodes=2, wall_time_min=0)]
    assert run.calls == [["pbsnodes", "-a", "-F", "json"]]
