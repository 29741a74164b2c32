"""Making a run's working directory and moving what a run left into it.

Shared by the two ways a short run is lazy about its files: command runs on the launcher
(``running/lazyfiles.py``) and runs in warm Python workers (``python/files.py``).  Each helper
costs one system call in the usual case: they run for every short run.
"""

from __future__ import annotations

import functools
import os
import shutil
from typing import Protocol


class WorkdirOutside(Exception):
    """A job's working directory resolves outside the site's data/ (a symlink on its path)."""


class Placed(Protocol):
    """What says where a job runs: a job, or one of its transfer items."""

    @property
    def workdir(self) -> str: ...

    @property
    def owner(self) -> str: ...


def job_workdir(data_prefix: str, job: Placed) -> str:
    """Where ``job`` runs: its workdir under the site's data/ (``data_prefix`` ends with a
    separator).  A central user's job must not reach out of data/ through a symlink that an
    earlier run left on its path: its path is resolved and checked first.  The site owner's own
    jobs skip the check, which costs a system call per level on every run."""
    path = data_prefix + job.workdir
    if job.owner:
        data = _real(data_prefix)
        real = os.path.realpath(path)
        if not real.startswith(data):
            raise WorkdirOutside(f"workdir {job.workdir} resolves to {real}, outside the site's data/")
    return path


@functools.lru_cache(maxsize=8)
def _real(data_prefix: str) -> str:
    return os.path.join(os.path.realpath(data_prefix), "")


def make_dir(path: str) -> None:
    """mkdir, making parents only when they are missing (one system call in the usual case)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def rename_into(src: str, dst: str) -> None:
    """rename, making the destination's parent directories when they are missing."""
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.rename(src, dst)


def move_scratch(scratch: str, workdir: str, aside: str) -> list[str]:
    """Make what a run left in ``scratch`` its ``workdir``'s; afterwards ``scratch`` is gone.

    Renaming the directory keeps the run's open files open.  Where that fails (the run made its
    workdir itself, a concurrent run of the same workdir got there first, another filesystem)
    entries move one by one, and what cannot move is put ``aside``.  Returns what went wrong."""
    try:
        rename_into(scratch, workdir)
        return []
    except OSError:
        pass
    problems = []
    for entry in os.listdir(scratch):
        try:
            os.makedirs(workdir, exist_ok=True)
            os.replace(os.path.join(scratch, entry), os.path.join(workdir, entry))
        except OSError as exc:
            problems.append(f"could not move {entry} into {workdir}: {exc}")
    if os.listdir(scratch):
        os.rename(scratch, aside)
        problems.append(f"files a run left that could not be moved into {workdir} are in {aside}")
    else:
        os.rmdir(scratch)
    return problems


def keep_output(spill: str, output: str) -> str | None:
    """Make a written spill file the run's output file; returns what went wrong, if anything."""
    try:
        rename_into(spill, output)
        return None
    except OSError:
        pass
    try:
        shutil.copyfile(spill, output)  # another filesystem
        os.unlink(spill)
        return None
    except OSError as exc:
        return f"could not keep the output of a run as {output}: {exc}"
