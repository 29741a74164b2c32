"""A full disk: telling it from other failures, saying where it is, and when to say it again.

A site writes in three places that can fill up: its store, its data directory (the runs'
working directories and outputs) and its logs.  When one is full every write fails the same
way, again and again, until someone frees space: whoever meets it says so once with where and
how much is free, then at most once every ``SAY_AGAIN_SEC`` while it lasts, and once when it is
over (``FullWatch``), never a line per failed attempt.
"""

from __future__ import annotations

import enum
import errno
import os

import msgspec

# a disk with no free blocks, and a user's quota used up: both clear only when space is freed
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SAY_AGAIN_SEC = 60.0


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that failed for lack of space (or quota)."""
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def out_of_space(path: str | os.PathLike[str]) -> bool:
    """Whether the filesystem holding ``path`` has no block or no inode left, for failures
    that do not say why (SQLite reports a -wal it could not create by the errno of its last
    attempt, not the ENOSPC of its first).  Filesystems that count no inodes (f_files 0) are
    judged by their blocks alone."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return (st.f_blocks > 0 and st.f_bavail == 0) or (st.f_files > 0 and st.f_favail == 0)


class Space(msgspec.Struct, frozen=True):
    """The filesystem holding a path: where it is mounted, its free and total bytes (free as an
    ordinary user may use it; a quota may leave less)."""

    mount: str
    free: int
    total: int

    def __str__(self) -> str:
        return f"filesystem {self.mount}: {size_text(self.free)} free of {size_text(self.total)}"


def space_of(path: str | os.PathLike[str]) -> Space | None:
    """The filesystem holding ``path`` (or its nearest existing parent); None if even that
    cannot be looked at."""
    here = os.path.abspath(path)
    while True:
        try:
            st = os.statvfs(here)
            dev = os.stat(here).st_dev
            break
        except OSError:
            parent = os.path.dirname(here)
            if parent == here:
                return None
            here = parent
    return Space(_mount_point(here, dev), st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def _mount_point(path: str, dev: int) -> str:
    """The highest directory above ``path`` on the same device: where its filesystem is mounted."""
    while True:
        parent = os.path.dirname(path)
        try:
            if parent == path or os.stat(parent).st_dev != dev:
                return path
        except OSError:
            return path
        path = parent


def size_text(size: int) -> str:
    """``size`` bytes for people: 0 B, 512 B, 4.0 KiB, 1.5 GiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def full_message(path: str | os.PathLike[str], space: Space | None) -> str:
    """What to tell people about a write to ``path`` that found its disk full, and what to do."""
    where = f" ({space})" if space is not None else ""
    return f"no space left to write {path}{where}: free some space there (or raise the quota)"


class Notice(enum.Enum):
    """What a ``FullWatch`` decided is worth a line."""

    FULL = "full"  # the first failure: say what is full and where
    STILL_FULL = "still full"  # a reminder while it lasts, with how many failures were not told
    SPACE_AGAIN = "space again"  # writes go through again


class Say(msgspec.Struct, frozen=True):
    """One line to log: what, since when the place has been full, and how many failures since
    the last line were not logged."""

    notice: Notice
    since: float
    held: int


class FullWatch:
    """When to say that a place is full: the first failure at once, then at most once every
    ``every_sec`` while failures go on, and that it is over once a write goes through.

    A write may go through now and then on a nearly full disk; a first failure within
    ``every_sec`` of the last line is not told again, so a flickering disk costs at most two
    lines per ``every_sec``."""

    def __init__(self, every_sec: float = SAY_AGAIN_SEC) -> None:
        self.every_sec = every_sec
        self.full = False
        self.since = 0.0  # when this spell of failures began
        self.failures = 0  # in this spell
        self._said_at: float | None = None  # the last FULL or STILL_FULL line
        self._told = False  # a line said this spell is full: its end is worth a line too
        self._held = 0  # failures since the last line

    def failed(self, now: float) -> Say | None:
        """A write failed for lack of space: the line to log now, if any."""
        if not self.full:
            self.full, self.since, self.failures, self._told = True, now, 0, False
        self.failures += 1
        if self._said_at is not None and now - self._said_at < self.every_sec:
            self._held += 1
            return None
        notice = Notice.STILL_FULL if self._told else Notice.FULL
        say = Say(notice, self.since, self._held)
        self._said_at, self._told, self._held = now, True, 0
        return say

    def succeeded(self, now: float) -> Say | None:
        """A write went through: the line to log now, if a spell of failures was told."""
        if not self.full:
            return None
        self.full = False
        if not self._told:  # its failures are counted in the next line
            return None
        held, self._held = self._held, 0
        return Say(Notice.SPACE_AGAIN, self.since, held)
