"""Log files that cannot fill the disk, and whose failures cannot kill or flood their process.

The daemon runs for weeks and a launcher may log for days: each log rotates by size
(``[logging] max_bytes``, keeping ``backups`` old files), so a site's logs never take more
than ``max_bytes * (backups + 1)`` each.  A record that cannot be written (the disk is full)
is dropped; logging's default prints a traceback to stderr for every such record, so here
the process says so on stderr once, then at most once a minute, passes the dropped warnings
there (a few a minute), and the log itself says how many records were lost once writing
works again.  What a process prints to a stdout or stderr that cannot be written is dropped
too (``drop_unwritable_stdio``): a hook that prints must not fail for lack of space.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from balsamd.config import LoggingSettings
from balsamd.diskspace import FullWatch, Notice
from balsamd.modes import open_file

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ECHO_PER_MIN = 20  # warnings a log that cannot be written passes to stderr each minute


class SiteLogHandler(logging.handlers.RotatingFileHandler):
    """A site's log file: rotated by size, made with the site's file mode, quiet when it
    cannot be written.  With ``stdio``, this process's stdout and stderr follow the current
    file (what the background daemon and its hook workers print goes there too).  ``echo``:
    pass the warnings it drops to stderr; not when stderr shows every record already."""

    def __init__(
        self, path: Path, settings: LoggingSettings, file_mode: int, stdio: bool = False, echo: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.file_mode = file_mode
        self.stdio = stdio
        self.echo = echo
        self.clock = clock
        self.watch = FullWatch()
        self._failed = False
        self._echo_since = float("-inf")  # this minute of warnings passed to stderr began then
        self._echoed = 0
        super().__init__(path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8")
        self.setFormatter(logging.Formatter(FORMAT))

    def _open(self) -> io.TextIOWrapper:
        stream = os.fdopen(
            open_file(Path(self.baseFilename), os.O_WRONLY | os.O_APPEND, self.file_mode), "a", encoding="utf-8"
        )
        if self.stdio:
            with contextlib.suppress(OSError):  # what they held goes to the file they wrote
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(stream.fileno(), 1)
            os.dup2(stream.fileno(), 2)
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)
        if self._failed or not self.watch.full:
            return
        if self.watch.succeeded(self.clock()) is not None and self.stream is not None:
            try:
                self.stream.write(f"({self.watch.failures} log record(s) before the last one could not be written)\n")
                self.flush()
            except OSError:
                pass

    def handleError(self, record: logging.LogRecord) -> None:
        """A record that could not be written is dropped.  Stderr (often elsewhere: a batch
        job's output, a terminal) says so at most once a minute, and gets the dropped warnings
        themselves, at most ECHO_PER_MIN a minute: what is full and where is one of them."""
        self._failed = True
        error = sys.exc_info()[1]
        now = self.clock()
        say = self.watch.failed(now)
        if self.stdio:  # stderr is this very file
            return
        lines = []
        if say is not None:
            again = "" if say.notice is Notice.FULL else f" ({say.held} more lost since the last such line)"
            lines.append(f"balsamd: cannot write the log {self.baseFilename}: {error}; records are dropped{again}")
        if self.echo and record.levelno >= logging.WARNING:
            if now - self._echo_since >= 60.0:
                self._echo_since, self._echoed = now, 0
            if self._echoed < ECHO_PER_MIN:
                self._echoed += 1
                with contextlib.suppress(Exception):
                    lines.append(self.format(record))
        with contextlib.suppress(Exception):
            sys.stderr.write("".join(f"{line}\n" for line in lines))


class _DroppingFd(io.RawIOBase):
    """A file descriptor whose failed writes are dropped instead of raised."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data: Any, /) -> int:
        try:
            return os.write(self.fd, data)
        except OSError:
            return memoryview(data).nbytes  # dropped: this is where it would have been told


def drop_unwritable_stdio() -> None:
    """From now on, what this process prints to stdout or stderr (file descriptors 1 and 2,
    wherever they point later) is dropped when it cannot be written, instead of raising in
    whatever code printed it."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(
            io.BufferedWriter(_DroppingFd(fd)), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )
        with contextlib.suppress(OSError):
            getattr(sys, name).flush()
        setattr(sys, name, stream)
