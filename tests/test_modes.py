"""A site is its owner's: what balsamd makes there is private (or readable, never writable, by
the group of a group-readable site) whatever the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.modes import GROUP_READABLE, PRIVATE
from balsamd.site import find_site, init_site
from balsamd.store.store import SiteStore
from tests.daemon.conftest import child_env, new_site, wait_until


@pytest.fixture(params=[0o002, 0o022], ids=["umask 002", "umask 022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes_below(root: Path) -> dict[str, int]:
    """Relative path -> mode of everything under ``root`` but the jobs' own data."""
    return {str(p.relative_to(root)): mode(p) for p in root.rglob("*") if p.relative_to(root).parts[0] != "data"} | {
        "data": mode(root / "data"),
        ".": mode(root),
    }


@pytest.mark.parametrize("group_readable", [False, True], ids=["private", "group-readable"])
def test_everything_a_site_makes_has_its_mode_whatever_the_umask(
    tmp_path: Path, umask: int, group_readable: bool
) -> None:
    with new_site(tmp_path, {"daemon.scheduler_period_sec": 0.2}, group_readable=group_readable) as site:
        site.balsamd("app", "create", "hello", "--command", "echo hello")
        job = json.loads(site.balsamd("job", "create", "--app", "hello", "--workdir", "h/1", "--json").stdout)
        site.start()
        site.balsamd("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--job-mode", "serial")
        site.wait_state(job["id"], "JOB_FINISHED", timeout=60)
        wait_until(lambda: list((site.root / "log").glob("launcher-*.log")), "the batch job's launcher logs")
        found = modes_below(site.root)  # while the daemon holds the store open, with its -wal and -shm
    made = GROUP_READABLE if group_readable else PRIVATE
    private = {"secret", "daemon.json", "daemon.lock"}  # the daemon's own, in every site
    expected = {
        name: made.directory if (site.root / name).is_dir()
        else PRIVATE.file if name in private
        else made.script if name.endswith(".sh") and name.startswith("batch/")
        else made.file
        for name in found
    }  # fmt: skip
    assert found == expected
    names = set(found)
    assert {
        "balsamd.db", "balsamd.db-wal", "balsamd.db-shm", "secret", "settings.toml", "job-template.sh",
        "apps", "apps/hello.py", "log", "log/daemon.log", "batch", "daemon.json", "daemon.lock",
    } <= names  # fmt: skip
    assert any(n.startswith("log/launcher-") for n in names)
    assert any(n.startswith("batch/") and n.endswith(".sh") for n in names)
    assert any(n.startswith("batch/") and n.endswith(".out") for n in names)


def test_a_new_store_and_its_wal_and_shm_files_are_private(tmp_path: Path, umask: int) -> None:
    store = SiteStore(tmp_path / "store.db")
    try:
        assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
            "store.db": 0o600, "store.db-wal": 0o600, "store.db-shm": 0o600,
        }  # fmt: skip
    finally:
        store.close()


def test_site_init_group_readable_writes_the_setting(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "balsamd", "site", "init", str(tmp_path / "s"), "--group-readable"],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "\ngroup_readable = true\n" in (tmp_path / "s" / "settings.toml").read_text()
    assert find_site(tmp_path / "s", env={}).load_settings().site.group_readable is True
    assert init_site(tmp_path / "t").load_settings().site.group_readable is False
