"""PBS Pro: qsub to submit, one ``qstat -f -F json -x`` for many jobs, qdel, ``pbsnodes -a -F json``.

Resources go into the script as ``#PBS`` lines and the script is submitted with a plain
``qsub SCRIPT`` run in the submission folder (PBS Pro's qsub has no working-directory option;
PBS_O_WORKDIR and the .o/.e files follow the folder qsub runs in).  The parse functions are
pure and take the commands' text; the class only builds argv lists and runs them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import msgspec

from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import (
    BackfillWindow,
    JobStatus,
    Run,
    SchedulerError,
    SchedulerOutputError,
    checked,
    detail,
    hms,
    run_command,
    submit_in,
)
from balsamd.sched.script import GENERIC_TEMPLATE, optional_directives

B = BatchJobState

# qstat's job_state letters (PBS Pro reference guide, "Job States"); anything else is unreadable
STATES: dict[str, BatchJobState] = {
    "Q": B.QUEUED,  # queued
    "H": B.QUEUED,  # held
    "W": B.QUEUED,  # waiting for its execution time
    "T": B.QUEUED,  # in transit
    "S": B.QUEUED,  # suspended
    "U": B.QUEUED,  # suspended: workstation busy
    "R": B.RUNNING,  # running
    "E": B.RUNNING,  # exiting after having run: still holds its nodes
    "B": B.RUNNING,  # array job with a subjob started
    "F": B.FINISHED,  # finished (qstat -x)
    "X": B.FINISHED,  # subjob finished
    "M": B.FINISHED,  # moved to another server: no longer ours to watch
}
# 1234.server, 1234[].server (array), or a bare 1234
JOB_ID = re.compile(r"\d+(?:\[\d*\])?(?:\.[\w.-]+)?")
TIME_FORMAT = "%a %b %d %H:%M:%S %Y"  # "Wed Apr 14 23:34:17 2021", server local time
# what qstat and qdel print for a job that has ended or been purged from the history
GONE = ("Unknown Job Id", "has finished")
SUBMIT_SHELL = 'cd "$1" && exec qsub "$2"'


def parse_submit(text: str) -> str:
    """The job id qsub prints: ``1234.pbs01``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not JOB_ID.fullmatch(lines[-1]):
        raise SchedulerOutputError("qsub output", text)
    return lines[-1]


def parse_time(value: Any) -> float | None:
    """A qstat time (``Wed Apr 14 23:34:17 2021``, local) as epoch seconds; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return time.mktime(time.strptime(value.strip(), TIME_FORMAT))
        except ValueError:
            pass
    raise SchedulerOutputError("qstat time", str(value))


def exec_hosts(text: str) -> list[str]:
    """Host names in an exec_host value: ``x3004c0s7b0n0/0*64+x3004c0s13b0n0/0*64``."""
    hosts: list[str] = []
    for chunk in text.split("+"):
        host = chunk.split("/", 1)[0].strip()
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def _document(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text, strict=False)  # PBS leaves control characters of Variable_List unescaped
    except ValueError:
        raise SchedulerOutputError(what, text, "not JSON") from None
    except RecursionError:
        raise SchedulerOutputError(what, text, "nested too deeply") from None
    # every PBS JSON reply carries its server header, with or without entries
    if not isinstance(doc, dict) or not ({"pbs_server", "pbs_version"} & doc.keys()):
        raise SchedulerOutputError(what, text, "no pbs_server header")
    return doc


def parse_status(text: str) -> dict[str, JobStatus]:
    """Statuses from ``qstat -f -F json -x``, keyed by the ids as qstat prints them.

    A reply without "Jobs" (every id unknown) is an empty answer.  start_time is stime once the
    job has left the queue; end_time is obittime (mtime on older servers) once it has finished.
    """
    what = "qstat -f -F json output"
    jobs = _document(text, what).get("Jobs", {})
    if not isinstance(jobs, dict):
        raise SchedulerOutputError(what, text)
    out: dict[str, JobStatus] = {}
    for job_id, job in jobs.items():
        if not isinstance(job, dict):
            raise SchedulerOutputError(what, text)
        raw_state = job.get("job_state")
        host = job.get("exec_host", "")
        if not (isinstance(raw_state, str) and raw_state in STATES and isinstance(host, str)):
            raise SchedulerOutputError(what, text, f"job {job_id[:40]!r} has job_state {str(raw_state)[:20]!r}")
        state = STATES[raw_state]
        try:
            started = parse_time(job.get("stime")) if state != B.QUEUED else None
            ended = parse_time(job.get("obittime") or job.get("mtime")) if state == B.FINISHED else None
        except SchedulerOutputError:
            raise SchedulerOutputError(what, text) from None
        out[job_id] = JobStatus(
            scheduler_id=job_id, state=state, raw_state=raw_state, start_time=started, end_time=ended,
            nodes=exec_hosts(host),
        )  # fmt: skip
    return out


def parse_backfill(text: str) -> list[BackfillWindow]:
    """Free nodes from ``pbsnodes -a -F json``, one window per queue list, without a time limit.

    A node counts when its state is exactly ``free``, it runs no job (a shared node may be
    free with jobs on it) and it belongs to no reservation.  Nodes with a ``Qlist`` resource
    count for each queue listed there; the others form a window with no queue.  PBS does not
    tell how long a node stays free, so wall_time_min is 0 (no known limit).
    """
    what = "pbsnodes -F json output"
    nodes = _document(text, what).get("nodes")
    if not isinstance(nodes, dict):
        raise SchedulerOutputError(what, text)
    free: dict[str, int] = {}
    for node in nodes.values():
        if not isinstance(node, dict):
            raise SchedulerOutputError(what, text)
        state = node.get("state")
        if state is None and "Error" in node:  # a node name pbsnodes does not know
            continue
        resources = node.get("resources_available", {})
        if not isinstance(state, str) or not isinstance(resources, dict):
            raise SchedulerOutputError(what, text)
        if {s.strip() for s in state.split(",")} != {"free"} or node.get("jobs") or node.get("resv"):
            continue
        qlist = resources.get("Qlist")
        queues = [q.strip() for q in qlist.split(",") if q.strip()] if isinstance(qlist, str) else [""]
        for queue in queues or [""]:
            free[queue] = free.get(queue, 0) + 1
    return [BackfillWindow(num_nodes=n, wall_time_min=0, queue=q) for q, n in sorted(free.items())]


def _only_gone(text: str) -> bool:
    """True when every line of an error reply says a job has ended or is unknown."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and all(any(word in line for word in GONE) for line in lines)


