"""The pyz imports nothing another local user could have put in its extraction.

Each attack is made for real: a second local user plants code where the pyz extracts (a shared,
sticky temporary directory, as /tmp is) and the pyz is run as the victim (the user running the
tests).  The planted code would write a marker file; it must never appear.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import OTHER_USER, as_other
from tests.zipapp.test_pyz import ok, pyz

# Run by either user: a copy of an extraction whose package and .pth file write ``marker``.
PLANT = """
import os, sys
build, marker = sys.argv[1:3]
packages = os.path.join(build, "site-packages")
os.makedirs(os.path.join(packages, "balsamd"), exist_ok=True)
with open(os.path.join(packages, "balsamd", "__init__.py"), "w") as f:
    f.write(f"open({marker!r}, 'w').write('the planted package ran')\\n")
with open(os.path.join(packages, "planted.pth"), "w") as f:
    f.write(f"import os; open({marker!r}, 'w').write('the planted .pth file ran')\\n")
"""
WRITE = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"


def me() -> str:
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"


def them() -> str:
    return f"user {OTHER_USER} (uid {pwd.getpwnam(OTHER_USER).pw_uid})"


def plant(build: Path, marker: Path, by_other: bool) -> None:
    argv = ["python3", "-c", PLANT, str(build), str(marker)]
    if by_other:
        as_other(*argv)
    else:
        subprocess.run(argv, check=True, umask=0o022)


@pytest.fixture
def build_name(built_pyz: Path) -> str:
    with zipfile.ZipFile(built_pyz) as archive:
        return f"{built_pyz.name}_{json.loads(archive.read('environment.json'))['build_id']}"


def run_version(built_pyz: Path, bare_env: dict[str, str], tmp: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return pyz(built_pyz, "--version", env={**bare_env, "TMPDIR": str(tmp), **extra})


def refused(done: subprocess.CompletedProcess[str], path: Path, problem: str, remedy: str) -> None:
    assert done.returncode == 1, f"not refused: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stderr == f"balsamd: will not run code from {path}: {problem}; {remedy}\n"
    assert done.stdout == ""


def yours_to_remove(path: Path) -> str:
    return f"remove it (rm -rf {path}) and run again, or set BALSAMD_EXTRACT_DIR to a directory of yours"


THEIRS_TO_REMOVE = "ask its owner or an administrator to remove it, or set BALSAMD_EXTRACT_DIR to a directory of yours"


def test_a_root_planted_by_another_user_is_refused_until_removed(
    built_pyz: Path, bare_env: dict[str, str], shared_tmp: Path, build_name: str
) -> None:
    root = shared_tmp / f"balsamd-{os.getuid()}"
    marker = shared_tmp / "marker"
    as_other("mkdir", "-m", "755", str(root))
    plant(root / build_name, marker, by_other=True)

    done = run_version(built_pyz, bare_env, shared_tmp)
    assert not marker.exists()
    refused(done, root, f"it belongs to {them()}, not to you", THEIRS_TO_REMOVE)

    shutil.rmtree(root)
    assert ok(run_version(built_pyz, bare_env, shared_tmp)).startswith("balsamd ")
    assert not marker.exists()
    st = root.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o700)


@pytest.mark.parametrize(
    ("level", "mode", "by_other", "problem"),
    [
        ("", 0o777, True, "other users may enter it (mode 0777); it must be closed to all but you"),
        ("", 0o750, False, "other users may enter it (mode 0750); it must be closed to all but you"),
        ("build", 0o777, False, "other users may write to it (mode 0777)"),
        ("build/site-packages", 0o770, False, "other users may write to it (mode 0770)"),
        ("build/site-packages/planted.pth", 0o666, False, "other users may write to it (mode 0666)"),
    ],
    ids=["root open to all", "root open to its group", "build", "site-packages", ".pth file"],
)
def test_a_level_of_the_victims_own_that_others_may_write_is_refused(
    built_pyz: Path, bare_env: dict[str, str], shared_tmp: Path, build_name: str,
    level: str, mode: int, by_other: bool, problem: str,
) -> None:  # fmt: skip
    root = shared_tmp / f"balsamd-{os.getuid()}"
    marker = shared_tmp / "marker"
    root.mkdir(mode=0o700)
    if by_other:  # the root open to all: the other user plants inside it
        root.chmod(mode)
    plant(root / build_name, marker, by_other)
    bad = root / level.replace("build", build_name, 1)
    bad.chmod(mode)

    done = run_version(built_pyz, bare_env, shared_tmp)
    assert not marker.exists()
    refused(done, bad, problem, yours_to_remove(bad))


@pytest.mark.parametrize("level", ["", "build", "build/site-packages"], ids=["root", "build", "site-packages"])
def test_a_symbolic_link_at_any_level_is_refused(
    built_pyz: Path, bare_env: dict[str, str], shared_tmp: Path, build_name: str, level: str
) -> None:
    root = shared_tmp / f"balsamd-{os.getuid()}"
    marker = shared_tmp / "marker"
    theirs = shared_tmp / "theirs"
    as_other("mkdir", "-m", "755", str(theirs))
    plant(theirs / build_name, marker, by_other=True)
    if level:  # below a root of the victim's own, only the victim can place a link
        root.mkdir(mode=0o700)
        link = root / level.replace("build", build_name, 1)
        link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        link.symlink_to(theirs / level.replace("build", build_name, 1))
        owner, remedy = me(), yours_to_remove(link)
    else:
        link = root
        as_other("ln", "-s", str(theirs), str(link))
        owner, remedy = them(), THEIRS_TO_REMOVE

    done = run_version(built_pyz, bare_env, shared_tmp)
    assert not marker.exists()
    refused(done, link, f"it is a symbolic link made by {owner}; balsamd never makes one there", remedy)


def test_a_directory_a_pth_file_would_add_must_be_the_users_own(
    built_pyz: Path, bare_env: dict[str, str], shared_tmp: Path, build_name: str
) -> None:
    ok(run_version(built_pyz, bare_env, shared_tmp))
    packages = shared_tmp / f"balsamd-{os.getuid()}" / build_name / "site-packages"
    theirs = shared_tmp / "theirs"
    marker = shared_tmp / "marker"
    as_other("mkdir", "-m", "755", str(theirs))
    # a module balsamd imports after its packages are on sys.path, ahead of the standard library
    as_other("python3", "-c", WRITE, str(theirs / "secrets.py"), f"open({str(marker)!r}, 'w')\n")
    pth = packages / "extra.pth"
    pth.write_text(f"{theirs}\n")
    pth.chmod(0o600)

    done = pyz(built_pyz, "site", "init", str(shared_tmp / "site"), env={**bare_env, "TMPDIR": str(shared_tmp)})
    assert not marker.exists()
    refused(done, theirs, f"it belongs to {them()}, not to you", THEIRS_TO_REMOVE)
    assert not (shared_tmp / "site").exists()


@pytest.mark.parametrize("whose", ["victim", "other"])
def test_a_directory_above_the_root_that_others_could_rename_in_is_refused(
    built_pyz: Path, bare_env: dict[str, str], shared_tmp: Path, whose: str
) -> None:
    above = shared_tmp / "above"
    if whose == "other":  # its owner may rename the root away and put their own in its place
        as_other("mkdir", "-m", "755", str(above))
        problem = f"it belongs to {them()}, who could replace what is inside it"
    else:
        above.mkdir()
        above.chmod(0o777)
        problem = "other users may rename what is inside it (mode 0777, no sticky bit)"
    done = pyz(built_pyz, "--version", env={**bare_env, "BALSAMD_EXTRACT_DIR": str(above / "extract")})
    refused(done, above, problem, "set BALSAMD_EXTRACT_DIR to a directory of yours")


@pytest.mark.parametrize("umask", [0o002, 0o022])
def test_an_honest_extraction_is_private_and_used_again(
    built_pyz: Path, bare_env: dict[str, str], shared_tmp: Path, build_name: str, umask: int
) -> None:
    env = {**bare_env, "TMPDIR": str(shared_tmp)}
    ok(pyz(built_pyz, "--version", env=env, umask=umask))
    root = shared_tmp / f"balsamd-{os.getuid()}"
    levels = [root, root / build_name, root / build_name / "site-packages"]
    assert [stat.S_IMODE(p.lstat().st_mode) for p in levels] == [0o700] * 3
    extracted = [p for p in levels[2].rglob("*") if "__pycache__" not in p.parts]  # Python writes those itself
    assert [p for p in extracted if p.lstat().st_mode & 0o077] == []
    inode = levels[1].stat().st_ino
    ok(pyz(built_pyz, "--version", env=env, umask=umask))
    assert levels[1].stat().st_ino == inode
    assert [p.name for p in root.iterdir()] == [build_name]
