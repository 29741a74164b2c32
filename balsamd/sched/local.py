"""The local scheduler: a batch job is a background process group on this host.

For workstations and tests.  Its id is ``PID:STARTTIME`` so that a recycled pid is never
mistaken for the batch job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from balsamd.models import BatchJob, BatchJobState
from balsamd.modes import open_file
from balsamd.sched.base import BackfillWindow, JobStatus, Run, SchedulerError, run_command
from balsamd.sched.script import GENERIC_TEMPLATE, optional_directives


def _start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields[19]


class LocalScheduler:
    name = "local"
    commands: tuple[str, ...] = ()
    default_template = GENERIC_TEMPLATE

    def __init__(self, run: Run = run_command) -> None:
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def directives(self, batch: BatchJob) -> list[str]:
        header = f"# balsamd batch job {batch.id}: {batch.num_nodes} node(s), {batch.wall_time_min} min"
        return [header, *optional_directives(batch, "# optional parameter {key}={value}")]

    def submit(self, script: Path, cwd: Path) -> str:
        log = script.with_suffix(".out")
        try:
            # the output is as private as its script
            fd = open_file(log, os.O_WRONLY | os.O_APPEND, stat.S_IMODE(script.stat().st_mode) & 0o666)
            with os.fdopen(fd, "ab") as out:
                proc = subprocess.Popen(
                    ["/bin/bash", str(script)], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
        except OSError as exc:
            raise SchedulerError(f"could not start {script}: {exc}") from None
        self._children[proc.pid] = proc
        return f"{proc.pid}:{_start_time(proc.pid)}"

    def _reap(self) -> None:
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]

    def status(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        self._reap()
        now = time.time()
        out = {}
        for sid in scheduler_ids:
            pid, _, started = sid.partition(":")
            alive = pid.isdigit() and _start_time(int(pid)) == started
            state = BatchJobState.RUNNING if alive else BatchJobState.FINISHED
            out[sid] = JobStatus(
                scheduler_id=sid, state=state, raw_state="alive" if alive else "exited",
                end_time=None if alive else now,
            )  # fmt: skip
        return out

    def cancel(self, scheduler_id: str) -> None:
        pid, _, started = scheduler_id.partition(":")
        if pid.isdigit() and _start_time(int(pid)) == started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGTERM)

    def backfill(self) -> list[BackfillWindow]:
        return []

    def kill_all(self) -> None:
        """Kill and reap every batch job this scheduler started, for owners whose batch jobs must not outlive them."""
        for proc in self._children.values():
            if proc.poll() is None:  # not reaped: its pid is still its own
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._children.clear()
