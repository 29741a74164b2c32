"""Entry point of each rank of a multi-rank Python app launched with MPI.

Every rank runs the app's run(); the first rank's outcome is the job's result, written next
to the task file for the launcher to collect.

Usage: python -m balsamd.launch.python.rank TASK RESULT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import msgspec

from balsamd.launch.python.appcall import call_app
from balsamd.launch.python.protocol import PyTask

RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "ALPS_APP_PE")


def rank() -> int:
    for name in RANK_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def main(task_file: str, result_file: str) -> int:
    task = msgspec.msgpack.decode(Path(task_file).read_bytes(), type=PyTask)
    outcome = call_app(task)
    if rank() == 0:
        tmp = Path(f"{result_file}.tmp")
        tmp.write_bytes(msgspec.msgpack.encode(outcome))
        tmp.rename(result_file)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