class PbsScheduler:
    name = "pbs"
    commands: tuple[str, ...] = ("qsub", "qstat", "qdel", "pbsnodes")
    default_template = GENERIC_TEMPLATE

    def __init__(self, run: Run = run_command) -> None:
        self.run = run

    def directives(self, batch: BatchJob) -> list[str]:
        lines = [f"#PBS -N balsamd-{batch.id}"]
        if batch.project:
            lines.append(f"#PBS -A {batch.project}")
        if batch.queue:
            lines.append(f"#PBS -q {batch.queue}")
        lines += [
            f"#PBS -l select={batch.num_nodes}",
            "#PBS -l place=scatter",
            f"#PBS -l walltime={hms(batch.wall_time_min)}",
        ]
        return lines + optional_directives(batch, "#PBS -l {key}={value}")

    def submit(self, script: Path, cwd: Path) -> str:
        """``qsub SCRIPT`` run in ``cwd``, through sh since qsub cannot be told the folder."""
        return parse_submit(submit_in(cwd, script, SUBMIT_SHELL, "qsub", self.run))

    def status(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        ids = list(dict.fromkeys(i for i in scheduler_ids if JOB_ID.fullmatch(i)))
        if not ids:
            return {}
        argv = ["qstat", "-f", "-F", "json", "-x", *ids]
        done = self.run(argv)
        # qstat exits non-zero when any id is unknown, still printing the others
        if done.returncode != 0:
            if not _only_gone(done.stderr):
                raise SchedulerError(f"{' '.join(argv)} failed: {detail(done)}")
            if not done.stdout.strip():
                return {}
        # qstat names jobs in full (1234.server) whatever form it was asked with
        by_number = {i.split(".", 1)[0]: i for i in ids}
        out = {}
        for job_id, st in parse_status(done.stdout).items():
            wanted = job_id if job_id in ids else by_number.get(job_id.split(".", 1)[0])
            if wanted is not None:
                out[wanted] = msgspec.structs.replace(st, scheduler_id=wanted)
        return out

    def cancel(self, scheduler_id: str) -> None:
        """qdel a job; one that has already ended, or that PBS has forgotten, is no error."""
        done = self.run(["qdel", scheduler_id])
        if done.returncode != 0 and not _only_gone(done.stderr + done.stdout):
            raise SchedulerError(f"qdel {scheduler_id} failed: {detail(done)}")

    def backfill(self) -> list[BackfillWindow]:
        return parse_backfill(checked(["pbsnodes", "-a", "-F", "json"], self.run))
