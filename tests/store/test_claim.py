"""Claiming: one transaction binds the runnable jobs that fit a launcher's limits."""

from __future__ import annotations

import apsw
import pytest

from balsamd.models import ClaimLimits
from balsamd.states import JobState
from balsamd.store.errors import SessionGone
from balsamd.validate import Refused
from tests.conftest import make_jobs
from tests.store import claim, report

S = JobState


@pytest.fixture
def session(store):
    return store.open_session("launcher", batch_job_id="B1")


def claim_ids(store, session, **limits) -> list[str]:
    return [j.id for j in claim(store, session.id, ClaimLimits(**limits))]


def test_claim_binds_runnable_jobs_to_the_session_and_its_batch_job(store, session):
    jobs = make_jobs(store, 3)
    claimed = claim(store, session.id, ClaimLimits())
    assert [j.id for j in claimed] == [j.id for j in jobs]
    for job in claimed + [store.get(j.id) for j in jobs]:
        assert (job.session_id, job.batch_job_id, job.state) == (session.id, "B1", S.PREPROCESSED)


def test_claim_writes_no_event(store, session):
    make_jobs(store, 2)
    before = store.events()
    claim(store, session.id, ClaimLimits())
    assert store.events() == before


def test_claimed_jobs_are_not_claimable_again(store, session):
    make_jobs(store, 3)
    other = store.open_session("other")
    first = claim_ids(store, session, max_jobs=2)
    second = claim_ids(store, other)
    assert len(first) == 2
    assert len(second) == 1
    assert not set(first) & set(second)
    assert claim_ids(store, session) == []


def test_claim_respects_max_jobs(store, session):
    make_jobs(store, 5)
    assert len(claim_ids(store, session, max_jobs=3)) == 3
    assert claim_ids(store, session, max_jobs=0) == []
    assert len(claim_ids(store, session, max_jobs=10)) == 2


def test_only_runnable_jobs_are_claimed(store, session):
    runnable = make_jobs(store, 1)
    make_jobs(store, 1, app="pre")  # waits in STAGED_IN for its preprocess hook
    [parent] = make_jobs(store, 1, app="post")
    make_jobs(store, 1, parent_ids=[parent.id])  # AWAITING_PARENTS
    [killed] = make_jobs(store, 1)
    store.kill([killed.id])
    assert claim_ids(store, session) == [runnable[0].id, parent.id]


def test_claim_respects_max_nodes_per_job(store, session):
    small = make_jobs(store, 1, num_nodes=2)
    make_jobs(store, 1, num_nodes=3)
    assert claim_ids(store, session, max_nodes_per_job=2) == [small[0].id]


def test_claim_respects_max_wall_time(store, session):
    short = make_jobs(store, 1, wall_time_min=10)
    unknown = make_jobs(store, 1)
    make_jobs(store, 1, wall_time_min=30)
    assert set(claim_ids(store, session, max_wall_time_min=10)) == {short[0].id, unknown[0].id}


def test_serial_only_takes_single_node_single_rank_jobs(store, session):
    serial = make_jobs(store, 1)
    make_jobs(store, 1, ranks_per_node=4)
    make_jobs(store, 1, num_nodes=2)
    assert claim_ids(store, session, serial_only=True) == [serial[0].id]


def test_claim_filters_by_every_given_tag(store, session):
    both = make_jobs(store, 1, tags={"exp": "a", "site": "x"})
    make_jobs(store, 1, tags={"exp": "a"})
    make_jobs(store, 1, tags={"exp": "b", "site": "x"})
    assert claim_ids(store, session, filter_tags={"exp": "a", "site": "x"}) == [both[0].id]


def test_claim_filters_by_app(store, session):
    make_jobs(store, 1)
    posts = make_jobs(store, 2, app="post")
    assert claim_ids(store, session, apps=["post", "handler"]) == [j.id for j in posts]


def test_packed_jobs_share_aggregate_nodes(store, session):
    make_jobs(store, 6, node_packing_count=4)
    assert len(claim_ids(store, session, max_aggregate_nodes=1)) == 4
    assert len(claim_ids(store, session, max_aggregate_nodes=0.5)) == 2


def test_aggregate_nodes_count_whole_nodes_for_unpacked_jobs(store, session):
    make_jobs(store, 2, num_nodes=2)
    make_jobs(store, 1, num_nodes=1)
    claimed = claim(store, session.id, ClaimLimits(max_aggregate_nodes=3))
    assert [j.num_nodes for j in claimed] == [1, 2]


