"""The benchmark contract shared by every ``benchmarks/bench_*.py`` module.

A benchmark compares balsamd with a baseline doing the same work in the same run, and states
what "good enough" means as a goal.  The runner (``benchmarks/run.py``) finds the modules,
runs every benchmark for several rounds and prints one table.

Writing a benchmark module
--------------------------

Create ``benchmarks/bench_<topic>.py`` exposing either

* ``def benchmarks(ctx: Context) -> list[Benchmark]`` (preferred: sizes can follow
  ``ctx.quick`` / ``ctx.scale`` through ``ctx.size``), or
* a module-level ``BENCHMARKS: list[Benchmark]``.

Each :class:`Benchmark` has

``name``
    dotted and starting with the topic, e.g. ``"claim.batch1000"``; ``--only claim`` selects
    every benchmark of the topic, ``--only claim.batch1000`` just one.
``unit``
    what ``measure`` and ``baseline`` return, e.g. ``"jobs/s"`` or ``"ms"``.
``measure()``
    one balsamd measurement in ``unit``.  It prepares what it needs (fresh files, processes)
    outside its timed region, times only the work with ``time.perf_counter``, and should check
    that the work was really done (e.g. the number of jobs claimed) by raising if not.
``baseline()``
    the same work done the plain way (a raw SQLite loop, ``xargs -P``, ...), measured the same
    way; ``None`` when there is nothing to compare with.
``goal_ratio``
    balsamd / baseline (medians) must be at least this.  For ``lower_is_better`` units the
    ratio is baseline / balsamd, so a ratio above 1 always means balsamd is ahead.
``goal_value``
    an absolute floor for balsamd's median (a ceiling when ``lower_is_better``).
``setup()`` / ``teardown()``
    optional, run once around all rounds of the benchmark and never timed (a shared fixture
    such as a pre-filled store file belongs here).

How the runner measures
-----------------------

Every round calls ``measure()`` and ``baseline()`` once each, alternating which goes first so
neither side always runs on a warmer machine, with a garbage collection before each call.  The
table shows the median and the min..max spread of each side, the ratio of the medians, the
goals and ``pass`` / ``miss`` (``-`` when no goal is set).  Missing a goal is a result, not a
failure: the runner exits 0 unless a benchmark raises (then its row says ``error`` and the
exit status is 1).

Scratch files go under ``ctx.scratch()``; the runner removes them all at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SCALE_ENV = "BALSAMD_BENCH_SCALE"


@dataclass
class Benchmark:
    name: str
    unit: str
    measure: Callable[[], float]
    baseline: Callable[[], float] | None = None
    goal_ratio: float | None = None
    goal_value: float | None = None
    lower_is_better: bool = False
    description: str = ""
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None


@dataclass
class Context:
    """What a benchmark module may adapt to: run size and a scratch area."""

    quick: bool = False
    # multiplies every size from ``size``; the tests use a tiny scale to stay fast
    scale: float = 1.0
    tmpdir: Path | None = None

    def size(self, full: int, quick: int | None = None, minimum: int = 1) -> int:
        """``full`` (or ``quick`` under --quick) times the scale, at least ``minimum``."""
        base = quick if (self.quick and quick is not None) else full
        return max(minimum, round(base * self.scale))

    def scratch(self, prefix: str = "bench-") -> Path:
        """A fresh empty directory, removed by the runner when all benchmarks are done."""
        if self.tmpdir is None:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="balsamd-bench-"))
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.tmpdir))


def scale_from_env(default: float = 1.0) -> float:
    text = os.environ.get(SCALE_ENV, "").strip()
    if not text:
        return default
    value = float(text)
    if value <= 0:
        raise ValueError(f"{SCALE_ENV} must be a positive number, got {text!r}")
    return value


def rate(count: int, seconds: float) -> float:
    """Throughput in units per second, guarding against a zero-length timing."""
    return count / max(seconds, 1e-9)
