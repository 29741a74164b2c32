"""Cobalt: the parse functions on recorded qsub / qstat / nodelist output, and the commands run."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import BackfillWindow, Completed, SchedulerError, SchedulerOutputError
from balsamd.sched.cobalt import (
    QSTAT_HEADER,
    CobaltScheduler,
    cobalt_state,
    location_nodes,
    parse_backfill,
    parse_clock,
    parse_status,
    parse_submit,
)
from tests.sched import Replies, sample

B = BatchJobState
NOW = 1_700_000_000.0


def test_parse_submit_after_routing_messages() -> None:
    assert parse_submit(sample("cobalt_qsub.txt")) == "266815"
    assert parse_submit("266816\n") == "266816"


@pytest.mark.parametrize(
    "text", ["", "failed to create teh job.  maybe a queue isn't there\n", 'Job routed to queue "default".\n']
)
def test_parse_submit_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_submit(text)
    assert caught.value.raw == text


def test_parse_status_sample() -> None:
    got = parse_status(sample("cobalt_qstat.txt"), NOW)
    assert {i: (st.state, st.raw_state) for i, st in got.items()} == {
        "266815": (B.RUNNING, "running"),
        "266816": (B.QUEUED, "queued"),
        "266817": (B.QUEUED, "user_hold"),
        "266818": (B.RUNNING, "running"),
        "266819": (B.RUNNING, "exiting"),
        "266820": (B.RUNNING, "starting"),
        "266821": (B.QUEUED, "dep_hold"),
    }
    assert got["266815"].start_time == NOW - (3600 + 20 * 60 + 45)
    assert got["266815"].nodes == ["3835"]
    assert got["266818"].nodes == ["3824", "3825", "3826", "3827"]
    assert got["266819"].nodes == ["1024", "1025", "1030"]
    assert got["266820"].start_time is None  # booting: no RunTime yet
    assert got["266816"].start_time is None and got["266816"].nodes == []
    assert all(st.end_time is None for st in got.values())


def test_parse_status_default_header() -> None:
    got = parse_status(sample("cobalt_qstat_default.txt"), NOW)
    assert (got["266815"].state, got["266815"].start_time, got["266815"].nodes) == (B.RUNNING, None, ["3835"])
    assert got["266816"].state == B.QUEUED


def _replace(old: str, new: str) -> str:
    text = sample("cobalt_qstat.txt")
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "JobID  State\n",
        "\n".join(sample("cobalt_qstat.txt").splitlines()[::2]),  # rule line missing
        _replace("State", "Stat3"),
        _replace("running    01:20:45", "zombie     01:20:45"),
        _replace("01:20:45", "1:20"),
        _replace("266816", "26681x"),
        _replace("3824-3827", "3824 3827"),
        sample("cobalt_nodelist.txt"),
    ],
    ids=[
        "empty",
        "header-only",
        "no-rule",
        "no-state-column",
        "unknown-state",
        "bad-runtime",
        "bad-id",
        "extra-field",
        "other-table",
    ],
)
def test_parse_status_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_status(text, NOW)
    assert caught.value.raw == text


def test_states() -> None:
    assert cobalt_state("maxrun_hold") == cobalt_state("admin_hold") == B.QUEUED
    assert cobalt_state("killing") == B.RUNNING
    assert cobalt_state("done") == B.FINISHED
    assert cobalt_state("Running") is None


def test_parse_clock() -> None:
    assert parse_clock("00:00:59") == 59
    assert parse_clock("123:04:05") == 123 * 3600 + 245
    with pytest.raises(SchedulerOutputError):
        parse_clock("4:59")


def test_location_nodes() -> None:
    assert location_nodes("None") == location_nodes("N/A") == location_nodes("") == []
    assert location_nodes("0007-0009,0100") == ["0007", "0008", "0009", "0100"]
    assert location_nodes("thetagpu05,thetagpu06") == ["thetagpu05", "thetagpu06"]


def test_parse_backfill_sample() -> None:
    # idle: 7 default nodes for 4:59:44, one default:backfill node for 1:10:00 and one for 40 s
    # (too short to count), and two debug-cache-quad nodes with no drain under way ("-")
    assert parse_backfill(sample("cobalt_nodelist.txt")) == [
        BackfillWindow(num_nodes=1, wall_time_min=70, queue="backfill"),
        BackfillWindow(num_nodes=2, wall_time_min=0, queue="debug-cache-quad"),
        BackfillWindow(num_nodes=7, wall_time_min=299, queue="default"),
        BackfillWindow(num_nodes=8, wall_time_min=70, queue="default"),
    ]


def test_parse_backfill_nothing_idle() -> None:
    text = "\n".join(line for line in sample("cobalt_nodelist.txt").splitlines() if " idle " not in line)
    assert parse_backfill(text) == []


def _nodelist(old: str, new: str) -> str:
    text = sample("cobalt_nodelist.txt")
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        sample("cobalt_qstat.txt"),
        _nodelist("Backfill", "Drain"),
        _nodelist("quad    1:10:00", "quad    1:10"),
        _nodelist("c0-0c0s7n0   default     idle", "c0-0c0s7n0   idle"),
    ],
    ids=["empty", "other-table", "no-backfill-column", "bad-time", "missing-field"],
)
def test_parse_backfill_rejects(text: str) -> None:
    with pytest.raises(SchedulerOutputError) as caught:
        parse_backfill(text)
    assert caught.value.raw == text


def test_directives() -> None:
    batch = BatchJob(id="01J0", num_nodes=128, wall_time_min=60, project="datascience", queue="default")
    assert CobaltScheduler().directives(batch) == [
        "#COBALT --jobname balsamd-01J0",
        "#COBALT -A datascience",
        "#COBALT -q default",
        "#COBALT -n 128",
        "#COBALT -t 60",
    ]
    plain = CobaltScheduler().directives(BatchJob(id="01J1", num_nodes=1, wall_time_min=5))
    assert plain == ["#COBALT --jobname balsamd-01J1", "#COBALT -n 1", "#COBALT -t 5"]


def test_submit_command() -> None:
    run = Replies(Completed(0, sample("cobalt_qsub.txt"), ""))
    assert CobaltScheduler(run).submit(Path("/site/batch/x.sh"), Path("/site/batch")) == "266815"
    assert run.calls == [["qsub", "--cwd", "/site/batch", "--mode", "script", "/site/batch/x.sh"]]


def test_submit_failure() -> None:
    run = Replies(Completed(1, "", "qsub: error: project datascience has no allocation\n"))
    with pytest.raises(SchedulerError, match="no allocation") as caught:
        CobaltScheduler(run).submit(Path("/s/x.sh"), Path("/s"))
    assert type(caught.value) is SchedulerError


def test_status_command() -> None:
    run = Replies(Completed(0, sample("cobalt_qstat.txt"), ""))
    got = CobaltScheduler(run).status(["266815", "266816", "4100.pbs01", "266816"])
    assert run.calls == [["qstat", "--header", QSTAT_HEADER, "266815", "266816"]]
    assert set(got) == {"266815", "266816"}  # only the jobs asked about


def test_status_silent_exit_means_none_known() -> None:
    # Cobalt's qstat exits 1 without a word when none of the ids it was given exists
    assert CobaltScheduler(Replies(Completed(1, "", ""))).status(["1"]) == {}


def test_status_failure() -> None:
    run = Replies(Completed(1, "", "component error: Failed to connect to queue-manager\n"))
    with pytest.raises(SchedulerError, match="queue-manager") as caught:
        CobaltScheduler(run).status(["1"])
    assert type(caught.value) is SchedulerError


def test_status_without_cobalt_ids_asks_nothing() -> None:
    run = Replies()
    assert CobaltScheduler(run).status(["abc", "12.pbs01"]) == {}
    assert run.calls == []


def test_cancel() -> None:
    run = Replies(Completed(0, sample("cobalt_qdel.txt"), ""), Completed(0, "qdel: Job 9 not found\n", ""))
    CobaltScheduler(run).cancel("266816")
    CobaltScheduler(run).cancel("9")
    assert run.calls == [["qdel", "266816"], ["qdel", "9"]]
    with pytest.raises(SchedulerError, match="jobid must be an integer"):
        CobaltScheduler(Replies(Completed(1, "", "jobid must be an integer\n"))).cancel("x")


def test_backfill_command() -> None:
    run = Replies(Completed(0, sample("cobalt_nodelist.txt"), ""))
    assert len(CobaltScheduler(run).backfill()) == 4
    assert run.calls == [["nodelist"]]
