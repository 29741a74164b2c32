"""__main__ of balsamd.pyz: extract the bundled packages once, without locks, then run balsamd.

Replaces shiv's bootstrap, which extracts under ~/.shiv behind an flock: on a cluster the home
directory is a shared filesystem where flock may be unsupported and hang.  Here:

- extraction goes to a node-local place: $BALSAMD_EXTRACT_DIR, else $SHIV_ROOT, else
  ${TMPDIR:-/tmp}/balsamd-UID;
- each process extracts into a directory of its own and renames it into place; rename is
  atomic, so when many processes on many nodes start the same fresh pyz at once, one wins
  and the others use its copy.  No lock is taken anywhere.

Whatever lies in the extraction is imported, and its .pth files executed, as the user running
the pyz; and in a shared /tmp another user can create balsamd-UID first.  So nothing is used
before every level from the extraction root to what goes on sys.path is known to be this
user's and closed to others (the root to any access, the levels below it to writing), checked
without following symbolic links; the directories above the root must not let others rename
what is inside them.

Only the standard library may be used here: nothing else is importable yet.
"""

import contextlib
import json
import os
import pwd
import shutil
import site
import socket
import stat
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import NoReturn

ELSEWHERE = "set BALSAMD_EXTRACT_DIR to a directory of yours"


def extraction_root() -> Path:
    for variable in ("BALSAMD_EXTRACT_DIR", "SHIV_ROOT"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / f"balsamd-{os.getuid()}"


def refuse(path: Path, problem: str, remedy: str) -> NoReturn:
    sys.exit(f"balsamd: will not run code from {path}: {problem}; {remedy}")


def user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def remove(path: Path, st: os.stat_result) -> str:
    """What to do about an unusable ``path``: remove it (ask its owner when it is not ours)."""
    if st.st_uid == os.geteuid():
        return f"remove it (rm -rf {path}) and run again, or {ELSEWHERE}"
    return f"ask its owner or an administrator to remove it, or {ELSEWHERE}"


def check_above(directory: Path) -> None:
    """``directory`` (without symbolic links) and each one above it: only this user or root
    may own them, and writable by others only with the sticky bit (as /tmp is), or someone
    could rename the extraction away and put one of their own in its place."""
    for level in (directory, *directory.parents):
        st = os.lstat(level)
        if st.st_uid not in (0, os.geteuid()):
            refuse(level, f"it belongs to {user(st.st_uid)}, who could replace what is inside it", ELSEWHERE)
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            refuse(
                level,
                f"other users may rename what is inside it (mode {stat.S_IMODE(st.st_mode):04o}, no sticky bit)",
                ELSEWHERE,
            )


def check_level(path: Path, *, closed: bool, file: bool = False) -> None:
    """``path`` itself (not what a symbolic link points to) is this user's directory (or
    regular file) that others cannot write, nor enter at all when ``closed``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        refuse(path.parent, f"{path.name} is missing from it", f"remove it (rm -rf {path.parent}) and run again")
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        problem = f"it is a symbolic link made by {user(st.st_uid)}; balsamd never makes one there"
    elif not (stat.S_ISREG if file else stat.S_ISDIR)(st.st_mode):
        problem = f"it is not a {'regular file' if file else 'directory'}"
    elif st.st_uid != os.geteuid():
        problem = f"it belongs to {user(st.st_uid)}, not to you"
    elif closed and mode & 0o077:
        problem = f"other users may enter it (mode {mode:04o}); it must be closed to all but you"
    elif mode & 0o022:
        problem = f"other users may write to it (mode {mode:04o})"
    else:
        return
    refuse(path, problem, remove(path, st))


def secure_root(root: Path, follow: bool = True) -> Path:
    """The extraction root, made when missing, checked; a symbolic link of this user's own
    (BALSAMD_EXTRACT_DIR pointing elsewhere) stands for its target, checked the same way."""
    root = Path(os.path.abspath(root))
    parent = Path(os.path.realpath(root.parent))
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_above(parent)
    root = parent / root.name
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode) and follow and st.st_uid == os.geteuid():
        return secure_root(Path(os.path.realpath(root)), follow=False)
    check_level(root, closed=True)
    return root


def extract(archive: zipfile.ZipFile, target: Path) -> None:
    staging = target.parent / f".{target.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    umask = os.umask(0o077)  # what is made here is this user's alone, whatever the umask
    try:
        for info in archive.infolist():
            if info.filename.startswith("site-packages/"):
                written = archive.extract(info, staging)
                mode = (info.external_attr >> 16) & 0o700
                if mode:
                    os.chmod(written, mode)
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.lexists(target):  # not a lost race: a real failure
                raise
    finally:
        os.umask(umask)
        shutil.rmtree(staging, ignore_errors=True)


def checked_packages(target: Path) -> Path:
    """target/site-packages, once it, target, its .pth files and what they would add to
    sys.path (site.addsitedir executes their import lines) pass the checks."""
    check_level(target, closed=False)
    packages = target / "site-packages"
    check_level(packages, closed=False)
    for name in sorted(os.listdir(packages)):
        if not name.endswith(".pth") or name.startswith("."):  # the files site.addsitedir reads
            continue
        pth = packages / name
        check_level(pth, closed=False, file=True)
        for line in pth.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            line = line.rstrip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            added = Path(os.path.abspath(packages / line))
            if os.path.exists(added):
                check_level(added, closed=False)
    return packages


def main() -> None:
    archive_path = Path(sys.argv[0]).resolve()
    with zipfile.ZipFile(archive_path) as archive:
        environment = json.loads(archive.read("environment.json"))
        build_id = environment["build_id"]
        target = secure_root(extraction_root()) / f"{archive_path.name}_{build_id}"
        if not os.path.lexists(target):
            extract(archive, target)
    packages = str(checked_packages(target))
    before = list(sys.path)
    site.addsitedir(packages)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = [*added, *(p for p in before if p != str(archive_path))]
    os.environ["BALSAMD_BUILD_ID"] = build_id[:12]
    module, _, function = environment["entry_point"].partition(":")
    entry = __import__(module, fromlist=[function])
    sys.exit(getattr(entry, function)())


if __name__ == "__main__":
    main()
