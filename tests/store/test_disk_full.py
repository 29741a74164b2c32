"""A store whose disk is full: writes fail whole with DiskFull over every transport, naming the
store and its filesystem, and go through again once space is freed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from balsamd.models import ClaimLimits, StateUpdate
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.store.errors import DiskFull
from balsamd.store.store import SiteStore
from tests.conftest import SmallDisk, make_jobs, open_store
from tests.store.conftest import TRANSPORTS, over


@pytest.fixture(params=TRANSPORTS)
def store_on_small_disk(request: pytest.FixtureRequest, small_disk: SmallDisk) -> Iterator[tuple[Store, SiteStore]]:
    """The store on a small disk over one transport, and the local store itself."""
    local = open_store(small_disk.path / "store.db")
    with over(request.param, local) as reached:
        yield reached, local


def test_a_write_on_a_full_disk_fails_whole_and_goes_through_once_space_is_freed(
    store_on_small_disk: tuple[Store, SiteStore], small_disk: SmallDisk
) -> None:
    store, local = store_on_small_disk
    make_jobs(store, 1)
    small_disk.fill()
    with pytest.raises(DiskFull) as raised:
        make_jobs(store, 500, tags={"pad": "x" * 1000})
    assert raised.value.path == str(local.db.path)
    assert raised.value.mount == str(small_disk.path)
    assert raised.value.free == 0
    assert str(raised.value) == (
        f"no space left to write {local.db.path} (filesystem {small_disk.path}: 0 B free of 16.0 MiB): "
        "free some space there (or raise the quota)"
    )
    assert store.count() == 1
    small_disk.free()
    assert len(make_jobs(store, 500, tags={"pad": "x" * 1000})) == 500
    assert store.count() == 501


def test_state_reports_that_found_the_disk_full_are_recorded_when_sent_again(
    store_on_small_disk: tuple[Store, SiteStore], small_disk: SmallDisk
) -> None:
    store, _ = store_on_small_disk
    jobs = make_jobs(store, 200)
    session = store.open_session(label="test")
    store.claim(session.id, ClaimLimits(max_jobs=200))
    small_disk.fill()
    report = [StateUpdate(job_id=j.id, state=JobState.RUN_DONE, ts=2.0, started_at=1.0) for j in jobs]
    with pytest.raises(DiskFull):
        store.update_states(session.id, report)
    assert store.counts_by_state() == {"PREPROCESSED": 200}
    small_disk.free()
    outcome = store.update_states(session.id, report)
    assert sorted(outcome.applied) == sorted(j.id for j in jobs)
    assert store.counts_by_state() == {"JOB_FINISHED": 200}


def test_no_session_expires_within_its_expiry_of_a_heartbeat_that_found_the_disk_full(
    store_on_small_disk: tuple[Store, SiteStore], small_disk: SmallDisk
) -> None:
    store, local = store_on_small_disk
    make_jobs(store, 1, tags={"pad": "x" * 1000})
    session = store.open_session(label="silent", now=1000.0)
    small_disk.fill()
    with pytest.raises(DiskFull) as raised:
        for _ in range(1000):  # until a page of its own no longer fits in the log
            store.heartbeat(session.id)
    assert raised.value.noted
    full_at = local.db.full_at()
    assert full_at is not None
    small_disk.free()
    assert store.expire_sessions(60.0, now=full_at + 59.0) == []
    assert store.expire_sessions(60.0, now=full_at + 61.0) == [session.id]
