"""The faults of a round: a pure function of the run's seed and the round's number.

A round's faults fall at random times inside its fault window, each aimed at one kind of
process.  Every kind is aimed at least once a round; the rest are drawn at random.  Which
launcher a fault hits is decided when it fires (``pick`` modulo the launchers alive then): the
schedule says what to do and when, never what exists.  A fault that finds nothing of its kind
alive (the daemon being restarted, no MPI launcher yet) waits for one until the window closes.
"""

from __future__ import annotations

import enum
import random

import msgspec


class FaultKind(enum.StrEnum):
    DAEMON = "daemon"
    SERIAL = "serial launcher"
    MPI = "mpi launcher"
    POSTGRES = "postgres"


class Blast(enum.StrEnum):
    """How much of a launcher's batch job dies with it."""

    LEADER = "leader"  # the launcher's own process: its runs are left to its watchdog
    BATCH_JOB = "batch job"  # the batch job's whole process group, as when its node fails


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    at: float  # seconds after the round's campaign began
    kind: FaultKind
    pick: int = 0  # which of the targets alive when it fires: pick modulo their number
    blast: Blast = Blast.LEADER
    down_for: float = 0.0  # the daemon and PostgreSQL are started again this long after


class ScheduleShape(msgspec.Struct, frozen=True, kw_only=True):
    window: float = 30.0  # faults fall in [lead, window] seconds after the campaign began
    lead: float = 2.0
    mean_gap: float = 2.5  # about window / mean_gap faults a round, at least one per kind
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    daemon_down: tuple[float, float] = (0.2, 2.0)
    postgres_down: tuple[float, float] = (0.5, 3.0)


def rng_for(seed: int, round_no: int, purpose: str) -> random.Random:
    """A generator of its own for each purpose of each round: changing how a campaign is drawn
    leaves the faults of the same seed as they were."""
    return random.Random(f"{seed}:{round_no}:{purpose}")


def schedule(seed: int, round_no: int, shape: ScheduleShape) -> list[Fault]:
    """The round's faults in the order they fire."""
    if not shape.kinds:
        return []
    rng = rng_for(seed, round_no, "faults")
    count = max(len(shape.kinds), round((shape.window - shape.lead) / shape.mean_gap))
    kinds = [*shape.kinds, *(rng.choice(shape.kinds) for _ in range(count - len(shape.kinds)))]
    rng.shuffle(kinds)
    times = sorted(rng.uniform(shape.lead, shape.window) for _ in kinds)
    faults = []
    for at, kind in zip(times, kinds, strict=True):
        pick, blast = rng.randrange(1 << 16), rng.choice(tuple(Blast))
        down = {FaultKind.DAEMON: shape.daemon_down, FaultKind.POSTGRES: shape.postgres_down}.get(kind)
        if down is None:
            faults.append(Fault(at=round(at, 3), kind=kind, pick=pick, blast=blast))
        else:
            faults.append(Fault(at=round(at, 3), kind=kind, down_for=round(rng.uniform(*down), 3)))
    return faults
