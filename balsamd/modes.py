"""Who may read and write a site's files: the modes balsamd makes them with, and the code and
settings it refuses to use when someone else could have changed them.

A site's apps, settings and job template are code and instructions run as its owner, so the
owner alone may write them.  Everything balsamd makes in a site gets an explicit mode, whatever
the umask: 0700 directories and 0600 files, or 0750 and 0640 in a site made group-readable
(``[site] group_readable``), never writable by the group.  The secret, and the daemon's record
and lock, are 0600 in every site.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import NamedTuple


class Modes(NamedTuple):
    directory: int
    file: int

    @property
    def script(self) -> int:
        """A batch job script: its owner may run it (Cobalt's script mode runs the file itself)."""
        return self.file | 0o100


PRIVATE = Modes(directory=0o700, file=0o600)
GROUP_READABLE = Modes(directory=0o750, file=0o640)


def site_modes(group_readable: bool) -> Modes:
    return GROUP_READABLE if group_readable else PRIVATE


def make_dir(path: Path, mode: int, exist_ok: bool = False) -> None:
    """mkdir with exactly ``mode`` (the umask takes bits away from mkdir's); an existing
    directory is left as it is."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not exist_ok or not path.is_dir():
            raise
        return
    os.chmod(path, mode)


def open_file(path: Path, flags: int, mode: int) -> int:
    """os.open, creating ``path`` when missing, never through a symbolic link; the file ends
    up with exactly ``mode`` (an existing file of ours too)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_file(path: Path, data: str | bytes, mode: int) -> None:
    """Write ``path`` whole with exactly ``mode``."""
    try:
        with os.fdopen(open_file(path, os.O_WRONLY | os.O_TRUNC, mode), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    except OSError as exc:  # a write to a file object names no file: this one says which
        exc.filename = exc.filename or str(path)
        raise


def replace_file(path: Path, data: str | bytes, mode: int) -> None:
    """Write ``path`` whole with exactly ``mode`` so that a reader sees the old file or the new
    one, never a part: a new file beside it, synced, renamed over it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = open_file(temp, os.O_WRONLY | os.O_TRUNC | os.O_EXCL, mode)
    except FileExistsError:  # left by a process of this pid that died: it is ours to drop
        temp.unlink()
        fd = open_file(temp, os.O_WRONLY | os.O_TRUNC | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def changeable_by_others(path: Path, st: os.stat_result) -> str | None:
    """Why someone other than this user could change ``path`` (its stat ``st``), as a message
    saying what to do; None when only this user can."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid():
        return (
            f"{path} belongs to {_user(st.st_uid)}, not to you, and balsamd runs a site's code and settings "
            "as you; use a site of your own, with apps and settings that are yours"
        )
    if mode & 0o022:
        who = "every user" if mode & 0o002 else f"the group {_group(st.st_gid)}"
        return (
            f"{path} can be changed by {who} (mode {mode:04o}), and balsamd runs a site's code and settings "
            f"as you; make it yours alone to write with `chmod go-w {path}`"
        )
    return None


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"
