"""Whether a directory may have gained entries since last asked, usually in one system call.

A warm worker runs short jobs in an empty scratch directory and after each run must know
whether the run left anything there.  Listing the directory costs an open, two reads and a
close on every run; an inotify watch answers with one poll that nearly always finds nothing.
Where inotify is missing (not Linux, the user's limit of instances reached, a filesystem that
refuses watches) the answer is always "maybe" and the caller lists the directory.

Only changes made through this node's kernel are seen, which is what is asked: the run is a
process on this node.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select

# from <sys/inotify.h>: an entry created or moved in; the directory itself moved or deleted
_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_MASK = _IN_CREATE | _IN_MOVED_TO | _IN_DELETE_SELF | _IN_MOVE_SELF


def _libc() -> ctypes.CDLL | None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if hasattr(libc, "inotify_init1"):
            return libc
    return None


class EntryWatch:
    """Watches one directory path; call :meth:`watch` again after replacing the directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._libc = _libc()
        self._fd: int | None = None
        self._wd: int | None = None
        if self._libc is not None:
            fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            self._fd = fd if fd >= 0 else None
        self._poll = select.poll()
        if self._fd is not None:
            self._poll.register(self._fd, select.POLLIN)
        self.watch()

    @property
    def exact(self) -> bool:
        """False when every question is answered "maybe"."""
        return self._wd is not None

    def watch(self) -> None:
        """Watch the directory now at ``path`` and forget what happened before."""
        if self._fd is None or self._libc is None:
            return
        if self._wd is not None:
            self._libc.inotify_rm_watch(self._fd, self._wd)  # fails harmlessly if it went with its directory
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(self.path), _MASK)
        self._wd = wd if wd >= 0 else None
        self._drain()

    def maybe_changed(self) -> bool:
        """True if entries may have been added since the last call (or :meth:`watch`)."""
        if self._wd is None:
            return True
        # asked after every short run, and nearly always nothing happened: a poll answers that
        # without the exception a read raises
        return bool(self._poll.poll(0)) and self._drain()

    def _drain(self) -> bool:
        assert self._fd is not None
        seen = False
        while True:
            try:
                if not os.read(self._fd, 4096):
                    return seen
            except BlockingIOError:
                return seen
            seen = True

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = self._wd = None
