"""Cobalt (ALCF Theta and its kin): qsub, one ``qstat --header`` for many jobs, qdel, nodelist.

Resources go into the script as ``#COBALT`` lines, which Cobalt's qsub reads from a script
job; the submission folder is given with ``--cwd``.  Cobalt forgets a job as soon as it ends,
so a finished job is simply absent from qstat.  The parse functions are pure and take the
commands' text; the class only builds argv lists and runs them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from balsamd.config import MAX_NODES
from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import (
    BackfillWindow,
    JobStatus,
    Run,
    SchedulerError,
    SchedulerOutputError,
    checked,
    run_command,
)
from balsamd.sched.script import GENERIC_TEMPLATE, optional_directives

B = BatchJobState
QSTAT_HEADER = "JobID:State:RunTime:Location"

# the states Cobalt's queue manager shows; *_hold ones are matched by their suffix
STATES: dict[str, BatchJobState] = {
    "queued": B.QUEUED,
    "dep_fail": B.QUEUED,  # waits in the queue until released or deleted
    "preempted": B.QUEUED,
    "starting": B.RUNNING,  # nodes allocated, booting into the requested mode
    "running": B.RUNNING,
    "resuming": B.RUNNING,
    "preempting": B.RUNNING,
    "exiting": B.RUNNING,  # still holds its nodes
    "killing": B.RUNNING,
    "done": B.FINISHED,
    "finished": B.FINISHED,
    "failed": B.FINISHED,
}
NO_VALUE = frozenset({"", "N/A", "None", "-"})
NODE_RANGE = re.compile(r"(\d+)-(\d+)")
CLOCK = re.compile(r"(\d+):(\d{2}):(\d{2})")


def cobalt_state(raw: str) -> BatchJobState | None:
    if raw.endswith("_hold"):  # user_hold, admin_hold, dep_hold, maxrun_hold, ...
        return B.QUEUED
    return STATES.get(raw)


def parse_submit(text: str) -> str:
    """The job id qsub prints, on the last line after any routing messages."""
    ids = [line.strip() for line in text.splitlines() if line.strip().isdigit()]
    if not ids:
        raise SchedulerOutputError("qsub output", text)
    return ids[-1]


def parse_clock(text: str) -> int:
    """Seconds in an ``HH:MM:SS`` duration (hours may have more digits)."""
    match = CLOCK.fullmatch(text.strip())
    if not match:
        raise SchedulerOutputError("Cobalt duration", text)
    hours, minutes, seconds = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def location_nodes(text: str) -> list[str]:
    """Node ids in a Location: ``3824-3827,3900`` (ranges expanded) or ``thetagpu05,thetagpu06``."""
    if text.strip() in NO_VALUE:
        return []
    nodes: list[str] = []
    for part in text.strip().split(","):
        match = NODE_RANGE.fullmatch(part.strip())
        if match and int(match.group(2)) - int(match.group(1)) + len(nodes) >= MAX_NODES:
            raise SchedulerOutputError("Cobalt location", text, f"it names more nodes than a machine has ({MAX_NODES})")
        if match and int(match.group(1)) <= int(match.group(2)):
            width = len(match.group(1))
            nodes += [str(n).zfill(width) for n in range(int(match.group(1)), int(match.group(2)) + 1)]
        elif part.strip():
            nodes.append(part.strip())
    return nodes


def _table(text: str, what: str, columns: tuple[str, ...]) -> tuple[dict[str, int], list[list[str]]]:
    """Column positions and rows of a Cobalt table: a header, a ``====`` rule, then rows."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or set(lines[1].strip()) != {"="}:
        raise SchedulerOutputError(what, text)
    header = lines[0].split()
    index = {name: i for i, name in enumerate(header)}
    if not all(c in index for c in columns):
        raise SchedulerOutputError(what, text)
    rows = []
    for line in lines[2:]:
        fields = line.split()
        if len(fields) != len(header):
            raise SchedulerOutputError(what, text)
        rows.append(fields)
    return index, rows


