"""A round's campaign: which jobs, and how each one must end, drawn from the seed.

Most jobs are short command jobs; a fifth are Python-function jobs whose results are checked;
a few are 2-rank MPI jobs; DAGs have a fan-in and a failing branch whose failure must reach
every descendant; and waves of jobs arrive through the central database while the faults
fall, each killing a job of the wave before (waiting, running or finished by then).  A few
runs of every kind nap longer than a launcher session lasts, so that a run orphaned by a dead
launcher would still be running when its job is handed to another one.

Every job has a key (a word): its marker files, its tag and its workdir are named by it, so
the checker finds each job's runs whatever id the site gave it.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from balsamd.lifecycle import PARENT_FAILED
from balsamd.states import JobState
from benchmarks.chaos.schedule import rng_for

COMMAND_APP = "Marked"  # bash: markers, a nap, an exit code (apps.py)
PYTHON_APP = "Square"  # a function: markers, a nap, {"key": key, "square": x * x}
FAILING_CODE = 3
CPUS_PER_NODE = 8
MPI_RANKS = 2


class Lane(enum.StrEnum):
    """Which launchers run a job: its tag ``lane``; serial launchers take single-rank jobs only."""

    SERIAL = "serial"
    MPI = "mpi"


class Planned(msgspec.Struct, kw_only=True):
    key: str
    app: str
    parameters: dict[str, Any]
    lane: Lane = Lane.SERIAL
    parents: list[str] = []  # keys of the jobs it waits for
    ranks: int = 1
    expect: JobState = JobState.JOB_FINISHED
    reason: str = ""  # how its state_reason must begin, when it matters
    result: Any = None  # a Python job's value
    wave: int | None = None  # created through the central database in this wave
    killable: bool = False  # a later wave kills it: KILLED, unless it had finished by then

    def spec(self, parent_ids: list[str]) -> dict[str, Any]:
        """The job request, with its parents' ids."""
        tags = {"lane": str(self.lane), "key": self.key}
        if self.wave is not None:
            tags["wave"] = str(self.wave)
        return {
            "app": self.app,
            "workdir": f"chaos/{self.key}",
            "parameters": self.parameters,
            "tags": tags,
            "parent_ids": parent_ids,
            "ranks_per_node": self.ranks,
            "node_packing_count": CPUS_PER_NODE // self.ranks,
        }


class Wave(msgspec.Struct, kw_only=True):
    at: float  # seconds after the campaign began
    jobs: list[Planned]
    kills: list[str] = []  # keys of jobs of earlier waves its user kills when it arrives


class Plan(msgspec.Struct, kw_only=True):
    site: list[Planned]  # created at the site before the daemon starts, parents first
    waves: list[Wave]

    def jobs(self) -> list[Planned]:
        return [*self.site, *(j for w in self.waves for j in w.jobs)]


class PlanShape(msgspec.Struct, frozen=True, kw_only=True):
    jobs: int = 2000
    window: float = 30.0  # waves arrive over the first part of the fault window
    long_nap: float = 7.0  # longer than a launcher session lives without heartbeats
    waves: int = 8


def command(key: str, nap: float, code: int = 0, **fields: Any) -> Planned:
    params = {"key": key, "nap": f"{nap:g}", "code": str(code)}
    return Planned(key=key, app=COMMAND_APP, parameters=params, **fields)


def python(key: str, x: int, nap: float = 0.0, **fields: Any) -> Planned:
    params = {"key": key, "x": x, "nap": nap}
    return Planned(key=key, app=PYTHON_APP, parameters=params, result={"key": key, "square": x * x}, **fields)


def mpi(key: str, nap: float, **fields: Any) -> Planned:
    return command(key, nap, lane=Lane.MPI, ranks=MPI_RANKS, **fields)


