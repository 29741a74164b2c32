"""``balsamd transfer ls`` at a site: the items of its jobs as a table, as JSON or counted by
state, chosen by state, job, task, direction and location."""

from __future__ import annotations

from pathlib import Path

import pytest

import balsamd
from tests.cli.conftest import Balsamd
from tests.transfers.states import RSYNC_ERROR, Jobs, items_in_each_state, stage

USAGE, REFUSED = 2, 1


@pytest.fixture
def staged(run: Balsamd, tmp_path: Path) -> Balsamd:
    stage(run.site, tmp_path / "far")
    return run


@pytest.fixture
def jobs(staged: Balsamd) -> Jobs:
    with balsamd.connect(staged.site) as site:
        site.apps.sync()
        return items_in_each_state(site.store)


def test_transfer_ls_table(staged: Balsamd, jobs: Jobs) -> None:
    # the end of the first line of the error: what rsync says went wrong
    cut = '...nk_stat "/in/2.dat" failed: No such file or directory (2)'
    assert staged("transfer", "ls").stdout == (
        "JOB                         SLOT    DIR  ITEM           LOCAL PATH  STATE      TASK  ATTEMPTS  BYTES  ERROR\n"
        f"{jobs.done}  input   in   far:/in/1.dat  in.dat      done       t1    0         7      -\n"
        f"{jobs.retrying}  input   in   far:/in/2.dat  in.dat      pending    -     1         0      {cut}\n"
        f"{jobs.active}  input   in   far:/in/3.dat  in.dat      active     t2    0         0      -\n"
        f"{jobs.failed}  input   in   far:/in/4.dat  in.dat      failed     t3    1         0      denied\n"
        f"{jobs.failed}  result  out  far:/out/4     4           cancelled  -     0         0      -\n"
    )


def test_transfer_ls_json_has_every_field_and_the_error_whole(staged: Balsamd, jobs: Jobs) -> None:
    items = staged.json("transfer", "ls", "--job", jobs.retrying)
    assert items == [{
        "id": 2, "job_id": jobs.retrying, "slot": "input", "direction": "in", "location": "far", "path": "/in/2.dat",
        "local_path": "in.dat", "recursive": False, "state": "pending", "task_id": None, "attempts": 1,
        "not_before": items[0]["not_before"], "bytes": 0, "error": RSYNC_ERROR, "updated_at": items[0]["updated_at"],
        "workdir": "w/2", "owner": "", "site": "testsite",
    }]  # fmt: skip
    assert items[0]["not_before"] == pytest.approx(items[0]["updated_at"] + 30.0)


def job_ids(run: Balsamd, *args: str) -> list[str]:
    return [i["job_id"] for i in run.json("transfer", "ls", *args)]


def test_transfer_ls_chooses_items_by_each_option(staged: Balsamd, jobs: Jobs) -> None:
    assert job_ids(staged, "--state", "failed", "--state", "CANCELLED") == [jobs.failed, jobs.failed]
    assert job_ids(staged, "--job", jobs.done[:22], "--job", jobs.active) == [jobs.done, jobs.active]
    assert job_ids(staged, "--task", "t2") == [jobs.active]
    assert job_ids(staged, "--direction", "out") == [jobs.failed]
    assert job_ids(staged, "--location", "far", "--state", "pending") == [jobs.retrying]
    assert job_ids(staged, "--location", "near") == []
    assert job_ids(staged, "--limit", "1") == [jobs.done]
    assert job_ids(staged, "--site-name", "testsite", "--direction", "in", "--limit", "2") == [jobs.done, jobs.retrying]


def test_transfer_ls_by_state(staged: Balsamd, jobs: Jobs) -> None:
    assert staged("transfer", "ls", "--by-state").stdout == (
        "STATE      COUNT\npending    1\nactive     1\ndone       1\nfailed     1\ncancelled  1\n"
    )
    assert staged.json("transfer", "ls", "--by-state") == {
        "pending": 1, "active": 1, "done": 1, "failed": 1, "cancelled": 1,
    }  # fmt: skip


def test_transfer_ls_without_items(run: Balsamd) -> None:
    assert run("transfer", "ls").stdout == "no transfer items\n"
    assert run("transfer", "ls", "--by-state").stdout == "no transfer items\n"
    assert run.json("transfer", "ls") == []


def test_transfer_ls_refuses_what_it_cannot_read(staged: Balsamd, jobs: Jobs) -> None:
    told = staged.fails("transfer", "ls", "--job", "0000")
    assert told == "Error: no job with id 0000 (list jobs with `balsamd job ls`)\n"
    told = staged.fails("transfer", "ls", "--state", "finished", code=USAGE)
    assert "Invalid value for '--state': 'finished' is not one of 'pending', 'active', 'done'" in told
    told = staged.fails("transfer", "ls", "--by-state", "--state", "done", code=USAGE)
    assert "--by-state counts every item; give it without the options that choose items" in told
    told = staged.fails("transfer", "ls", "--site-name", "elsewhere", code=REFUSED)
    assert told == (
        "Error: this connection is to site testsite, not 'elsewhere'; connect to that site, or to the central "
        "database to reach any site\n"
    )
