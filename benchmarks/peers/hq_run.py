"""N no-op tasks on a HyperQueue LocalCluster; prints one JSON line with the rate.

Runs inside HyperQueue's own virtual environment (``benchmarks/bench_peers.py`` makes it)::

    python hq_run.py --kind program|function --tasks N --cores C --server-dir DIR

``program`` tasks run ``true``; ``function`` tasks call a Python function returning ``None``
(HyperQueue starts a fresh interpreter of this environment for each one).  One worker with
``cores`` cores; task output is not kept (``stdout=None, stderr=None``), so no files are
written per task.  Not timed: starting the cluster and its worker, and one warm-up job with
one task per core.  Timed: building the job of N tasks, submitting it and waiting for it.
Only the standard library is imported at module level, so the settings can be checked
without HyperQueue installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

KINDS = ("program", "function")
COMMAND = ["true"]


def noop() -> None:
    return None


def cluster_settings(cores: int, server_dir: str, python: str) -> dict[str, Any]:
    """What the cluster, its worker and the client are made with."""
    if cores < 1:
        raise ValueError(f"cores must be at least 1, not {cores}")
    return {
        "server_dir": server_dir,
        "worker_cores": cores,
        "python_bin": python,
        "task": {"stdout": None, "stderr": None},
    }


def add_tasks(job: Any, kind: str, count: int, task_options: dict[str, Any]) -> None:
    for _ in range(count):
        if kind == "program":
            job.program(COMMAND, **task_options)
        else:
            job.function(noop, **task_options)


def run(kind: str, tasks: int, cores: int, server_dir: str) -> dict[str, Any]:
    from importlib.metadata import version

    from hyperqueue import Job
    from hyperqueue.cluster import LocalCluster, WorkerConfig
    from hyperqueue.task.function import PythonEnv

    settings = cluster_settings(cores, server_dir, sys.executable)
    t0 = time.perf_counter()
    with LocalCluster(server_dir=settings["server_dir"]) as cluster:
        cluster.start_worker(WorkerConfig(cores=settings["worker_cores"]))
        client = cluster.client(python_env=PythonEnv(python_bin=settings["python_bin"]))
        warm = Job()
        add_tasks(warm, kind, cores, settings["task"])
        client.wait_for_jobs([client.submit(warm)])
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        job = Job()
        add_tasks(job, kind, tasks, settings["task"])
        ok = client.wait_for_jobs([client.submit(job)], raise_on_error=False)
        elapsed = time.perf_counter() - t1
    if not ok:
        raise RuntimeError(f"some of the {tasks} HyperQueue {kind} tasks failed")
    return {
        "tool": "hyperqueue",
        "version": version("hyperqueue"),
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
    p.add_argument("--server-dir", required=True)
    args = p.parse_args(argv)
    result = run(args.kind, args.tasks, args.cores, args.server_dir)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
