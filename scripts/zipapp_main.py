"""__main__ of balsamd.pyz: extract the bundled packages once, without locks, then run balsamd.

Replaces shiv's bootstrap, which extracts under ~/.shiv behind an flock: on a cluster the home
directory is a shared filesystem where flock may be unsupported and hang.  Here:

- extraction goes to a node-local place: $BALSAMD_EXTRACT_DIR, else $SHIV_ROOT, else
  ${TMPDIR:-/tmp}/balsamd-UID (owner-only);
- each process extracts into a directory of its own and renames it into place; rename is
  atomic, so when many processes on many nodes start the same fresh pyz at once, one wins
  and the others use its copy.  No lock is taken anywhere.

Only the standard library may be used here: nothing else is importable yet.
"""

import json
import os
import shutil
import site
import socket
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path


def extraction_root() -> Path:
    for variable in ("BALSAMD_EXTRACT_DIR", "SHIV_ROOT"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / f"balsamd-{os.getuid()}"


def private_dir(path: Path) -> None:
    """Create ``path`` for this user only; refuse one that another user owns."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        sys.exit(f"balsamd: {path} belongs to another user; set BALSAMD_EXTRACT_DIR to a directory of yours")


def extract(archive: zipfile.ZipFile, target: Path) -> None:
    if (target / "site-packages").is_dir():
        return
    private_dir(target.parent)
    staging = target.parent / f".{target.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        for info in archive.infolist():
            if info.filename.startswith("site-packages/"):
                written = archive.extract(info, staging)
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(written, mode)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "site-packages").is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main() -> None:
    archive_path = Path(sys.argv[0]).resolve()
    with zipfile.ZipFile(archive_path) as archive:
        environment = json.loads(archive.read("environment.json"))
        build_id = environment["build_id"]
        target = extraction_root() / f"{archive_path.name}_{build_id}"
        extract(archive, target)
    packages = str(target / "site-packages")
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
