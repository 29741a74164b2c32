"""Where a short command run writes: its workdir and output file, made only if it uses them.

A launcher starting a thousand ``true`` runs a second would otherwise make a directory and a file
for each: two metadata operations that on Lustre or GPFS cost more than the run itself (and on
an ext4 without a journal, which scans past recently deleted inodes, sometimes a millisecond
each).  So a run of an app known to be short starts in its workdir when that exists (staged
inputs, an earlier attempt), else in an empty scratch directory *beside* it, in the same parent
directory, so that relative paths such as ``../common.in`` name what they would from the
workdir.  Its stdout and stderr go to a spill file.  After the run, a scratch directory it left
something in is renamed to be its workdir, and a spill file it wrote becomes its ``job.out``;
unused ones serve the next run.  A campaign of silent short runs makes a handful of directories
and files, not two per run.  The Python worker (``python/files.py``) keeps its short runs' files
with the same helpers (``workdirs.py``).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from balsamd.launch.workdirs import keep_output, move_scratch

log = logging.getLogger("balsamd.launcher")

SCRATCH_PREFIX = ".balsamd-scratch-"
KEEP_IDLE_SCRATCH = 64  # idle scratch directories kept for later runs, over all parents

T = TypeVar("T")


@dataclass
class LazyRun:
    """Where one lazy run writes."""

    cwd: str
    in_scratch: bool
    spill: str
    spill_fd: int  # its stdout and stderr


class LazyFiles:
    """Scratch directories and spill files for a launcher's lazy runs, reused while unused."""

    def __init__(self, spool: str) -> None:
        self.spool = spool  # where spill files live: on the site's data filesystem, so renames work
        # launchers on several nodes may share the data directory: names say whose they are
        self._tag = f"{socket.gethostname()}-{os.getpid()}-"
        self._serial = itertools.count()
        self._spills: list[tuple[str, int]] = []
        self._idle: dict[str, str] = {}  # idle scratch directory -> its parent, oldest first
        self._idle_in: dict[str, list[str]] = {}  # parent -> its idle scratch directories

    def begin(self, workdir: str) -> LazyRun:
        """Files for a run of ``workdir`` (an absolute path); every run begun must be ended,
        also one whose process could not start."""
        if os.access(workdir, os.F_OK):  # a lookup: cheaper than anything that makes
            cwd, in_scratch = workdir, False
        else:
            cwd, in_scratch = self._take_scratch(os.path.dirname(workdir)), True
        try:
            spill, fd = self._spills.pop() if self._spills else self._new_spill()
        except OSError:
            if in_scratch:
                self._give_back_scratch(cwd)
            raise
        return LazyRun(cwd, in_scratch, spill, fd)

    def end(self, run: LazyRun, workdir: str, output: str) -> bool:
        """After the run (its process has exited): keep what it wrote.  True if it wrote output."""
        if run.in_scratch:
            try:
                with os.scandir(run.cwd) as entries:
                    used = next(entries, None) is not None
            except OSError:  # the run removed or moved its directory: nothing of it is left here
                used = None
            if used:
                try:
                    problems = move_scratch(run.cwd, workdir, f"{run.cwd}.left")
                except OSError as exc:  # one odd run must not stop the launcher
                    problems = [f"could not move what a run left in {run.cwd} into {workdir}: {exc}"]
                for problem in problems:
                    log.warning("%s", problem)
            elif used is False:
                self._give_back_scratch(run.cwd)
        if os.fstat(run.spill_fd).st_size == 0:
            self._spills.append((run.spill, run.spill_fd))
            return False
        os.close(run.spill_fd)  # a process the run left behind may go on writing: the file is the job's
        trouble = keep_output(run.spill, output)
        if trouble:
            log.warning("%s", trouble)
        return trouble is None

    def close(self) -> None:
        """Remove the idle scratch directories and spill files (call once no lazy run is left)."""
        for spill, fd in self._spills:
            os.close(fd)
            _remove(os.unlink, spill)
        self._spills.clear()
        for scratch in self._idle:
            _remove(os.rmdir, scratch)
        self._idle.clear()
        self._idle_in.clear()

    def _new_spill(self) -> tuple[str, int]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        return self._new(self.spool, "run-", ".out", lambda path: os.open(path, flags, 0o644))

    def _take_scratch(self, parent: str) -> str:
        idle = self._idle_in.get(parent)
        if idle:
            scratch = idle.pop()
            del self._idle[scratch]
            return scratch
        return self._new(parent, SCRATCH_PREFIX, "", os.mkdir)[0]

    def _new(self, where: str, prefix: str, suffix: str, make: Callable[[str], T]) -> tuple[str, T]:
        """Make a file or directory of a name nobody has: ``where`` is made if missing, and a
        name left by an earlier launcher of the same host and pid is passed over."""
        while True:
            path = os.path.join(where, f"{prefix}{self._tag}{next(self._serial)}{suffix}")
            try:
                return path, make(path)
            except FileExistsError:
                continue
            except FileNotFoundError:
                os.makedirs(where, exist_ok=True)
                return path, make(path)

    def _give_back_scratch(self, scratch: str) -> None:
        parent = os.path.dirname(scratch)
        self._idle[scratch] = parent
        self._idle_in.setdefault(parent, []).append(scratch)
        if len(self._idle) > KEEP_IDLE_SCRATCH:  # runs spread over many parents: forget the oldest
            oldest, where = next(iter(self._idle.items()))
            del self._idle[oldest]
            siblings = self._idle_in[where]
            siblings.remove(oldest)
            if not siblings:
                del self._idle_in[where]
            _remove(os.rmdir, oldest)


def _remove(remove: Callable[[str], None], path: str) -> None:
    try:
        remove(path)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
