"""One ssh connection per remote host for many rsync tasks (ssh's connection multiplexing).

Every rsync logs in anew otherwise: on a login node that is most of a small task's time (the
key exchange), and on hosts with two-factor logins a prompt per task.  ssh keeps the master
connection's socket in a directory only this user may enter; a socket's path is at most 108
bytes, so the directory must be short.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path

from balsamd.transfers import cancellable

# 108 bytes of a socket's path, less ssh's "/cm-" and %C (44) and the suffix of its temporary name (17)
MAX_DIR = 46
PERSIST_S = 60  # an idle master connection stays this long for the next task


def control_dir(site_dir: Path) -> str | None:
    """A private directory for the sockets, short enough, or None when there is none: the site's
    own, else ~/.ssh, else one in the temporary directory, each used only when it is a directory
    of this user that nobody else may enter."""
    candidates = (site_dir / "ssh", Path.home() / ".ssh", Path(tempfile.gettempdir()) / f"balsamd-ssh-{os.getuid()}")
    for candidate in candidates:
        path = str(candidate)
        if len(path) > MAX_DIR:
            continue
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
            return path
    return None


def multiplex_options(directory: str) -> list[str]:
    """ssh options sharing one connection per (user, host, port) through ``directory``."""
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={directory}/cm-%C", "-o", f"ControlPersist={PERSIST_S}"]


_opening: dict[tuple[str, ...], threading.Lock] = {}
_confirmed: dict[tuple[str, ...], int] = {}  # how often the connection was found or made open
_guard = threading.Lock()


def share_login(ssh: list[str], login: str, output: str, cancel: threading.Event) -> None:
    """Open the connection tasks to ``login`` share (``ssh``: its argv with
    ``multiplex_options``), unless it is open.  Tasks that start together would otherwise each
    log in, and on a host with two-factor logins each ask; the first opens it and the others
    wait for it.  Where it cannot be opened (ssh's words in ``output``), each task's own ssh
    logs in and says why it cannot.  A call that waited while another opened it (or found it
    open) asks no more: the check costs a process on the way to each task's rsync."""
    key = (*ssh, login)
    with _guard:
        lock = _opening.setdefault(key, threading.Lock())
        seen = _confirmed.get(key, 0)
    with lock:
        if _confirmed.get(key, 0) != seen:
            return
        # ControlPersist puts a new one in the background once logged in: ssh then returns
        if (cancellable.run([*ssh, "-O", "check", login], output, cancel) == 0
                or cancellable.run([*ssh, "-N", login], output, cancel) == 0):  # fmt: skip
            _confirmed[key] = seen + 1
