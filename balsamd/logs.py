"""Log files that cannot fill the disk, and whose failures cannot kill or flood their process.

The daemon runs for weeks and a launcher may log for days: each log rotates by size
(``[logging] max_bytes``, keeping ``backups`` old files), so a site's logs never take more
than ``max_bytes * (backups + 1)`` each.  A record that cannot be written (the disk is full)
is dropped; logging's default prints a traceback to stderr for every such record, so here
the process says so on stderr once, then at most once a minute, and the log itself says how
many records were lost once writing works again.
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

from balsamd.config import LoggingSettings
from balsamd.diskspace import FullWatch, Notice
from balsamd.modes import open_file

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SiteLogHandler(logging.handlers.RotatingFileHandler):
    """A site's log file: rotated by size, made with the site's file mode, quiet when it
    cannot be written.  With ``stdio``, this process's stdout and stderr follow the current
    file (what the background daemon and its hook workers print goes there too)."""

    def __init__(
        self, path: Path, settings: LoggingSettings, file_mode: int, stdio: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.file_mode = file_mode
        self.stdio = stdio
        self.clock = clock
        self.watch = FullWatch()
        self._failed = False
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
        """A record that could not be written: dropped, and said on stderr at most once a minute."""
        self._failed = True
        error = sys.exc_info()[1]
        say = self.watch.failed(self.clock())
        if say is None or self.stdio:  # stderr is this very file
            return
        again = "" if say.notice is Notice.FULL else f" ({say.held} more lost since the last such line)"
        line = f"balsamd: cannot write the log {self.baseFilename}: {error}; records are dropped{again}\n"
        with contextlib.suppress(Exception):
            sys.stderr.write(line)
