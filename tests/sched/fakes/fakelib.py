"""What the fake scheduler commands share: a little job state on disk, and misbehaviour on request.

The fakes (``pbs/qsub``, ``cobalt/nodelist``, ``lsf/bjobs``, ...) are run as programs, with
$FAKE_SCHED_STATE naming the folder that holds their state (``jobs.json``) and
$FAKE_SCHED_MODE asking for trouble:

- ``fail``: print an error on stderr and exit 2, as when the server is unreachable;
- ``empty``: print nothing and exit 0;
- ``malformed``: print text no scheduler would (``GARBAGE``) and exit 0.

Tests move jobs along with :func:`set_phase` and :func:`advance`.  Stdlib only: the fakes are
run by whichever python3 is first on PATH, with -S (no site-packages) to start quickly.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time

STATE_ENV = "FAKE_SCHED_STATE"
MODE_ENV = "FAKE_SCHED_MODE"
GARBAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"
FAILURE = "cannot connect to server sched01 (errno=15010)"
SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")

# a job's life in the fakes; "held" is entered only by set_phase
PHASES = ("queued", "running", "finished")
NEXT = {"queued": "running", "held": "running", "running": "finished", "finished": "finished"}


def misbehave(tool: str) -> None:
    """Act on $FAKE_SCHED_MODE; return only when the tool should answer normally."""
    mode = os.environ.get(MODE_ENV, "")
    if mode == "fail":
        sys.stderr.write(f"{tool}: {FAILURE}\n")
        sys.exit(2)
    if mode == "empty":
        sys.exit(0)
    if mode == "malformed":
        sys.stdout.write(GARBAGE)
        sys.exit(0)
    if mode:
        sys.stderr.write(f"{tool}: unknown {MODE_ENV}={mode!r}\n")
        sys.exit(99)


def fail(tool: str, message: str, code: int) -> None:
    sys.stderr.write(f"{tool}: {message}\n")
    sys.exit(code)


def sample(name: str) -> str:
    with open(os.path.join(SAMPLES, name)) as f:
        return f.read()


def directives(script: str, prefix: str) -> list[str]:
    """The options on a script's directive lines (``#PBS -l select=2`` -> ``-l``, ``select=2``)."""
    words: list[str] = []
    for line in script.splitlines():
        if line.startswith(prefix + " "):
            words += shlex.split(line[len(prefix) :])
    return words


def options(words: list[str]) -> dict[str, list[str]]:
    """Each ``-x value`` / ``--long value`` pair of a directive list, values in order."""
    out: dict[str, list[str]] = {}
    for flag, value in zip(words[::2], words[1::2], strict=False):
        out.setdefault(flag, []).append(value)
    return out


def _state_file(folder: str | os.PathLike[str] | None = None) -> str:
    folder = folder if folder is not None else os.environ.get(STATE_ENV)
    if not folder:
        fail("fake scheduler", f"${STATE_ENV} is not set", 98)
    return os.path.join(folder, "jobs.json")


def load(folder: str | os.PathLike[str] | None = None) -> dict:
    path = _state_file(folder)
    if not os.path.exists(path):
        return {"next": 4100, "jobs": {}}
    with open(path) as f:
        return json.load(f)


def save(data: dict, folder: str | os.PathLike[str] | None = None) -> None:
    path = _state_file(folder)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def add_job(nodes: int, cwd: str, script: str, **fields: object) -> dict:
    """Record a submitted job (queued) and return it; its "number" is the scheduler's counter."""
    data = load()
    number = data["next"]
    data["next"] = number + 1
    job = {
        "number": number, "phase": "queued", "nodes": nodes, "cwd": cwd, "script": script,
        "submitted": time.time(), "started": None, "ended": None, "cancelled": False, **fields,
    }  # fmt: skip
    data["jobs"][str(number)] = job
    save(data)
    return job


def find(data: dict, job_id: str) -> dict | None:
    """The job a scheduler id names: ``4100``, ``4100.pbs01`` or ``4100[]`` all name job 4100."""
    number = job_id.split(".", 1)[0].split("[", 1)[0]
    return data["jobs"].get(number)


def set_phase(folder: str | os.PathLike[str], job_id: str, phase: str, cancelled: bool = False) -> dict:
    """Move a job to a phase (queued, held, running, finished), stamping start and end times."""
    data = load(folder)
    job = find(data, job_id)
    if job is None:
        raise KeyError(job_id)
    now = time.time()
    if phase in ("running", "finished") and job["started"] is None and not cancelled:
        job["started"] = now
        job["hosts"] = [f"x1000c0s{i}b0n0" for i in range(job["nodes"])]
    if phase == "finished" and job["ended"] is None:
        job["ended"] = now
    job["phase"] = phase
    job["cancelled"] = job["cancelled"] or cancelled
    save(data, folder)
    return job


def advance(folder: str | os.PathLike[str], job_id: str) -> dict:
    """One step along queued -> running -> finished."""
    job = find(load(folder), job_id)
    if job is None:
        raise KeyError(job_id)
    return set_phase(folder, job_id, NEXT[job["phase"]])
