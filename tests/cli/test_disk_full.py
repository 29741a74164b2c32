"""Commands on a site whose disk is full: one line naming what could not be written and its
filesystem, exit code 74, nothing written; the same command works once space is freed."""

from __future__ import annotations

import pytest

from balsamd.cli.common import ExitCode
from balsamd.site import init_site
from tests.cli.conftest import Balsamd, set_nodes
from tests.conftest import SmallDisk


@pytest.fixture
def full_site(small_disk: SmallDisk) -> Balsamd:
    """A site with app ``hello`` and one job on a small disk, which is then filled."""
    root = init_site(small_disk.path / "site", name="fullsite").root
    set_nodes(root)
    run = Balsamd(root)
    run("app", "create", "hello", "--command", "echo {{ name }}")
    run.job("w/1")
    small_disk.fill()
    return run


def test_job_create_on_a_full_disk_exits_74_naming_the_store_and_writes_nothing(
    full_site: Balsamd, small_disk: SmallDisk
) -> None:
    create = ("job", "create", "--app", "hello", "--workdir", "w/2", "-p", "name=b")
    stderr = full_site.fails(*create, code=ExitCode.DISK_FULL)
    assert stderr == (
        f"Error: no space left to write {full_site.site / 'balsamd.db'} (filesystem {small_disk.path}: "
        "0 B free of 16.0 MiB): free some space there (or raise the quota), then run the command again\n"
    )
    small_disk.free()
    assert [job["workdir"] for job in full_site.json("job", "ls")] == ["w/1"]
    full_site(*create)
    assert [job["workdir"] for job in full_site.json("job", "ls")] == ["w/1", "w/2"]


def test_app_create_on_a_full_disk_leaves_no_file_behind(full_site: Balsamd, small_disk: SmallDisk) -> None:
    apps_before = sorted(p.name for p in (full_site.site / "apps").iterdir())
    stderr = full_site.fails("app", "create", "bye", "--command", "echo bye", code=ExitCode.DISK_FULL)
    assert stderr.startswith("Error: no space left to write ")
    assert stderr.endswith(", then run the command again\n")
    assert sorted(p.name for p in (full_site.site / "apps").iterdir()) == apps_before
    small_disk.free()
    full_site("app", "create", "bye", "--command", "echo bye")
    assert [app["name"] for app in full_site.json("app", "ls")] == ["bye", "hello"]
