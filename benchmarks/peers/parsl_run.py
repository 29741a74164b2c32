"""N no-op tasks on Parsl's HighThroughputExecutor; prints one JSON line with the rate.

Runs inside Parsl's own virtual environment (``benchmarks/bench_peers.py`` makes it)::

    python parsl_run.py --kind bash|python --tasks N --cores C --run-dir DIR

``bash`` tasks are ``bash_app`` functions returning the command ``true`` (Parsl runs it with
``/bin/bash -c``); ``python`` tasks are ``python_app`` functions returning ``None``.  The
executor gets one block on this machine (``LocalProvider``) with ``max_workers_per_node =
cores``; everything else is Parsl's default.  Not timed: ``parsl.load`` and one warm-up task
per worker, so the workers are up.  Timed: submitting the N apps and waiting for all of their
results.  Only the standard library is imported at module level, so the settings can be
checked without Parsl installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

KINDS = ("bash", "python")


def htex_settings(cores: int, run_dir: str) -> dict[str, dict[str, Any]]:
    """Keyword arguments of the Config, the HighThroughputExecutor and the LocalProvider."""
    if cores < 1:
        raise ValueError(f"cores must be at least 1, not {cores}")
    return {
        "config": {"run_dir": run_dir, "usage_tracking": 0},
        "executor": {
            "label": "htex_local",
            "address": "127.0.0.1",
            "max_workers_per_node": cores,
            "cores_per_worker": 1.0,
        },
        "provider": {"init_blocks": 1, "min_blocks": 1, "max_blocks": 1},
    }


def build_config(settings: dict[str, dict[str, Any]]):
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    executor = HighThroughputExecutor(provider=LocalProvider(**settings["provider"]), **settings["executor"])
    return Config(executors=[executor], **settings["config"])


def run(kind: str, tasks: int, cores: int, run_dir: str) -> dict[str, Any]:
    import parsl
    from parsl import bash_app, python_app

    @bash_app
    def noop_bash():
        return "true"

    @python_app
    def noop_python():
        return None

    app = noop_bash if kind == "bash" else noop_python
    expected = 0 if kind == "bash" else None
    t0 = time.perf_counter()
    dfk = parsl.load(build_config(htex_settings(cores, run_dir)))
    try:
        for f in [app() for _ in range(cores)]:
            f.result()
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        futures = [app() for _ in range(tasks)]
        results = [f.result() for f in futures]
        elapsed = time.perf_counter() - t1
    finally:
        dfk.cleanup()
    wrong = sum(1 for r in results if r != expected)
    if wrong:
        raise RuntimeError(f"{wrong} of {tasks} Parsl {kind} tasks returned something else than {expected!r}")
    return {
        "tool": "parsl",
        "version": parsl.__version__,
        "kind": kind,
        "tasks": tasks,
        "cores": cores,
        "seconds": elapsed,
        "rate": tasks / max(elapsed, 1e-9),
        "startup_seconds": startup,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--cores", type=int, required=True)
    p.add_argument("--run-dir", required=True)
    args = p.parse_args(argv)
    result = run(args.kind, args.tasks, args.cores, args.run_dir)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