def test_small_first_claims_the_fewest_nodes_then_the_oldest(store, session):
    _big, small_old, small_new = make_jobs(store, 1, num_nodes=4) + make_jobs(store, 2, num_nodes=1)
    claimed = claim_ids(store, session, max_jobs=2, order="small_first")
    assert claimed == [small_old.id, small_new.id]


def test_long_large_first_claims_the_longest_then_the_largest(store, session):
    short = make_jobs(store, 1, wall_time_min=5, num_nodes=8)
    long_small = make_jobs(store, 1, wall_time_min=60, num_nodes=1)
    long_big = make_jobs(store, 1, wall_time_min=60, num_nodes=2)
    claimed = claim_ids(store, session, order="long_large_first")
    assert claimed == [long_big[0].id, long_small[0].id, short[0].id]


def test_an_unknown_order_is_refused_naming_the_field(store, session):
    # a transport's decoder refuses the value before it is sent on; the store itself lists the orders
    with pytest.raises(Refused, match="order"):
        claim(store, session.id, ClaimLimits(order="biggest"))


def test_release_hands_back_unstarted_jobs_only(store, session):
    started, unstarted = make_jobs(store, 2)
    claim(store, session.id, ClaimLimits())
    report(store, session, started.id, S.RUNNING)
    assert store.release(session.id, [started.id, unstarted.id]) == 1
    assert store.get(unstarted.id).session_id is None
    assert store.get(started.id).session_id == session.id
    other = store.open_session()
    assert claim_ids(store, other) == [unstarted.id]


def test_release_does_not_touch_another_sessions_jobs(store, session):
    [job] = make_jobs(store, 1)
    claim(store, session.id, ClaimLimits())
    other = store.open_session()
    assert store.release(other.id, [job.id]) == 0
    assert store.get(job.id).session_id == session.id


@pytest.mark.parametrize("end", ["close", "expire"])
def test_a_closed_or_expired_session_cannot_claim(store, end):
    make_jobs(store, 1)
    session = store.open_session(now=1000.0)
    if end == "close":
        store.close_session(session.id)
    else:
        assert store.expire_sessions(300, now=2000.0) == [session.id]
    with pytest.raises(SessionGone, match="open a new session"):
        claim(store, session.id, ClaimLimits())
    with pytest.raises(SessionGone):
        store.heartbeat(session.id)
    assert store.count() == 1
    assert store.filter()[0].session_id is None


def test_an_unknown_session_cannot_claim(store):
    make_jobs(store, 1)
    with pytest.raises(SessionGone, match="is unknown"):
        claim(store, "nosuch", ClaimLimits())


def test_claimed_jobs_carry_every_field_as_stored(store, session):
    # a retried job keeps its last result (bytes) and attempts; JSON fields come back as values
    [job] = make_jobs(
        store, 1, app="echo", parameters={"x": [1, 2.5, "é"]}, tags={"k": "v"}, data={"n": None},
        launch_params={"cpu-bind": "core"}, wall_time_min=1.5, gpus_per_rank=0.5,
    )  # fmt: skip
    first = store.open_session("first")
    claim(store, first.id, ClaimLimits())
    report(store, first, job.id, S.RUNNING, S.RUN_ERROR, result=b"\x00\xffpickled", return_code=3)
    store.retry([job.id])
    [claimed] = claim(store, session.id, ClaimLimits())
    stored = store.get(job.id)
    assert claimed == stored
    assert (claimed.result, claimed.attempts, claimed.parameters) == (b"\x00\xffpickled", 1, {"x": [1, 2.5, "é"]})


def test_a_resent_claim_returns_the_jobs_the_lost_reply_held(store, session):
    make_jobs(store, 3)
    first = claim(store, session.id, ClaimLimits(max_jobs=2, request_id="r1"))
    again = claim(store, session.id, ClaimLimits(max_jobs=2, request_id="r1"))
    assert again == first


def test_claims_are_compiled_once_whatever_their_size(site_store):
    store = site_store
    session = store.open_session()
    """SQLite plans a bound LIMIT by its value and would compile a claim again on every call.
    The authorizer runs only while a statement compiles: after the first claim it must not."""
    make_jobs(store, 6)
    compiled: list[int] = []

    def authorizer(action: int, *_args: object) -> int:
        # a claim is durable: it sets the connection's synchronous around it, and a pragma
        # takes effect as it is compiled, each time
        if action != apsw.SQLITE_PRAGMA:
            compiled.append(1)
        return apsw.SQLITE_OK

    store.db.conn.authorizer = authorizer  # setting it also drops every compiled statement
    claim(store, session.id, ClaimLimits(max_jobs=1))
    assert compiled
    compiled.clear()
    for size in (2, 1, 2):
        assert len(claim(store, session.id, ClaimLimits(max_jobs=size))) == size
    assert compiled == []
