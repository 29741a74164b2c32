"""Schedulers: one interface (balsamd.sched.base.Scheduler), one module per scheduler."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable

from balsamd.sched.base import Run, Scheduler, run_command

BACKENDS: dict[str, str] = {
    "local": "balsamd.sched.local:LocalScheduler",
    "slurm": "balsamd.sched.slurm:SlurmScheduler",
    "pbs": "balsamd.sched.pbs:PbsScheduler",
    "cobalt": "balsamd.sched.cobalt:CobaltScheduler",
    "lsf": "balsamd.sched.lsf:LsfScheduler",
}


def scheduler_class(kind: str) -> type[Scheduler]:
    if kind not in BACKENDS:
        raise ValueError(f"unknown scheduler {kind!r}; use one of {', '.join(BACKENDS)}")
    module, _, name = BACKENDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def make_scheduler(kind: str, run: Run = run_command) -> Scheduler:
    return scheduler_class(kind)(run=run)


# the order matters: PBS and Cobalt both have qsub, so each is known by a command of its own
_DETECT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("slurm", ("sbatch", "squeue")),
    ("lsf", ("bsub", "bjobs")),
    ("pbs", ("qsub", "pbsnodes")),
    ("cobalt", ("qsub", "nodelist")),
)


def detect_scheduler(which: Callable[[str], str | None] = shutil.which) -> str:
    """The scheduler whose commands are on PATH; local when there is none."""
    for kind, commands in _DETECT:
        if all(which(c) for c in commands):
            return kind
    return "local"
