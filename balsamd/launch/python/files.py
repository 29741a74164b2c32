"""Where a warm worker's run writes: its working directory and output file, made now or only if used.

Runs of apps whose runs are known to be short are lazy about files: one starts in its job's
working directory when that exists (staged inputs, an earlier attempt), otherwise in this
worker's empty scratch directory, which becomes the job's working directory if the run leaves
anything in it; its output goes to a spill file that becomes the job's output file only if
something was written.  A short run that writes nothing costs no directory and no file: a
campaign of a million of them makes no two million metadata operations on a parallel
filesystem.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from typing import TextIO

from balsamd.launch.python import protocol as pp
from balsamd.launch.python.dirwatch import EntryWatch
from balsamd.launch.workdirs import keep_output, make_dir, move_scratch


class Files:
    """Where a run writes: its working directory and output file, made now or only if used.

    The worker's spill file sits on fds 1 and 2 between runs.  An eager run gets its working
    directory made and its output file on fds 1 and 2 at once, so both can be watched while it
    runs.  A lazy run (its app's runs are short) starts in the scratch directory unless its
    working directory exists, and writes to the spill file; afterwards what it left becomes
    its job's.  Asking for ``workdir()`` during a lazy run moves it into its working directory.
    """

    def __init__(self, base: str, diagnostics: TextIO) -> None:
        self.spill = f"{base}.out"
        self.scratch = f"{base}.cwd"
        self.diagnostics = diagnostics  # the worker's own stderr, for what is not a job's output
        self._leftovers = itertools.count()
        self.task: pp.PyTask | None = None
        self.in_scratch = False
        os.makedirs(self.scratch, exist_ok=True)
        # entered by descriptor and watched for entries: no path lookup and no listing per run
        self._scratch_fd = os.open(self.scratch, os.O_RDONLY | os.O_DIRECTORY)
        self._scratch_watch = EntryWatch(self.scratch)
        self._point_output_at(self.spill)

    def _point_output_at(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def begin(self, task: pp.PyTask) -> None:
        self.task = task
        self.in_scratch = False
        if not task.lazy:
            make_dir(task.cwd)
            os.chdir(task.cwd)
            self._point_output_at(task.output)
            return
        if os.access(task.cwd, os.F_OK):  # cheaper than a failing chdir, the usual case
            try:
                os.chdir(task.cwd)
                return
            except OSError:
                pass
        os.fchdir(self._scratch_fd)
        self.in_scratch = True

    def workdir(self) -> str:
        """The running job's working directory, made now; a run in the scratch directory moves
        there with what it wrote (the directory is renamed: the run's open files stay open)."""
        assert self.task is not None
        if self.in_scratch:
            self._move_scratch(self.task.cwd)
            os.chdir(self.task.cwd)
            self.in_scratch = False
        else:
            make_dir(self.task.cwd)
        return self.task.cwd

    def end(self) -> None:
        """After a run: what it left in the scratch directory and the spill file becomes its job's."""
        task, self.task = self.task, None
        assert task is not None
        sys.stdout.flush()
        sys.stderr.flush()
        if not task.lazy:
            self._point_output_at(self.spill)
            return
        if self.in_scratch and self._scratch_watch.maybe_changed():
            with os.scandir(self._scratch_fd) as entries:
                used = next(entries, None) is not None
            if used:
                self._move_scratch(task.cwd)
        if os.fstat(1).st_size == 0:
            return
        # the run's own children may go on writing to the spill file: it is theirs now
        problem = keep_output(self.spill, task.output)
        if problem:
            self._warn(problem)
        self._point_output_at(self.spill)

    def _move_scratch(self, workdir: str) -> None:
        for problem in move_scratch(self.scratch, workdir, f"{self.scratch}.left{next(self._leftovers)}"):
            self._warn(problem)
        os.mkdir(self.scratch)
        os.close(self._scratch_fd)
        self._scratch_fd = os.open(self.scratch, os.O_RDONLY | os.O_DIRECTORY)
        self._scratch_watch.watch()

    def _warn(self, text: str) -> None:
        print(f"balsamd worker: {text}", file=self.diagnostics)

    def remove(self) -> None:
        self._scratch_watch.close()
        with contextlib.suppress(OSError):
            os.close(self._scratch_fd)
        with contextlib.suppress(OSError):
            os.unlink(self.spill)
        with contextlib.suppress(OSError):
            os.rmdir(self.scratch)
