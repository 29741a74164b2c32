"""An app's ``cleanup_files``: globs of files removed from a job's workdir once it finished.

A glob names files inside the workdir only: it is relative, has no ``..`` and no ``**``, and
each ``/``-separated part is an ``fnmatch`` pattern for one level (as in the shell, ``*`` does
not match a leading dot).  Removal walks the workdir by directory descriptors opened with
``O_NOFOLLOW``, so a symbolic link on the way is never followed: a link that matches is
removed itself, its target is left alone.  Only files and links are removed, never
directories.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator

import msgspec

MAX_GLOB = 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def glob_problems(pattern: object) -> list[str]:
    """What makes ``pattern`` unusable as a cleanup glob (empty when it is fine)."""
    if not isinstance(pattern, str):
        return [f"cleanup_files glob {pattern!r} must be a string"]
    problems = []
    parts = pattern.split("/")
    if not pattern or len(pattern) > MAX_GLOB:
        problems.append(f"cleanup_files glob {pattern!r} must be 1 to {MAX_GLOB} characters")
    elif pattern.startswith("/"):
        problems.append(f"cleanup_files glob {pattern!r} is absolute; name files relative to the job's workdir")
    elif ".." in parts:
        problems.append(f"cleanup_files glob {pattern!r} goes up with '..'; it may name files in the workdir only")
    elif "" in parts or "." in parts:
        problems.append(f"cleanup_files glob {pattern!r} has an empty or '.' level; write it as 'dir/*.tmp'")
    elif "**" in parts:
        problems.append(f"cleanup_files glob {pattern!r} uses '**'; name each level, e.g. '*/*.tmp'")
    if "\0" in pattern:
        problems.append(f"cleanup_files glob {pattern!r} holds a NUL character")
    return problems


class Removal(msgspec.Struct, kw_only=True):
    """What a cleanup of one workdir did: paths relative to it."""

    removed: list[str] = []
    failed: list[str] = []  # "path: why"


def remove_matching(workdir: str, patterns: Iterable[str]) -> Removal:
    """Remove the files and links under ``workdir`` that ``patterns`` match.  A workdir that
    is missing, or is itself a symbolic link, has nothing removed."""
    done = Removal()
    try:
        top = os.open(workdir, _DIR_FLAGS)
    except FileNotFoundError:
        return done
    except OSError as exc:
        why = "a symbolic link or not a directory" if exc.errno in (errno.ENOTDIR, errno.ELOOP) else exc.strerror
        done.failed.append(f".: {why}; nothing removed")
        return done
    try:
        for pattern in patterns:
            if glob_problems(pattern):  # checked when the app was registered; never trusted here
                done.failed.append(f"{pattern}: not a cleanup glob")
                continue
            for path, name, dir_fd in _matches(top, "", pattern.split("/"), done):
                try:
                    os.unlink(name, dir_fd=dir_fd)
                    done.removed.append(path)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    done.failed.append(f"{path}: {exc.strerror}")
    finally:
        os.close(top)
    return done


def _matches(dir_fd: int, prefix: str, parts: list[str], done: Removal) -> Iterator[tuple[str, str, int]]:
    """(path, name, descriptor of its directory) of every non-directory the parts match."""
    part, rest = parts[0], parts[1:]
    try:
        entries = sorted(os.listdir(dir_fd))
    except OSError as exc:
        done.failed.append(f"{prefix or '.'}: {exc.strerror}")
        return
    for name in entries:
        if (name.startswith(".") and not part.startswith(".")) or not fnmatch.fnmatchcase(name, part):
            continue
        path = prefix + name
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            done.failed.append(f"{path}: {exc.strerror}")
            continue
        if not rest:
            if not stat.S_ISDIR(mode):
                yield path, name, dir_fd
            continue
        if not stat.S_ISDIR(mode):
            continue  # a file or a link where the glob goes down a level: never followed
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            done.failed.append(f"{path}: {exc.strerror}")
            continue
        try:
            yield from _matches(sub, path + "/", rest, done)
        finally:
            os.close(sub)
