"""Serial mode on many nodes: one worker per node runs the jobs the leader places there.

The leader starts each worker with the site's MPI launcher (``mpiexec -n 1 --hosts NODE``,
``srun -w NODE`` ...) and talks to it over the launcher's forwarded stdin/stdout in the line
protocol of ``nodeproto.py``.  A worker whose stdin closes (its leader is gone) stops every run
it has: runs never outlive their leader.

Usage on a node: python -m balsamd.launch.running.nodeworker SITE_PATH
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from balsamd.config import load_settings
from balsamd.launch.forks import Forks
from balsamd.launch.running.local import LocalRunner
from balsamd.launch.running.nodeproto import (
    LineReader,
    RunFinished,
    SignalRuns,
    StartRun,
    WorkerReady,
    command_from_line,
    to_line,
)
from balsamd.launch.running.protocol import Finished, NoSpace, Placement


def placement_of(msg: StartRun) -> Placement:
    return Placement(job_id=msg.job.id, hosts=msg.hosts, gpu_ids=msg.gpu_ids, cpus=msg.cpus, occupancy=msg.occupancy)


def finished_message(f: Finished) -> RunFinished:
    return RunFinished(f.job_id, f.return_code, f.reason, f.result, f.stopped)


def no_space_messages(event: NoSpace) -> list[RunFinished]:
    return [RunFinished(job_id, None, event.reason, None, False, no_space=True) for job_id in event.job_ids]


def serve(site_path: Path, stdin_fd: int = 0, out: BinaryIO | None = None) -> int:
    # A node worker never starts a thread nor opens a database: its fork window stays open,
    # and the zygote is forked when the first Python run comes (which apps come is not known).
    with Forks().window() as forks:
        return _serve(site_path, stdin_fd, out or sys.stdout.buffer, forks)


def _serve(site_path: Path, stdin_fd: int, out: BinaryIO, forks: Forks) -> int:
    settings = load_settings(site_path / "settings.toml").launcher
    runner = LocalRunner(site_path, {}, settings, use_mpi=False, wakeup_fd=stdin_fd, forks=forks)
    reader = LineReader(stdin_fd)
    signal.signal(signal.SIGTERM, lambda *_: reader.__setattr__("eof", True))
    out.write(to_line(WorkerReady(os.uname().nodename, os.getpid())))
    out.flush()
    try:
        while not reader.eof:
            for event in runner.wait(1.0):
                if isinstance(event, Finished):  # the leader reported the start when it sent the run
                    out.write(to_line(finished_message(event)))
                elif isinstance(event, NoSpace):
                    out.write(b"".join(map(to_line, no_space_messages(event))))
            for line in reader.lines():
                msg = command_from_line(line)
                if msg is None:
                    continue
                if isinstance(msg, StartRun):
                    runner.apps[msg.app.name] = msg.app
                    failed = runner.start(msg.job, placement_of(msg))
                    if isinstance(failed, NoSpace):
                        out.write(b"".join(map(to_line, no_space_messages(failed))))
                    elif failed is not None:
                        out.write(to_line(finished_message(failed)))
                elif isinstance(msg, SignalRuns):
                    runner.signal(msg.job_ids, msg.signum)
                else:
                    reader.eof = True
            out.flush()
    finally:
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
