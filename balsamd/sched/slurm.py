"""Slurm: sbatch to submit, one squeue for the status of many jobs, scancel, sinfo for backfill.

The parse functions are pure and take the commands' text; the class only builds argv lists and
runs them through ``run`` (a fake one in tests).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from balsamd.launch.leader.nodes import expand_slurm_hostlist
from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import (
    BackfillWindow,
    JobStatus,
    Run,
    SchedulerError,
    SchedulerOutputError,
    checked,
    hms,
    run_command,
)
from balsamd.sched.script import GENERIC_TEMPLATE, optional_directives

B = BatchJobState
SQUEUE_FORMAT = "%i|%T|%S|%e|%N"
SINFO_FORMAT = "%P|%a|%l|%D|%t"

# squeue's %T words (slurm.h job_state_string); anything else is unreadable output
_QUEUED = "PENDING CONFIGURING REQUEUED REQUEUE_HOLD REQUEUE_FED RESV_DEL_HOLD SPECIAL_EXIT"
_RUNNING = "RUNNING COMPLETING SUSPENDED STOPPED RESIZING SIGNALING STAGE_OUT"
_FINISHED = "COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL PREEMPTED OUT_OF_MEMORY BOOT_FAIL DEADLINE REVOKED"
STATES: dict[str, BatchJobState] = {
    **dict.fromkeys(_QUEUED.split(), B.QUEUED),
    **dict.fromkeys(_RUNNING.split(), B.RUNNING),
    **dict.fromkeys(_FINISHED.split(), B.FINISHED),
}
NO_TIME = frozenset({"", "N/A", "NONE", "UNKNOWN"})
NO_LIMIT = frozenset({"INFINITE", "UNLIMITED", "N/A", "NONE"})
# the job ids squeue accepts: 1234, 1234_7 (array task), 1234+1 (heterogeneous component)
JOB_ID = re.compile(r"\d+(?:_\d+|\+\d+)?")
INVALID_ID = "Invalid job id specified"
ALREADY_DONE = "already completing or completed"


def parse_submit(text: str) -> str:
    """The job id in ``sbatch --parsable`` output: ``1234`` or ``1234;cluster``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    job_id = lines[-1].split(";", 1)[0] if lines else ""
    if not job_id.isdigit():
        raise SchedulerOutputError("sbatch --parsable output", text)
    return job_id


def parse_time(text: str) -> float | None:
    """An ISO local time as squeue prints it (2026-11-21T12:00:00), or None for N/A, NONE, Unknown."""
    text = text.strip()
    if text.upper() in NO_TIME:
        return None
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        raise SchedulerOutputError("squeue time", text) from None


def parse_squeue(text: str) -> dict[str, JobStatus]:
    """Statuses from ``squeue -h -o '%i|%T|%S|%e|%N'`` output.

    A queued job's start time is only Slurm's forecast and a running job's end its time limit,
    so they are left out: start_time is set once the job has started, end_time once it ended.
    """
    out: dict[str, JobStatus] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 5:
            raise SchedulerOutputError("squeue output", text, f"line {number} has {len(fields)} fields, not 5")
        job_id, raw_state, start, end, nodelist = fields
        state = STATES.get(raw_state.split()[0] if raw_state.strip() else "")
        if not job_id or state is None:
            raise SchedulerOutputError("squeue output", text, f"line {number} has the state {raw_state[:20]!r}")
        try:
            started, ended = parse_time(start), parse_time(end)
            listed = nodelist.strip() not in ("", "(null)")
            nodes = expand_slurm_hostlist(nodelist, "squeue's node list") if listed else []
        except SchedulerOutputError:
            raise SchedulerOutputError("squeue output", text, f"line {number} has a time squeue does not print")\
                from None  # fmt: skip
        except ValueError as exc:
            raise SchedulerOutputError("squeue output", text, str(exc).split("; ")[0]) from None
        out[job_id] = JobStatus(
            scheduler_id=job_id, state=state, raw_state=raw_state.strip(),
            # a job cancelled while pending gets StartTime = EndTime = the cancellation, and no
            # nodes: it never started
            start_time=started if state == B.RUNNING or (state == B.FINISHED and nodes) else None,
            end_time=ended if state == B.FINISHED else None,
            nodes=nodes,
        )  # fmt: skip
    return out


