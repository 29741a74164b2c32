"""The daemon on a site whose disk fills: `balsamd start` says so as any command does, and a
daemon already serving keeps serving.  Commands and the Python API over its RPC get exit code
74 and DiskFull, its services wait without a traceback per retry, a hook that prints to the
full log does not fail for it, and everything goes on by itself once space is freed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import balsamd
from balsamd.cli.common import ExitCode
from balsamd.site import init_site
from balsamd.states import JobState
from tests.conftest import SmallDisk
from tests.daemon.conftest import SETTINGS, DaemonSite, child_env, wait_until
from tests.daemon.test_control import processes_of

# its preprocess hook returns once the site's disk is full, printing to the daemon's log as it
# does; run again once space is freed it would wait past its time limit and fail the job
WAITS_FOR_FULL = """
command_template = "true"

def preprocess(self):
    import os
    while os.statvfs(".").f_bavail:
        time.sleep(0.05)
    print("preprocess saw the disk full", flush=True)
    self.job.state = JobState.PREPROCESSED
"""


@pytest.fixture
def full_site(small_disk: SmallDisk, tmp_path: Path) -> Iterator[DaemonSite]:
    """A site on a small disk whose daemon is not started; what tests keep is off that disk."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    made = DaemonSite(init_site(small_disk.path / "site", name="daemontest").root, scratch)
    made.configure(SETTINGS)
    try:
        yield made
    finally:
        made.close()


def full_line(site: DaemonSite, disk: SmallDisk, what: str) -> str:
    return (
        f"Error: no space left to write {site.root / what} (filesystem {disk.path}: 0 B free of 16.0 MiB): "
        "free some space there (or raise the quota), then run the command again\n"
    )


def test_start_on_a_full_disk_exits_74_with_one_line_and_starts_once_space_is_freed(
    full_site: DaemonSite, small_disk: SmallDisk
) -> None:
    small_disk.fill()
    proc = full_site.start(code=ExitCode.DISK_FULL)
    assert (proc.stdout, proc.stderr) == ("", full_line(full_site, small_disk, "log/daemon.log"))
    assert processes_of(full_site) == []
    small_disk.free()
    full_site.start()
    full_site.stop()  # its log exists now: what a full disk stops next is the store
    small_disk.fill()
    proc = full_site.start(code=ExitCode.DISK_FULL)
    assert (proc.stdout, proc.stderr) == ("", full_line(full_site, small_disk, "balsamd.db"))
    assert processes_of(full_site) == []
    small_disk.free()
    full_site.start()
    assert full_site.status()["healthy"]


def test_a_daemon_on_a_full_disk_refuses_writes_with_disk_full_waits_quietly_and_goes_on_when_freed(
    full_site: DaemonSite, small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    full_site.app("WaitsForFull", WAITS_FOR_FULL)
    full_site.start()
    job_id = full_site.create("WaitsForFull")[0]
    # its hook runs in its workdir, which a full disk could not make
    (full_site.root / "data" / full_site.job(job_id).workdir).mkdir(parents=True, exist_ok=True)
    small_disk.fill()

    rpc = child_env(BALSAMD_RPC="1")
    create = ("job", "create", "--app", "WaitsForFull", "--workdir", "later")
    proc = full_site.balsamd(*create, code=ExitCode.DISK_FULL, env=rpc)
    assert (proc.stdout, proc.stderr) == ("", full_line(full_site, small_disk, "balsamd.db"))
    monkeypatch.setenv("BALSAMD_RPC", "1")
    with balsamd.connect(full_site.root) as site:
        for n in range(50):
            with pytest.raises(balsamd.DiskFull):
                site.jobs.create("WaitsForFull", f"api/{n}")

    def processing_error() -> str:
        services = full_site.status(code=None)["services"]
        return next(s["last_error"] for s in services if s["name"] == "processing")

    wait_until(lambda: processing_error().startswith("DiskFull: no space left to write"), "processing waits")
    assert full_site.job(job_id).state == JobState.STAGED_IN  # its hook's outcome waits in the daemon

    small_disk.free()
    full_site.balsamd(*create, env=rpc)
    full_site.wait_state(job_id, JobState.PREPROCESSED)
    assert full_site.path(job_id) == ["READY", "STAGED_IN", "PREPROCESSED"]  # its hook ran once
    wait_until(lambda: full_site.status(code=None)["healthy"], "the daemon is healthy again")
    full_site.stop()

    log = (full_site.root / "log" / "daemon.log").read_text()
    assert "Traceback" not in log
    assert "service processing goes on: its disk has space again" in log
    assert "the store takes writes again" in log
    # what was said while full, written or not (a full tmpfs still takes what fits in a file's
    # last page): a line or two per place, not one per retry or per refused call
    written = re.findall(r"(?m)^.* WARNING .*no space left to write.*$", log)
    dropped = re.findall(r"\((\d+) log record\(s\) before the last one could not be written\)", log)
    assert len(written) + sum(map(int, dropped)) <= 4, log
