"""Putting a file or a directory at its name: built under a temporary name beside it, then
renamed, so that nothing half-copied is ever seen under the name.

A directory that arrives where one already is merges into it, each file in one rename, as rsync
does: what was there and did not arrive stays.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Callable

from balsamd.transfers.confine import Refused

# copies one file to a new name: shutil.copy2, os.link, link_or_copy
Copy = Callable[[str, str], object]


def temp_beside(path: str) -> str:
    """A new hidden name in the directory of ``path``, for building what becomes ``path``."""
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}.{secrets.token_hex(8)}.part")


def install(source: str, dest: str, copy: Copy, *, tree: bool) -> None:
    """Make ``dest`` a copy of the file (or, with ``tree``, the directory) ``source``, each file
    copied by ``copy``; the parent of ``dest`` exists."""
    temp = temp_beside(dest)
    try:
        if tree:
            shutil.copytree(source, temp, symlinks=True, copy_function=copy)
        else:
            copy(source, temp)
        put(temp, dest)
    finally:
        remove(temp)


def put(prepared: str, dest: str) -> None:
    """Rename ``prepared`` (a file or a directory tree) to ``dest``.  A file replaces what is
    there (a symbolic link is replaced, never written through); a directory merges into a
    directory that is there."""
    if not stat.S_ISDIR(os.lstat(prepared).st_mode):
        os.replace(prepared, dest)
        return
    try:
        there = os.lstat(dest)
    except FileNotFoundError:
        os.rename(prepared, dest)
        return
    if not stat.S_ISDIR(there.st_mode):
        raise Refused(f"{dest} exists and is not a directory, so the directory cannot arrive there; remove it")
    for entry in list(os.scandir(prepared)):
        put(entry.path, os.path.join(dest, entry.name))
    shutil.copystat(prepared, dest)
    os.rmdir(prepared)


def remove(path: str) -> None:
    """Remove the file or directory tree ``path`` if it is there (a link itself, never its target)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def link_or_copy(source: str, dest: str) -> None:
    """A hard link of ``source`` at ``dest``; a copy where a link cannot be made (another
    filesystem, or a file the kernel will not let this user link)."""
    try:
        os.link(source, dest, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, dest, follow_symlinks=False)


def describe(exc: OSError) -> str:
    """What went wrong, as a person reads it: "No such file or directory: /base/in/3.dat"."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        # copytree's list of (source, destination, why), one per file it could not copy
        return "; ".join(str(why) for _, _, why in exc.args[0][:3])
    if exc.strerror and exc.filename is not None:
        text = f"{exc.strerror}: {os.fsdecode(exc.filename)}"
        if exc.filename2 is not None:
            text += f" -> {os.fsdecode(exc.filename2)}"
        return text
    return str(exc)
