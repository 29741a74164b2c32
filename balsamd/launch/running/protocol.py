"""What the leader asks of a runner and what a runner tells it, whoever runs the runs.

The leader places a job on its nodes and hands it to a :class:`Runner` with its
:class:`Placement`; the runner says what happened since it was last asked, as events: a run
started, a run finished, a job came back unstarted (maybe for lack of space), a host was lost.  The local runner
(``local.py``) runs on this host; the fleet (``fleet.py``) sends runs placed on other nodes to
a worker there and the rest to a local runner, through this same contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from balsamd.models import Job


@dataclass(frozen=True)
class Placement:
    """Where a run was placed and what it was charged on each of its hosts."""

    job_id: str
    hosts: list[str]
    gpu_ids: dict[str, list[int]]
    cpus: float  # charged per host; a whole node for multi-node runs
    occupancy: float  # charged per host


@dataclass
class Finished:
    """The end of one run, as the launcher reports it."""

    job_id: str
    return_code: int | None
    reason: str = ""
    result: bytes | None = None
    stopped: bool = False  # ended by the launcher (time out or kill), not by itself
    lost: bool = False  # its node or worker went away: the run's fate is unknown
    elapsed: float | None = None  # the run's own duration, where the runner measured it
    started_at: float | None = None  # when it started, for a run whose RunStarted never came


@dataclass
class RunStarted:
    job_id: str
    ts: float


@dataclass
class HandedBack:
    """A job the runner took but never started (its worker stopped): it may run elsewhere."""

    job_id: str


@dataclass
class NoSpace:
    """Jobs whose runs could not start because the disk holding their files is full: none of
    them started, and they may start once space is freed (``reason`` says where)."""

    job_ids: list[str]
    reason: str


@dataclass
class HostLost:
    """A host whose worker went away: nothing may be placed there again.  Its runs are
    reported lost (``Finished.lost``) by events of their own."""

    host: str


RunEvent = RunStarted | Finished | HandedBack | NoSpace | HostLost


class Runner(Protocol):
    """Starts, watches and stops runs; the leader calls it without knowing where they run."""

    def start(self, job: Job, placement: Placement) -> Finished | NoSpace | None:
        """Start a run; a run that cannot even start is returned as finished with the reason,
        one whose files find no space as NoSpace (it did not start)."""
        ...

    def wait(self, timeout: float) -> list[RunEvent]:
        """What happened since the last call, waiting at most ``timeout`` seconds for the first
        event (or for a watched descriptor to become readable)."""
        ...

    def signal(self, job_ids: list[str], sig: int) -> None:
        """Send ``sig`` to these runs; jobs held and not started yet are handed back instead."""
        ...

    def running(self) -> list[str]:
        """The jobs handed over and not ended: started, or waiting behind another run."""
        ...

    def can_follow(self, job: Job) -> bool:
        """Whether ``job`` may wait behind another run to take over its placement."""
        ...

    def follow(self, after: str, jobs: list[Job], placement: Placement) -> bool:
        """Queue ``jobs`` (``can_follow`` ones) behind the run of ``after``, to run in turn with
        its placement; False when they cannot wait there."""
        ...

    def short_apps_changed(self, app: str, short: bool) -> None:
        """Whether ``app``'s runs are now known to be short (lazy about files)."""
        ...

    def watch(self, fd: int) -> None:
        """Also return from ``wait`` when ``fd`` is readable (the caller reads it)."""
        ...

    def unwatch(self, fd: int) -> None: ...

    def close(self) -> None:
        """Kill every run and let go of every process and file the runner holds."""
        ...