def dag(prefix: str, x: int) -> list[Planned]:
    """A root; two children joined by a fan-in; a failing child whose child, grandchild and a
    fan-in with a good branch all fail because of it."""
    parent = PARENT_FAILED
    return [
        python(f"{prefix}root", x),
        command(f"{prefix}left", 0.05, parents=[f"{prefix}root"]),
        command(f"{prefix}right", 0.1, parents=[f"{prefix}root"]),
        python(f"{prefix}join", x + 1, parents=[f"{prefix}left", f"{prefix}right"]),
        command(f"{prefix}bad", 0.05, FAILING_CODE, parents=[f"{prefix}root"], expect=JobState.FAILED),
        command(f"{prefix}badkid", 0, parents=[f"{prefix}bad"], expect=JobState.FAILED, reason=parent),
        command(f"{prefix}badgrand", 0, parents=[f"{prefix}badkid"], expect=JobState.FAILED, reason=parent),
        command(
            f"{prefix}badjoin", 0, parents=[f"{prefix}left", f"{prefix}bad"], expect=JobState.FAILED, reason=parent
        ),
    ]


DAG_SIZE = len(dag("", 0))


def plan(seed: int, round_no: int, shape: PlanShape) -> Plan:
    rng = rng_for(seed, round_no, "campaign")

    def nap(short: float, some: float, long: float) -> float:
        """Most runs are instant; some short, a few a second or two, a very few outlive a session."""
        draw = rng.random()
        if draw < long:
            return shape.long_nap
        if draw < long + some:
            return round(rng.uniform(1.0, 2.0), 2)
        if draw < long + some + short:
            return round(rng.uniform(0.05, 0.4), 2)
        return 0.0

    def job(key: str, wave: int | None = None) -> Planned:
        draw = rng.random()
        if draw < 0.02:
            return mpi(key, nap(0.8, 0.15, 0.05) or 0.2, wave=wave)
        if draw < 0.22:
            return python(key, rng.randrange(-(10**6), 10**6), nap(0.1, 0.02, 0.01), wave=wave)
        return command(key, nap(0.2, 0.04, 0.01), wave=wave)

    dags = max(1, shape.jobs // 250)
    remote = max(shape.waves * 3, shape.jobs // 10)
    alone = max(0, shape.jobs - dags * DAG_SIZE - remote)
    site = [
        *(p for d in range(dags) for p in dag(f"d{d}-", rng.randrange(1000))),
        *(job(f"s{n:05d}") for n in range(alone)),
    ]
    site = [j for level in levels(site) for j in level]
    times = sorted(rng.uniform(0.5, shape.window * 0.8) for _ in range(shape.waves))
    waves = []
    for w, at in enumerate(times):
        count = remote // shape.waves + (1 if w < remote % shape.waves else 0)
        jobs = [job(f"w{w}-{n:04d}", wave=w) for n in range(count - 2)]
        jobs.append(mpi(f"w{w}-mpi", round(rng.uniform(0.2, 1.0), 2), wave=w))
        jobs.append(command(f"w{w}-victim", round(rng.uniform(1.0, 4.0), 2), wave=w))
        waves.append(Wave(at=round(at, 3), jobs=jobs, kills=[f"w{w - 1}-victim"] if w else []))
    killed = {key for w in waves for key in w.kills}  # the last wave's victim has no later wave to kill it
    for j in (j for w in waves for j in w.jobs):
        j.killable = j.key in killed
    return Plan(site=site, waves=waves)


def levels(jobs: list[Planned]) -> list[list[Planned]]:
    """The jobs in groups that can each be created at once: every job's parents in earlier ones."""
    placed: set[str] = set()
    out: list[list[Planned]] = []
    waiting = list(jobs)
    while waiting:
        ready = [j for j in waiting if all(p in placed for p in j.parents)]
        if not ready:
            raise ValueError(f"parents never planned: {sorted({p for j in waiting for p in j.parents} - placed)}")
        out.append(ready)
        placed.update(j.key for j in ready)
        waiting = [j for j in waiting if j.key not in placed]
    return out
