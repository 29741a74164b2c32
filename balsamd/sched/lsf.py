"""IBM Spectrum LSF: bsub, one ``bjobs -o ... -json`` for many jobs, bkill, bslots.

Resources go into the script as ``#BSUB`` lines.  LSF reads those lines only from a script
given on bsub's standard input (``bsub < script``; ``bsub script`` runs it as a plain command
and ignores them), so submit runs ``cd FOLDER && exec bsub < SCRIPT`` through sh, the folder
and script passed as arguments, never pasted into the command text.  The directives use
``-nnodes`` (whole nodes, as on CSM systems such as Summit).  The parse functions are pure and
take the commands' text; the class only builds argv lists and runs them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import (
    BackfillWindow,
    JobStatus,
    Run,
    SchedulerError,
    SchedulerOutputError,
    detail,
    run_command,
    submit_in,
)
from balsamd.sched.script import GENERIC_TEMPLATE, optional_directives

B = BatchJobState
BJOBS_FIELDS = "jobid stat start_time finish_time exec_host"
SUBMIT_SHELL = 'cd "$1" && exec bsub < "$2"'

# bjobs STAT words (LSF "Job states"); anything else is unreadable output
STATES: dict[str, BatchJobState] = {
    "PEND": B.QUEUED,
    "WAIT": B.QUEUED,  # chunk job waiting for its turn
    "PSUSP": B.QUEUED,  # held while pending
    "USUSP": B.QUEUED,  # suspended by its owner
    "SSUSP": B.QUEUED,  # suspended by LSF
    "PROV": B.RUNNING,  # dispatched, hosts being provisioned
    "RUN": B.RUNNING,
    "UNKWN": B.RUNNING,  # mbatchd lost contact with the host; the job may still run
    "DONE": B.FINISHED,
    "EXIT": B.FINISHED,
    "ZOMBI": B.FINISHED,  # killed while its host was unreachable
}
JOB_ID = re.compile(r"\d+(?:\[\d+\])?")
SUBMITTED = re.compile(r"Job <(\d+)> is submitted")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# "Dec 28 19:56", "Jan  7 09:59 L", "May  3 10:21 2016", "May  4 10:21:05 2016 E"
LSF_TIME = re.compile(r"([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s+(\d{4}))?(?:\s+[A-Z])?")
DURATION_PART = re.compile(r"(\d+)\s+(day|hour|minute|second)s?(?:\(s\))?")
NOT_FOUND = ("is not found", "No matching job found")
ALREADY_DONE = "already finished"
NO_WINDOW = "No backfill window"


def parse_submit(text: str) -> str:
    """The job id in ``Job <1234> is submitted to queue <batch>.``"""
    match = SUBMITTED.search(text)
    if not match:
        raise SchedulerOutputError("bsub output", text)
    return match.group(1)


def parse_time(text: str, now: float) -> float | None:
    """A bjobs time as epoch seconds; None for an empty or ``-`` field.

    LSF prints local times without a year unless the site sets LSB_DISPLAY_YEAR, and may add a
    one-letter mark (E: estimated, L: from the run limit).  Without a year the time is the
    latest one not more than a day after ``now``.
    """
    text = text.strip()
    if text in ("", "-"):
        return None
    match = LSF_TIME.fullmatch(text)
    if not match or match.group(1) not in MONTHS:
        raise SchedulerOutputError("bjobs time", text)
    month, day, hour, minute, second, year = match.groups()
    fields = (MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second or 0))

    def at(y: int) -> float:
        return time.mktime((y, *fields, 0, 0, -1))

    try:
        if year:
            return at(int(year))
        this_year = time.localtime(now).tm_year
        stamp = at(this_year)
        return stamp if stamp <= now + 86400 else at(this_year - 1)
    except (OverflowError, ValueError):
        raise SchedulerOutputError("bjobs time", text) from None


def exec_hosts(text: str) -> list[str]:
    """Hosts in an EXEC_HOST value: ``1*batch3:42*a01n01:42*a01n02`` or ``cn019:cn019``."""
    hosts: list[str] = []
    for part in text.replace(" ", ":").split(":"):
        host = part.partition("*")[2] if "*" in part else part
        if host.strip() and host.strip() != "-" and host.strip() not in hosts:
            hosts.append(host.strip())
    return hosts


def parse_status(text: str, now: float) -> dict[str, JobStatus]:
    """Statuses from ``bjobs -o 'jobid stat start_time finish_time exec_host' -json``.

    A record with ERROR ``Job <1234> is not found`` is a job LSF has forgotten: it is left out.
    """
    what = "bjobs -json output"
    try:
        doc: Any = json.loads(text, strict=False)
    except ValueError:
        raise SchedulerOutputError(what, text, "not JSON") from None
    except RecursionError:
        raise SchedulerOutputError(what, text, "nested too deeply") from None
    records = doc.get("RECORDS") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise SchedulerOutputError(what, text)
    out: dict[str, JobStatus] = {}
    for record in records:
        if not isinstance(record, dict):
            raise SchedulerOutputError(what, text)
        if "ERROR" in record:  # only "not found" means the job is gone; any other error is not an answer
            if isinstance(record["ERROR"], str) and any(w in record["ERROR"] for w in NOT_FOUND):
                continue
            raise SchedulerOutputError(what, text)
        job_id, raw_state = record.get("JOBID"), record.get("STAT")
        fields = [record.get(k, "") for k in ("START_TIME", "FINISH_TIME", "EXEC_HOST")]
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id) or not isinstance(raw_state, str):
            raise SchedulerOutputError(what, text)
        state = STATES.get(raw_state)
        if state is None:
            raise SchedulerOutputError(what, text, f"job {job_id} has STAT {raw_state[:20]!r}")
        if not all(isinstance(f, str) for f in fields):
            raise SchedulerOutputError(what, text)
        try:
            started = parse_time(fields[0], now) if state != B.QUEUED else None
            ended = parse_time(fields[1], now) if state == B.FINISHED else None
        except SchedulerOutputError:
            raise SchedulerOutputError(what, text) from None
        out[job_id] = JobStatus(
            scheduler_id=job_id, state=state, raw_state=raw_state, start_time=started, end_time=ended,
            nodes=exec_hosts(fields[2]),
        )  # fmt: skip
    return out


def parse_duration(text: str) -> int:
    """Whole minutes in a bslots runtime: ``16 hours 6 minutes 59 seconds``, ``45 minutes``."""
    text = text.strip()
    parts = list(DURATION_PART.finditer(text))
    if not parts or " ".join(p.group(0) for p in parts) != " ".join(text.split()):
        raise SchedulerOutputError("bslots runtime", text)
    scale = {"day": 1440, "hour": 60, "minute": 1, "second": 1 / 60}
    return int(sum(int(p.group(1)) * scale[p.group(2)] for p in parts))


def parse_backfill(text: str, slots_per_node: int = 1) -> list[BackfillWindow]:
    """Windows from bslots: ``SLOTS RUNTIME`` then rows such as ``3  1 hours 30 minutes``.

    Each row is already cumulative (more slots for a shorter runtime); UNLIMITED becomes 0
    (no known limit).  Slots become nodes by ``slots_per_node``; rows under a minute or a node
    are left out.  "No backfill window exists at this time" is an empty answer.
    """
    what = "bslots output"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(NO_WINDOW in line for line in lines):
        return []
    if not lines or lines[0].split() != ["SLOTS", "RUNTIME"]:
        raise SchedulerOutputError(what, text)
    windows = []
    for line in lines[1:]:
        slots, _, runtime = line.partition(" ")
        if not slots.isdigit() or not runtime.strip():
            raise SchedulerOutputError(what, text)
        try:
            minutes = 0 if runtime.strip() == "UNLIMITED" else parse_duration(runtime)
        except SchedulerOutputError:
            raise SchedulerOutputError(what, text) from None
        nodes = int(slots) // slots_per_node
        if nodes > 0 and (minutes > 0 or runtime.strip() == "UNLIMITED"):
            windows.append(BackfillWindow(num_nodes=nodes, wall_time_min=minutes))
    return windows


class LsfScheduler:
    name = "lsf"
    commands: tuple[str, ...] = ("bsub", "bjobs", "bkill", "bslots")
    default_template = GENERIC_TEMPLATE

    def __init__(self, run: Run = run_command, *, slots_per_node: int = 1, resource: str = "") -> None:
        """``slots_per_node`` turns bslots' slots into nodes; ``resource`` is passed as ``bslots -R``."""
        self.run = run
        self.slots_per_node = slots_per_node
        self.resource = resource

    def directives(self, batch: BatchJob) -> list[str]:
        lines = [f"#BSUB -J balsamd-{batch.id}"]
        if batch.project:
            lines.append(f"#BSUB -P {batch.project}")
        if batch.queue:
            lines.append(f"#BSUB -q {batch.queue}")
        lines += [
            f"#BSUB -nnodes {batch.num_nodes}",
            f"#BSUB -W {batch.wall_time_min}",
            # without -o LSF mails the output; relative to the folder bsub runs in
            f"#BSUB -o {batch.id}.out",
            f"#BSUB -e {batch.id}.err",
        ]
        return lines + optional_directives(batch, "#BSUB -{key} {value}")

    def submit(self, script: Path, cwd: Path) -> str:
        return parse_submit(submit_in(cwd, script, SUBMIT_SHELL, "bsub", self.run))

    def status(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        ids = list(dict.fromkeys(i for i in scheduler_ids if JOB_ID.fullmatch(i)))
        if not ids:
            return {}
        argv = ["bjobs", "-o", BJOBS_FIELDS, "-json", *ids]
        done = self.run(argv)
        # bjobs exits non-zero when an id is unknown, still answering for the others
        if done.returncode != 0 and not done.stdout.strip():
            errors = [line for line in done.stderr.splitlines() if line.strip()]
            if errors and all(any(w in line for w in NOT_FOUND) for line in errors):
                return {}
            raise SchedulerError(f"{' '.join(argv)} failed: {detail(done)}")
        if done.returncode != 0 and not done.stdout.lstrip().startswith("{"):
            raise SchedulerError(f"{' '.join(argv)} failed: {detail(done)}")
        wanted = set(ids)
        return {i: st for i, st in parse_status(done.stdout, time.time()).items() if i in wanted}

    def cancel(self, scheduler_id: str) -> None:
        """bkill a job; one that has already finished, or that LSF has forgotten, is no error."""
        done = self.run(["bkill", scheduler_id])
        reply = done.stderr + done.stdout
        if done.returncode != 0 and ALREADY_DONE not in reply and not any(w in reply for w in NOT_FOUND):
            raise SchedulerError(f"bkill {scheduler_id} failed: {detail(done)}")

    def backfill(self) -> list[BackfillWindow]:
        argv = ["bslots", *(["-R", self.resource] if self.resource else [])]
        done = self.run(argv)
        if done.returncode != 0:
            if NO_WINDOW in done.stdout + done.stderr:  # some versions exit 255 with this message
                return []
            raise SchedulerError(f"{' '.join(argv)} failed: {detail(done)}")
        return parse_backfill(done.stdout, self.slots_per_node)
