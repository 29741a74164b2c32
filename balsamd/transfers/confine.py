"""Where a transfer may read and write: the location's side inside its base directory, the job's
side inside its working directory.

A central user chooses the paths and the site owner's account moves the files, so a symbolic link
that leads out of its root (a run leaving ``result.dat -> ~/.ssh/id_rsa``, or a link under a
location's base) is never followed.  A link that stays inside is followed: the check is where a
path really leads (``os.path.realpath``), for the path and every directory above it.  What
is moved is a regular file, or a directory of nothing else (``source``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

Resolve = Callable[[str], str]


class Refused(Exception):
    """A path that leads out of its root, or a file that cannot be moved as asked; the message
    says which and what to do."""


class RealPaths:
    """``os.path.realpath`` that remembers the directories it resolved.  A task's items share
    their parents (the site's data/, a location's base), which realpath would resolve again
    for every item, a system call per level; here each directory costs one, once per task."""

    def __init__(self) -> None:
        self._dirs: dict[str, str] = {}

    def real(self, path: str) -> str:
        path = os.path.abspath(path)
        parent, name = os.path.split(path)
        if not name:
            return path
        found = self._dirs.get(parent)
        if found is None:
            found = self._dirs[parent] = self.real(parent)
        joined = os.path.join(found, name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined


def real_inside(root: str, path: str, what: str, real: Resolve = os.path.realpath) -> str:
    """The real path of ``path`` (which need not exist), or Refused when it is not ``root`` (a
    real path) or inside it.  ``what`` names the root in the message, e.g. "the working directory".
    """
    found = real(path)
    if found != root and not found.startswith(root.rstrip("/") + "/"):
        # the link's target stays out of the message: it may be the owner's, not the job's
        raise Refused(f"{path} leads out of {what} through a symbolic link; a link out of it is never followed")
    return found


@dataclass(frozen=True)
class Source:
    """What an item moves: its real path, whether it is a directory, and its bytes."""

    real: str
    directory: bool
    size: int


def source(root: str, path: str, what: str, *, recursive: bool, real: Resolve = os.path.realpath) -> Source:
    """The file (or, when ``recursive``, the directory) ``path`` to be moved, inside ``root``;
    Refused, or OSError naming ``path``, when it cannot be."""
    found = real_inside(root, path, what, real)
    try:
        info = os.stat(found)
    except OSError as exc:
        # named as the item names it, not as the links above it resolve
        raise OSError(exc.errno, exc.strerror, path) from None
    if stat.S_ISDIR(info.st_mode):
        if not recursive:
            raise Refused(not_recursive(path))
        return Source(real=found, directory=True, size=tree_size(found))
    if not stat.S_ISREG(info.st_mode):
        raise Refused(f"{path} is not a regular file or directory (a device, socket or pipe)")
    return Source(real=found, directory=False, size=info.st_size)


def not_recursive(path: str) -> str:
    """The error for a directory that an item names without its slot being recursive."""
    return f"{path} is a directory; to move a directory, mark the app's transfer slot recursive"


def made_fresh(root: str) -> bool:
    """Make the directory ``root``; True when it did not exist, so that nothing in it can lead
    out of it yet and paths inside need no check (a stage-in into a new workdir, the usual case,
    then costs no system call per directory above it)."""
    try:
        os.mkdir(root)
    except (FileExistsError, FileNotFoundError):
        return False
    return True


def make_parent(root: str, path: str, what: str, real: Resolve = os.path.realpath) -> None:
    """Create the directories above ``path``, refusing when ``path`` or one of them leads out
    of ``root``."""
    real_inside(root, path, what, real)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    # only directories were made, below a place that led inside; this says so where it matters
    real_inside(root, parent, what, real)


def tree_size(top: str) -> int:
    """The bytes of the regular files under the directory ``top``, or Refused at the first
    symbolic link or special file: a directory is moved only when all of it is plain files and
    directories, so that no link inside it can lead a reader out of its root."""
    size = 0
    for parent, dirs, files in os.walk(top, onerror=_raise):
        for name in dirs + files:
            path = os.path.join(parent, name)
            info = os.lstat(path)
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                raise Refused(f"{path} is a symbolic link inside the directory {top}; a directory is moved only "
                              "without links: replace the link with what it points to, or remove it")  # fmt: skip
            if stat.S_ISREG(mode):
                size += info.st_size
            elif not stat.S_ISDIR(mode):
                raise Refused(f"{path} is not a regular file or directory (a device, socket or pipe) inside the "
                              f"directory {top}; remove it")  # fmt: skip
    return size


def _raise(exc: OSError) -> None:
    raise exc
