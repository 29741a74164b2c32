"""Transfer items through the local Python API: ``site.transfers``, the interface of the central
one (``conn.transfers``, tests/sync/test_remote_transfers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import balsamd
from balsamd.api import Site
from balsamd.site import SiteError, init_site
from balsamd.store.errors import JobNotFound
from balsamd.validate import Refused
from tests.transfers.states import Jobs, items_in_each_state, stage


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = init_site(tmp_path / "here").root
    stage(root, tmp_path / "far")
    with balsamd.connect(root) as s:
        assert isinstance(s, Site)
        s.apps.sync()
        yield s


@pytest.fixture
def jobs(site: Site) -> Jobs:
    return items_in_each_state(site.store)


def test_items_are_listed_oldest_first_with_their_site_and_their_jobs_workdir(site: Site, jobs: Jobs) -> None:
    found = site.transfers.filter()
    assert [(i.job_id, i.slot, str(i.state)) for i in found] == [
        (jobs.done, "input", "done"), (jobs.retrying, "input", "pending"), (jobs.active, "input", "active"),
        (jobs.failed, "input", "failed"), (jobs.failed, "result", "cancelled"),
    ]  # fmt: skip
    assert {i.site for i in found} == {"here"}
    done = found[0]
    assert (done.workdir, done.location, done.path, done.local_path, done.task_id, done.bytes) == (
        "w/1", "far", "/in/1.dat", "in.dat", "t1", 7)  # fmt: skip
    assert found[-1].local_path == "4" and found[-1].recursive


def test_each_filter_narrows(site: Site, jobs: Jobs) -> None:
    def job_ids(**given: Any) -> list[str]:
        return [i.job_id for i in site.transfers.filter(**given)]

    assert job_ids(state="failed") == [jobs.failed]
    assert job_ids(state=["DONE", "active"]) == [jobs.done, jobs.active]
    assert job_ids(job=jobs.retrying[:20]) == [jobs.retrying], "a unique prefix names a job"
    assert job_ids(job=[site.jobs.get(jobs.done), jobs.active]) == [jobs.done, jobs.active]
    assert job_ids(task="t1") == [jobs.done], "an item to try again is in no task"
    assert job_ids(task="t2") == [jobs.active]
    assert job_ids(direction="out") == [jobs.failed]
    assert job_ids(location="far", direction="in", state="pending") == [jobs.retrying]
    assert job_ids(location="near") == []
    assert job_ids(limit=2) == [jobs.done, jobs.retrying]
    assert job_ids(site="here", limit=0) == []


def test_counts_are_by_state_in_the_order_items_go_through_them(site: Site, jobs: Jobs) -> None:
    assert site.transfers.counts() == {"pending": 1, "active": 1, "done": 1, "failed": 1, "cancelled": 1}
    assert list(site.transfers.counts(site="here")) == ["pending", "active", "done", "failed", "cancelled"]


def test_what_cannot_be_read_is_refused_saying_what_to_give(site: Site, jobs: Jobs) -> None:
    with pytest.raises(Refused) as refused:
        site.transfers.filter(state="finished")
    assert str(refused.value) == (
        "transfer filter: 'finished' is not a transfer item state; use one of pending, active, done, failed, cancelled"
    )
    with pytest.raises(Refused, match="direction 'up' is neither 'in' nor 'out'; give one of them"):
        site.transfers.filter(direction="up")
    with pytest.raises(Refused, match="limit must be a whole number, 0 or more"):
        site.transfers.filter(limit=-1)
    with pytest.raises(JobNotFound):
        site.transfers.filter(job="0000")
    with pytest.raises(SiteError, match="this connection is to site here, not 'there'"):
        site.transfers.counts(site="there")
