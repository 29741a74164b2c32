"""What a launcher reports when it stops: how its runs went and why it stopped, as data."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import msgspec

from balsamd.states import JobState


class ExitReason(enum.Enum):
    """Why a launcher stopped; its caller decides what that means (an exit code, a retry)."""

    DONE = "done"  # it stopped for no other reason (its loop ended by an error of its own)
    IDLE = "idle"  # nothing to run for its idle time
    WALL_TIME = "wall time"  # its allocation's wall time is ending
    SIGNAL = "signal"  # SIGTERM or SIGINT
    NODES_LOST = "nodes lost"  # every node's worker went away
    SESSION_LOST = "session lost"  # its session expired or could not be renewed: runs were killed


class Exit(msgspec.Struct, frozen=True):
    """Why a launcher stopped, and the same for people (``detail``, e.g. "idle for 0.5 s")."""

    reason: ExitReason
    detail: str

    def __str__(self) -> str:
        return self.detail


DONE = Exit(ExitReason.DONE, "done")


@dataclass
class Summary:
    started: int = 0
    done: int = 0
    errors: int = 0
    timeouts: int = 0
    killed: int = 0
    elapsed: float = 0.0
    exit: Exit = DONE
    rejected: dict[str, str] = field(default_factory=dict)  # job id -> why its report was refused

    def count(self, state: JobState) -> None:
        """Count a run that ended in ``state`` (RUN_DONE, RUN_TIMEOUT or RUN_ERROR)."""
        if state == JobState.RUN_DONE:
            self.done += 1
        elif state == JobState.RUN_TIMEOUT:
            self.timeouts += 1
        else:
            self.errors += 1