def parse_status(text: str, now: float) -> dict[str, JobStatus]:
    """Statuses from ``qstat --header JobID:State:RunTime:Location``; start = now - RunTime."""
    what = "qstat output"
    col, rows = _table(text, what, ("JobID", "State"))
    out: dict[str, JobStatus] = {}
    for fields in rows:
        job_id, raw_state = fields[col["JobID"]], fields[col["State"]]
        state = cobalt_state(raw_state)
        if not job_id.isdigit() or state is None:
            raise SchedulerOutputError(what, text, f"job {job_id[:20]!r} in state {raw_state[:20]!r}")
        runtime = fields[col["RunTime"]] if "RunTime" in col else "N/A"
        try:
            started = None if runtime in NO_VALUE or state == B.QUEUED else now - parse_clock(runtime)
            nodes = location_nodes(fields[col["Location"]]) if "Location" in col else []
        except SchedulerOutputError as exc:
            raise SchedulerOutputError(what, text, f"job {job_id}: {str(exc).split(': ')[0]}") from None
        out[job_id] = JobStatus(
            scheduler_id=job_id, state=state, raw_state=raw_state, start_time=started,
            end_time=now if state == B.FINISHED else None, nodes=nodes,
        )  # fmt: skip
    return out


def parse_backfill(text: str) -> list[BackfillWindow]:
    """Backfill windows per queue from ``nodelist``.

    Idle nodes count: those with a Backfill time (``4:59:44``) are free for that long before
    a drain ends, those with ``-`` are free without a known limit (0).  Each window says how
    many idle nodes of a queue are free for at least its time, longest first, so a node free
    for 5 hours also counts in the 1-hour window.  Nodes free for less than a minute are left out.
    """
    what = "nodelist output"
    col, rows = _table(text, what, ("Queues", "Status", "Backfill"))
    lengths: dict[str, list[float]] = {}
    for fields in rows:
        if fields[col["Status"]] != "idle":
            continue
        backfill = fields[col["Backfill"]]
        try:
            length = float("inf") if backfill in NO_VALUE else parse_clock(backfill) // 60
        except SchedulerOutputError:
            raise SchedulerOutputError(what, text) from None
        if length < 1:
            continue
        for queue in fields[col["Queues"]].split(":"):
            lengths.setdefault(queue, []).append(length)
    windows = []
    for queue, found in sorted(lengths.items()):
        for length in sorted(set(found), reverse=True):
            windows.append(BackfillWindow(
                num_nodes=sum(1 for f in found if f >= length),
                wall_time_min=0 if length == float("inf") else int(length), queue=queue,
            ))  # fmt: skip
    return windows


class CobaltScheduler:
    name = "cobalt"
    commands: tuple[str, ...] = ("qsub", "qstat", "qdel", "nodelist")
    default_template = GENERIC_TEMPLATE

    def __init__(self, run: Run = run_command) -> None:
        self.run = run

    def directives(self, batch: BatchJob) -> list[str]:
        lines = [f"#COBALT --jobname balsamd-{batch.id}"]
        if batch.project:
            lines.append(f"#COBALT -A {batch.project}")
        if batch.queue:
            lines.append(f"#COBALT -q {batch.queue}")
        lines += [f"#COBALT -n {batch.num_nodes}", f"#COBALT -t {batch.wall_time_min}"]
        return lines + optional_directives(batch, "#COBALT --attrs {key}={value}")

    def submit(self, script: Path, cwd: Path) -> str:
        argv = ["qsub", "--cwd", str(cwd.absolute()), "--mode", "script", str(script.absolute())]
        return parse_submit(checked(argv, self.run))

    def status(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        ids = list(dict.fromkeys(i for i in scheduler_ids if i.isdigit()))
        if not ids:
            return {}
        argv = ["qstat", "--header", QSTAT_HEADER, *ids]
        done = self.run(argv)
        if done.returncode != 0:
            if not (done.stdout.strip() or done.stderr.strip()):  # Cobalt's answer when it knows none of them
                return {}
            detail = (done.stderr or done.stdout).strip()
            raise SchedulerError(f"{' '.join(argv)} failed: {detail}")
        wanted = set(ids)
        return {i: st for i, st in parse_status(done.stdout, time.time()).items() if i in wanted}

    def cancel(self, scheduler_id: str) -> None:
        """qdel a job; Cobalt answers "Job N not found" for one that has ended, which is no error."""
        checked(["qdel", scheduler_id], self.run)

    def backfill(self) -> list[BackfillWindow]:
        return parse_backfill(checked(["nodelist"], self.run))
