"""The store served to a launcher by a fork of it: the same calls, answered from another process."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator

import pytest

from balsamd.launch.forks import Forks
from balsamd.launch.leader.storeproc import ForkedStore
from balsamd.models import ClaimLimits, StateUpdate
from balsamd.states import JobState
from balsamd.store.errors import SessionGone
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from tests.conftest import make_jobs


@pytest.fixture
def forked(store: SiteStore) -> Iterator[ForkedStore]:
    with Forks().window(release=[store.db]) as forks:
        f = ForkedStore.fork(store, forks)
    assert f is not None
    yield f
    f.close()


def test_claims_and_reports_through_the_fork_are_the_store_s(store: SiteStore, forked: ForkedStore) -> None:
    jobs = make_jobs(store, 3)
    session = forked.open_session(label="test")
    assert forked.process.pid != os.getpid()
    limits = ClaimLimits(max_jobs=10)
    claimed = claimed_jobs(forked.claim(session.id, limits), limits)
    assert sorted(j.id for j in claimed) == sorted(j.id for j in jobs)
    done = StateUpdate(job_id=claimed[0].id, state=JobState.RUN_DONE, ts=1.0, return_code=0, started_at=0.5)
    outcome = forked.update_states(session.id, [done])
    assert outcome.applied == [claimed[0].id]
    assert store.get(claimed[0].id).state == JobState.JOB_FINISHED  # seen by this process's own connection
    assert forked.release(session.id, [j.id for j in claimed[1:]]) == 2
    assert forked.heartbeat(session.id, []) == []


def test_a_store_error_comes_back_as_the_same_exception(store: SiteStore, forked: ForkedStore) -> None:
    with pytest.raises(SessionGone, match="session nope is unknown"):
        forked.claim("nope", ClaimLimits(max_jobs=1))


def test_when_the_fork_is_lost_calls_go_to_the_store_itself_with_a_warning(
    store: SiteStore, forked: ForkedStore, caplog: pytest.LogCaptureFixture
) -> None:
    make_jobs(store, 2)
    session = forked.open_session(label="test")
    os.kill(forked.process.pid, signal.SIGKILL)
    forked.process.wait()
    with caplog.at_level(logging.WARNING, logger="balsamd.launcher"):
        claimed = claimed_jobs(forked.claim(session.id, ClaimLimits(max_jobs=10)), ClaimLimits())
    assert len(claimed) == 2
    assert "the store process was lost" in caplog.text
    assert forked.remote is None


def test_the_fork_exits_when_the_launcher_closes_it(forked: ForkedStore) -> None:
    forked.close()
    assert forked.process.returncode == 0
