"""The scheduler interface: submit, status of many at once, cancel, backfill windows.

Every command-line scheduler is the same shape: build an argv, run it, parse its output with
a pure function.  Parsers raise :class:`SchedulerOutputError` carrying the raw text when the
output is not what they know; the caller records that text and carries on, it never crashes.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from balsamd.models import BatchJob, BatchJobState


class SchedulerError(Exception):
    """A scheduler command failed (non-zero exit, or missing); the message has its output."""


# what to do about a reply that cannot be read: nothing is changed on its account
UNREAD = (
    "batch jobs keep their last known state; if this goes on, check that [scheduler] kind in settings.toml "
    "is this cluster's scheduler"
)


class SchedulerOutputError(SchedulerError):
    """A scheduler answered with text this parser does not understand; ``why`` says what in it."""

    def __init__(self, what: str, raw: str, why: str = "") -> None:
        shown = raw if len(raw) <= 2000 else raw[:2000] + "..."
        because = f" ({why})" if why else ""
        super().__init__(f"cannot parse {what}{because}: {shown!r}; {UNREAD}")
        self.raw = raw


class JobStatus(msgspec.Struct, kw_only=True):
    """What the scheduler says of one batch job."""

    scheduler_id: str
    state: BatchJobState  # queued, running or finished
    raw_state: str = ""  # the scheduler's own word (PENDING, R, Q, ...)
    start_time: float | None = None
    end_time: float | None = None
    nodes: list[str] = []


class BackfillWindow(msgspec.Struct, kw_only=True):
    """Nodes free now for at most wall_time_min minutes (0: without a known limit)."""

    num_nodes: int
    wall_time_min: int
    queue: str = ""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


Run = Callable[[Sequence[str]], Completed]


def run_command(argv: Sequence[str], timeout: float = 60.0, cwd: Path | None = None) -> Completed:
    """Run a scheduler command; a missing program or a hang becomes a SchedulerError."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise SchedulerError(f"{argv[0]}: command not found; is this the right scheduler for this site?") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{' '.join(argv)} did not answer within {timeout:g} s") from None
    return Completed(done.returncode, done.stdout, done.stderr)


def detail(done: Completed) -> str:
    """What a failed command said, for an error message."""
    return (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"


def submit_in(cwd: Path, script: Path, shell: str, program: str, run: Run) -> str:
    """Run a submit command in ``cwd`` through sh (for qsub and bsub, which cannot be told the
    folder); ``shell`` receives the folder as $1 and the script as $2, never pasted in."""
    done = run(["sh", "-c", shell, "sh", str(cwd.absolute()), str(script.absolute())])
    if done.returncode == 127:
        raise SchedulerError(f"{program}: command not found; is this the right scheduler for this site?")
    if done.returncode != 0:
        raise SchedulerError(f"{program} {script} failed: {detail(done)}")
    return done.stdout


def checked(argv: Sequence[str], run: Run) -> str:
    """stdout of a command that must succeed."""
    done = run(argv)
    if done.returncode != 0:
        raise SchedulerError(f"{' '.join(argv)} failed: {detail(done)}")
    return done.stdout


class Scheduler(Protocol):
    name: str
    # the scheduler commands this backend needs, used to detect it on PATH
    commands: tuple[str, ...]
    default_template: str

    def __init__(self, run: Run = run_command) -> None: ...

    def submit(self, script: Path, cwd: Path) -> str:
        """Submit a rendered job script; returns the scheduler's id for it."""

    def status(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        """Status of many batch jobs in one query; ids the scheduler no longer knows are absent."""

    def cancel(self, scheduler_id: str) -> None: ...

    def backfill(self) -> list[BackfillWindow]: ...

    def directives(self, batch: BatchJob) -> list[str]:
        """The job script's header lines that ask the scheduler for this batch job."""
        ...


def hms(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"
