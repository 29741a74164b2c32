"""Replies of a batch scheduler, and node lists of an allocation, that cannot be read: a
SchedulerOutputError (or ValueError) saying what in them and what to do, never a crash of
another kind, and the parser reads a good reply right after.

A case is a parser and the text it is given; node-list cases give the launcher's environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from balsamd.launch.leader.nodes import discover_nodes
from balsamd.sched import cobalt, lsf, pbs, slurm
from balsamd.sched.base import SchedulerOutputError
from tests.bad_input.table import Case, assert_told, case, params

SAMPLES = Path(__file__).parent.parent / "sched" / "samples"
NOW = 1_800_000_000.0
PBS_HEAD = '{"pbs_version": "2022.1", "pbs_server": "s", "Jobs": '

Parser = Callable[[str], Any]
PARSERS: dict[str, tuple[Parser, str]] = {
    # a parser, and a good reply it reads (after every bad one)
    "squeue": (slurm.parse_squeue, "slurm_squeue_states.txt"),
    "sinfo": (slurm.parse_sinfo, "slurm_sinfo_idle.txt"),
    "sbatch": (slurm.parse_submit, "slurm_sbatch_parsable.txt"),
    "qstat-pbs": (pbs.parse_status, "pbs_qstat_jobs.json"),
    "pbsnodes": (pbs.parse_backfill, "pbs_pbsnodes.json"),
    "qsub-pbs": (pbs.parse_submit, "pbs_qsub.txt"),
    "bjobs": (lambda text: lsf.parse_status(text, NOW), "lsf_bjobs.json"),
    "bslots": (lsf.parse_backfill, "lsf_bslots.txt"),
    "qstat-cobalt": (lambda text: cobalt.parse_status(text, NOW), "cobalt_qstat.txt"),
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


COBALT_HEAD = "JobID   State      RunTime   Location\n=====================================\n"
UNREAD = SchedulerOutputError

CASES = [
    # Slurm
    case("squeue-wrong-fields", ("squeue", "12|RUNNING|x\n"), UNREAD, "squeue output", "line 1 has 3 fields", "check"),
    case("squeue-unknown-state", ("squeue", "12|WEIRD|N/A|N/A|\n"), UNREAD, "line 1", "'WEIRD'", "[scheduler] kind"),
    case("squeue-bad-time", ("squeue", "12|RUNNING|yesterday|N/A|nid1\n"), UNREAD, "line 1", "time"),
    case(
        "squeue-huge-hostlist",
        ("squeue", "12|RUNNING|N/A|N/A|nid[0-9999999]\n"),
        UNREAD,
        "squeue's node list",
        "more than a machine has",
    ),
    case("squeue-nested-brackets", ("squeue", "12|RUNNING|N/A|N/A|nid[[1]]\n"), UNREAD, "nested '['"),
    case("squeue-open-bracket", ("squeue", "12|RUNNING|N/A|N/A|nid[1-3\n"), UNREAD, "never closed"),
    case("squeue-backwards-range", ("squeue", "12|RUNNING|N/A|N/A|nid[9-1]\n"), UNREAD, "runs backwards"),
    case("squeue-empty-id", ("squeue", "|RUNNING|N/A|N/A|\n"), UNREAD, "squeue output"),
    case("sinfo-malformed", ("sinfo", (SAMPLES / "slurm_sinfo_malformed.txt").read_text()), UNREAD, "sinfo"),
    case("sbatch-no-id", ("sbatch", "Submitted nothing\n"), UNREAD, "sbatch --parsable output"),
    case("sbatch-empty", ("sbatch", ""), UNREAD, "sbatch"),
    # PBS
    case("qstat-pbs-deeply-nested", ("qstat-pbs", PBS_HEAD + nested(100_000) + "}"), UNREAD, "nested too deeply"),
    case("qstat-pbs-not-json", ("qstat-pbs", "Job id  Name\n"), UNREAD, "not JSON"),
    case("qstat-pbs-no-header", ("qstat-pbs", '{"Jobs": {}}'), UNREAD, "no pbs_server header"),
    case("qstat-pbs-unknown-state", ("qstat-pbs", PBS_HEAD + '{"1.s": {"job_state": "Z"}}}'), UNREAD, "job_state 'Z'"),
    case("qstat-pbs-state-a-number", ("qstat-pbs", PBS_HEAD + '{"1.s": {"job_state": 5}}}'), UNREAD, "job_state '5'"),
    case("qstat-pbs-a-list", ("qstat-pbs", "[1, 2]"), UNREAD, "no pbs_server header"),
    case("pbsnodes-deeply-nested", ("pbsnodes", PBS_HEAD + nested(100_000) + "}"), UNREAD, "nested too deeply"),
    case("pbsnodes-not-json", ("pbsnodes", "node1 free\n"), UNREAD, "not JSON"),
    case("qsub-pbs-empty", ("qsub-pbs", "\n"), UNREAD, "qsub"),
    # LSF
    case("bjobs-deeply-nested", ("bjobs", '{"RECORDS": ' + nested(100_000) + "}"), UNREAD, "nested too deeply"),
    case("bjobs-not-json", ("bjobs", "JOBID USER STAT\n"), UNREAD, "not JSON"),
    case("bjobs-no-records", ("bjobs", '{"JOBS": 0}'), UNREAD, "bjobs"),
    case(
        "bjobs-unknown-state",
        ("bjobs", '{"RECORDS": [{"JOBID": "1", "STAT": "ODD", "START_TIME": "", "FINISH_TIME": "", "EXEC_HOST": ""}]}'),
        UNREAD,
        "STAT 'ODD'",
    ),
    case("bjobs-id-a-number", ("bjobs", '{"RECORDS": [{"JOBID": 1, "STAT": "RUN"}]}'), UNREAD, "bjobs"),
    case("bslots-garbage", ("bslots", "what\n"), UNREAD, "bslots"),
    # Cobalt
    case(
        "qstat-cobalt-unknown-state",
        ("qstat-cobalt", COBALT_HEAD + "1  odd  00:00:01  3835\n"),
        UNREAD,
        "job '1' in state 'odd'",
    ),
    case(
        "qstat-cobalt-huge-location",
        ("qstat-cobalt", COBALT_HEAD + "1  running  00:00:01  0-9999999\n"),
        UNREAD,
        "more nodes than a machine has",
    ),
    case("qstat-cobalt-bad-clock", ("qstat-cobalt", COBALT_HEAD + "1  running  soon  3835\n"), UNREAD, "job 1"),
]

NODE_CASES = [
    case(
        "slurm-huge",
        {"SLURM_JOB_NODELIST": "nid[0-9999999]"},
        ValueError,
        "SLURM_JOB_NODELIST",
        "more than a machine has",
        "--nodes",
    ),
    case(
        "slurm-huge-product",
        {"SLURM_NODELIST": "r[0-999]n[0-999]"},
        ValueError,
        "SLURM_NODELIST",
        "1000000 hosts",
        "--nodes",
    ),
    case("slurm-nested", {"SLURM_JOB_NODELIST": "nid[1[2]]"}, ValueError, "SLURM_JOB_NODELIST", "nested"),
    case("slurm-not-a-range", {"SLURM_JOB_NODELIST": "nid[a-b]"}, ValueError, "SLURM_JOB_NODELIST", "'a-b'"),
    case("slurm-blank-name", {"SLURM_JOB_NODELIST": "nid1,,nid2"}, ValueError, "SLURM_JOB_NODELIST", "empty"),
    case("cobalt-huge", {"COBALT_PARTNAME": "0-9999999"}, ValueError, "COBALT_PARTNAME", "more than a machine"),
    case("cobalt-backwards", {"COBALT_PARTNAME": "9-1"}, ValueError, "COBALT_PARTNAME", "backwards"),
    case("lsf-odd-pairs", {"LSB_MCPU_HOSTS": "h1 42 h2"}, ValueError, "LSB_MCPU_HOSTS", "'host slots'"),
    case(
        "pbs-nodefile-missing",
        {"PBS_NODEFILE": "/nonexistent/nodefile"},
        ValueError,
        "PBS_NODEFILE",
        "could not be read",
    ),
    case("pbs-nodefile-a-device", {"PBS_NODEFILE": "/dev/zero"}, ValueError, "PBS_NODEFILE", "not a regular file"),
    case("pbs-nodefile-a-directory", {"PBS_NODEFILE": "/"}, ValueError, "PBS_NODEFILE", "could not be read"),
]


@pytest.mark.parametrize("bad", params(CASES))
def test_an_unreadable_reply_is_told_and_the_next_is_read(bad: Case) -> None:
    name, text = bad.given
    parse, good = PARSERS[name]
    assert isinstance(bad.error, type)
    with pytest.raises(bad.error) as raised:
        parse(text)
    assert_told(str(raised.value), bad.words)
    assert parse((SAMPLES / good).read_text()) is not None


@pytest.mark.parametrize("bad", params(NODE_CASES))
def test_a_bad_node_list_names_its_variable(bad: Case) -> None:
    assert isinstance(bad.error, type)
    with pytest.raises(bad.error) as raised:
        discover_nodes(bad.given, hostname=lambda: "login1")
    assert_told(str(raised.value), bad.words)
    assert discover_nodes({"SLURM_JOB_NODELIST": "nid[01-02]"}) == ["nid01", "nid02"]