def parse_time_limit(text: str) -> int:
    """Minutes in a Slurm time limit, 0 for INFINITE.

    Slurm's forms: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``
    (sinfo prints ``30:00``, ``2:00:00``, ``1-00:00:00``); seconds are dropped.
    """
    text = text.strip()
    if text.upper() in NO_LIMIT:
        return 0
    days, sep, clock = text.rpartition("-")
    parts = clock.split(":")
    if (sep and not days.isdigit()) or len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise SchedulerOutputError("Slurm time limit", text)
    numbers = [int(p) for p in parts]
    if sep:  # D-H, D-H:M, D-H:M:S
        hours, minutes = numbers[0], (numbers[1] if len(numbers) > 1 else 0)
    elif len(numbers) == 3:  # H:M:S
        hours, minutes = numbers[0], numbers[1]
    else:  # M, M:S
        hours, minutes = 0, numbers[0]
    return int(days or 0) * 1440 + hours * 60 + minutes


def parse_sinfo(text: str) -> list[BackfillWindow]:
    """Idle nodes per partition from ``sinfo -h -o '%P|%a|%l|%D|%t'``, with the partition's time limit.

    Only nodes whose state is exactly ``idle`` count: ``idle*`` (not responding), ``idle~``
    (powered down), ``idle#`` (powering up) and the like cannot take a job now.
    """
    idle: dict[str, BackfillWindow] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 5 or not fields[0] or not fields[3].isdigit():
            raise SchedulerOutputError("sinfo output", text)
        partition, available, limit, count, state = fields
        try:
            minutes = parse_time_limit(limit)
        except SchedulerOutputError:
            raise SchedulerOutputError("sinfo output", text) from None
        if available != "up" or state != "idle" or int(count) == 0:
            continue
        queue = partition.rstrip("*")
        window = idle.setdefault(queue, BackfillWindow(num_nodes=0, wall_time_min=minutes, queue=queue))
        window.num_nodes += int(count)
    return list(idle.values())


class SlurmScheduler:
    name = "slurm"
    commands: tuple[str, ...] = ("sbatch", "squeue", "scancel", "sinfo")
    default_template = GENERIC_TEMPLATE

    def __init__(self, run: Run = run_command) -> None:
        self.run = run

    def directives(self, batch: BatchJob) -> list[str]:
        lines = [
            f"#SBATCH --job-name=balsamd-{batch.id}",
            f"#SBATCH --nodes={batch.num_nodes}",
            f"#SBATCH --time={hms(batch.wall_time_min)}",
        ]
        if batch.queue:
            lines.append(f"#SBATCH --partition={batch.queue}")
        if batch.project:
            lines.append(f"#SBATCH --account={batch.project}")
        # relative to the job's working directory, which submit() sets to the script's folder
        lines.append(f"#SBATCH --output={batch.id}.out")
        return lines + optional_directives(batch, "#SBATCH --{key}={value}")

    def submit(self, script: Path, cwd: Path) -> str:
        return parse_submit(checked(["sbatch", "--parsable", f"--chdir={cwd}", str(script)], self.run))

    def _squeue(self, ids: list[str]) -> str | None:
        """squeue's output for these ids; None when Slurm knows none of them."""
        argv = ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT]
        done = self.run(argv)
        if done.returncode == 0:
            return done.stdout
        if INVALID_ID in done.stderr + done.stdout:
            return None
        detail = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        raise SchedulerError(f"{' '.join(argv)} failed: {detail}")

    def status(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        ids = list(dict.fromkeys(i for i in scheduler_ids if JOB_ID.fullmatch(i)))
        if not ids:
            return {}
        text = self._squeue(ids)
        if text is not None:
            found = parse_squeue(text)
        elif len(ids) == 1:
            found = {}
        else:  # one squeue call for all failed over an id Slurm has forgotten: ask one by one
            found = {}
            for job_id in ids:
                one = self._squeue([job_id])
                if one is not None:
                    found.update(parse_squeue(one))
        wanted = set(ids)
        return {job_id: st for job_id, st in found.items() if job_id in wanted}

    def cancel(self, scheduler_id: str) -> None:
        """Cancel a job; one that has already ended, or that Slurm has forgotten, is no error."""
        done = self.run(["scancel", scheduler_id])
        reply = done.stderr + done.stdout
        if done.returncode != 0 and INVALID_ID not in reply and ALREADY_DONE not in reply:
            detail = reply.strip() or f"exit code {done.returncode}"
            raise SchedulerError(f"scancel {scheduler_id} failed: {detail}")

    def backfill(self) -> list[BackfillWindow]:
        return parse_sinfo(checked(["sinfo", "-h", "-o", SINFO_FORMAT], self.run))
