"""A launcher on a site whose disk fills while its runs go on: the runs that end meanwhile are
recorded once space is freed, none runs twice, jobs that could not start wait for space, the
condition is said a bounded number of times, and the launcher still stops when idle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.site import init_site
from tests.conftest import SmallDisk
from tests.launch.conftest import LaunchSite


@pytest.fixture
def full_site(small_disk: SmallDisk, tmp_path: Path) -> Iterator[LaunchSite]:
    """A site on a small disk; the launchers' stderr is kept off it."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    made = LaunchSite(init_site(small_disk.path / "site", name="fulltest").root, scratch)
    made.configure(cpus_per_node=4, gpus_per_node=0, max_nodes=1, timeout_grace_sec=5.0)
    try:
        yield made
    finally:
        made.close()


def test_runs_that_end_on_a_full_disk_are_recorded_once_space_is_freed_and_none_runs_twice(
    full_site: LaunchSite, small_disk: SmallDisk
) -> None:
    full_site.command_app("Nap", "sleep 1")
    jobs = full_site.create("Nap", 8, node_packing_count=4)
    launcher = full_site.start_launcher("--job-mode", "serial", "--idle-ttl", "3", "--nodes", "n1")
    full_site.wait_until(lambda: full_site.states(jobs).count("RUNNING") == 4, "four runs started")
    small_disk.fill()
    err = full_site.scratch / "launcher-0.err"

    def said(text: str) -> bool:
        return text in err.read_text()

    full_site.wait_until(lambda: said("the store cannot be written: no space left to write"), "the store is full")
    full_site.wait_until(lambda: said("runs cannot start: no space left to write"), "runs cannot start")
    assert full_site.states(jobs).count("RUNNING") == 4  # their ends are kept by the launcher
    small_disk.free()
    stderr = full_site.finish(launcher)

    assert full_site.states(jobs) == ["JOB_FINISHED"] * 8
    for job_id in jobs:
        assert full_site.path(job_id).count("RUNNING") == 1  # none ran twice
    assert "launcher finished (idle for 3 s): 8 started, 8 done, 0 errors" in stderr
    assert "Traceback" not in stderr
    full_lines = [line for line in stderr.splitlines() if "no space" in line]
    assert 2 <= len(full_lines) <= 4, stderr  # what is full, once each (and the log itself)
    log = full_site.diagnostics()
    assert "the store can be written again" in log
    assert "runs start again" in log
    assert "log record(s) before the last one could not be written" in log
