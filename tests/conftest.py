"""Fixtures shared by the whole suite: a site store with a few apps, a job factory, a second
local user to attack the first, and a small disk to fill."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from balsamd import ids
from balsamd.config import NodeSettings, SchedulerSettings
from balsamd.models import App, AppParameter, Job, JobSpec
from balsamd.store.contract import Store
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules

# apps by the hooks they override; the store applies every other hook inline
APPS = [
    App(name="noop", command_template="true"),
    App(name="echo", command_template="echo {{ x }}", parameters={"x": AppParameter(required=False, default=0)}),
    App(name="post", command_template="true", hooks=["postprocess"]),
    App(name="handler", command_template="true", hooks=["handle_error", "handle_timeout"]),
    App(name="pre", command_template="true", hooks=["preprocess"]),
]


# nodes wide enough for every shape the tests ask for
RULES = SiteRules(
    nodes=NodeSettings(cpus_per_node=64, gpus_per_node=8, max_nodes=64),
    scheduler=SchedulerSettings(optional_params=["reservation", "qos"]),
    allowed_launch_params=["cpu-bind"],
    transfer_locations={"far": "file", "archive": "rsync"},
)


def open_store(path) -> SiteStore:
    """A SiteStore on ``path`` with the standard apps registered."""
    store = SiteStore(path, RULES)
    store.put_apps(APPS)
    return store


@pytest.fixture
def store(tmp_path) -> Iterator[SiteStore]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def make_jobs(store: Store, n: int, **fields: Any) -> list[Job]:
    """Create ``n`` jobs (app ``noop`` unless given, each in a workdir of its own) in one
    transaction and return them."""
    fields.setdefault("app", "noop")
    return store.create_jobs([JobSpec(**{"workdir": f"w/{name}", **fields}) for name in ids.new_ids(n)])


OTHER_USER = "balsamd-other"


@pytest.fixture(scope="session")
def other_user() -> pwd.struct_passwd:
    """A second local user, made when missing: the attacker sharing the node's /tmp."""
    if os.geteuid() != 0:
        message = f"acting as a second local user ({OTHER_USER}) needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", OTHER_USER], check=True, capture_output=True)
    return pwd.getpwnam(OTHER_USER)


def as_other(*argv: str) -> None:
    """Run ``argv`` as the second local user (see ``other_user``)."""
    done = subprocess.run(["runuser", "-u", OTHER_USER, "--", *argv], capture_output=True, text=True, umask=0o022)
    assert done.returncode == 0, f"{argv} as {OTHER_USER}: {done.stderr}"


@pytest.fixture
def shared_tmp(other_user: pwd.struct_passwd) -> Iterator[Path]:
    """A temporary directory every user may create entries in, sticky like /tmp."""
    path = Path(tempfile.mkdtemp(prefix="balsamd-shared-"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path)


class SmallDisk:
    """A small tmpfs of its own: ``fill()`` takes every free block with one file and every free
    inode with empty ones (so that making a directory fails too, as on disk filesystems),
    ``free()`` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fillers = path / "fillers"

    def fill(self) -> None:
        self.fillers.mkdir()
        fd = os.open(self.fillers / "blocks", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12):
                block = b"\0" * chunk
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, block)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            for n in itertools.count():
                os.close(os.open(self.fillers / str(n), os.O_WRONLY | os.O_CREAT, 0o600))
        st = os.statvfs(self.path)
        assert (st.f_bavail, st.f_favail) == (0, 0), "the disk is not full"

    def free(self) -> None:
        shutil.rmtree(self.fillers)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A tmpfs of 16 MiB and 2,048 inodes mounted for the test (needs root: fails when CI is
    "true", else skips)."""
    path = tmp_path / "disk"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,nr_inodes=2048,mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        message = f"a full disk is posed with a small tmpfs, and mounting one failed: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
