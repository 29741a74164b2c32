"""What users change in jobs that have not started: resources (``update_jobs``) and parents
(``add_parents``), over every transport of the contract."""

from __future__ import annotations

import pytest

from balsamd.models import ClaimLimits, Intent, IntentOutcome, IntentStatus, JobChanges, StateUpdate
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.store.errors import StoreError
from balsamd.store.queries import JobFilter, claimed_jobs
from balsamd.validate import Refused
from tests.conftest import make_jobs

S = JobState


def test_resources_of_a_job_that_has_not_started_are_edited(store: Store) -> None:
    [job] = make_jobs(store, 1)
    [edited] = store.update_jobs({job.id: JobChanges(num_nodes=4, ranks_per_node=8, wall_time_min=30.0)})
    assert (edited.num_nodes, edited.ranks_per_node, edited.wall_time_min) == (4, 8, 30.0)
    assert edited.version == job.version + 1
    assert store.get(job.id) == edited
    # the other fields are left as they were
    assert (edited.parameters, edited.tags, edited.state) == (job.parameters, job.tags, job.state)


def test_a_claimed_or_running_job_keeps_its_resources(store: Store) -> None:
    [job] = make_jobs(store, 1)
    session = store.open_session()
    [claimed] = claimed_jobs(store.claim(session.id, ClaimLimits()), ClaimLimits())
    with pytest.raises(StoreError) as refused:
        store.update_jobs({claimed.id: JobChanges(num_nodes=2)})
    assert str(refused.value) == (
        f"job {job.id} is PREPROCESSED (claimed by launcher session {session.id}); "
        "only jobs that have not started can be edited; no job was edited"
    )
    assert store.get(job.id).num_nodes == 1
    store.update_states(session.id, [StateUpdate(job_id=job.id, state=S.RUNNING, ts=1.0)])
    with pytest.raises(StoreError) as refused:
        store.update_jobs({job.id: JobChanges(wall_time_min=5.0)})
    assert str(refused.value) == (
        f"job {job.id} is RUNNING; only jobs that have not started can be edited; no job was edited"
    )


def test_jobs_are_edited_all_or_none(store: Store) -> None:
    first, second, third = make_jobs(store, 3)
    edited = store.update_jobs({first.id: JobChanges(num_nodes=2), third.id: JobChanges(tags={"k": "v"})})
    assert [(j.id, j.num_nodes, j.tags) for j in edited] == [(first.id, 2, {}), (third.id, 1, {"k": "v"})]
    # the last edit is refused: the first, good on its own, is not made either
    with pytest.raises(Refused) as refused:
        store.update_jobs({second.id: JobChanges(wall_time_min=9.0), first.id: JobChanges(num_nodes=10_000)})
    assert str(refused.value).startswith(f"job {first.id}: ")
    assert (store.get(second.id).wall_time_min, store.get(first.id).num_nodes) == (second.wall_time_min, 2)
    with pytest.raises(Refused, match="no job given"):
        store.update_jobs({})


# ----- add_parents ---------------------------------------------------------------------------------


def finish(store: Store, job_id: str) -> None:
    """Run a job to its end, as a launcher reports it."""
    session = store.open_session()
    limits = ClaimLimits(max_jobs=1000)
    assert job_id in [j.id for j in claimed_jobs(store.claim(session.id, limits), limits)]
    outcome = store.update_states(session.id, [
        StateUpdate(job_id=job_id, state=S.RUNNING, ts=1.0), StateUpdate(job_id=job_id, state=S.RUN_DONE, ts=2.0),
    ])  # fmt: skip
    assert outcome.rejected == {}
    store.close_session(session.id)


def test_a_ready_job_waits_for_new_parents_and_is_released_when_they_finish(store: Store) -> None:
    child, first, second = make_jobs(store, 3)
    assert child.state == S.PREPROCESSED
    made = store.add_parents(child.id, [first.id, second.id])
    assert (made.state, made.parent_ids) == (S.AWAITING_PARENTS, [first.id, second.id])
    assert made.state_reason == f"waits for 2 parent(s) a user added (e.g. {first.id})"
    [event] = [e for e in store.events(child.id) if e.to_state == S.AWAITING_PARENTS]
    assert event.from_state == S.PREPROCESSED
    finish(store, first.id)
    assert store.get(child.id).state == S.AWAITING_PARENTS
    finish(store, second.id)
    assert store.get(child.id).state == S.PREPROCESSED
    # the DAG queries see the link as one made at creation
    assert [j.id for j in store.filter(JobFilter(parent_id=first.id))] == [child.id]


def test_finished_parents_leave_the_job_where_it_is(store: Store) -> None:
    child, done = make_jobs(store, 2)
    finish(store, done.id)
    made = store.add_parents(child.id, [done.id])
    assert (made.state, made.parent_ids) == (S.PREPROCESSED, [done.id])
    # a parent it has already is not added twice
    assert store.add_parents(child.id, [done.id]).parent_ids == [done.id]


@pytest.mark.parametrize("where", ["RESTART_READY", "AWAITING_PARENTS"])
def test_a_job_waiting_or_to_be_rerun_gets_parents_too(store: Store, where: str) -> None:
    child, parent, other = make_jobs(store, 3)
    if where == "AWAITING_PARENTS":
        store.add_parents(child.id, [other.id])
    else:
        session = store.open_session()
        claimed_jobs(store.claim(session.id, ClaimLimits(max_jobs=1)), ClaimLimits(max_jobs=1))
        store.update_states(session.id, [StateUpdate(job_id=child.id, state=S.RUNNING, ts=1.0),
                                         StateUpdate(job_id=child.id, state=S.RUN_TIMEOUT, ts=2.0)])  # fmt: skip
        store.close_session(session.id)
        assert store.get(child.id).state == S.RESTART_READY
    assert store.add_parents(child.id, [parent.id]).state == S.AWAITING_PARENTS


def refused(store: Store, job_id: str, parent_ids: list[str]) -> str:
    before = store.filter(), store.events()
    with pytest.raises((StoreError, Refused)) as exc:
        store.add_parents(job_id, parent_ids)
    assert (store.filter(), store.events()) == before  # nothing written
    return str(exc.value)


def test_unknown_ids_are_refused(store: Store) -> None:
    [job] = make_jobs(store, 1)
    assert refused(store, job.id, ["NOPE"]) == "no job with id NOPE (list jobs with `balsamd job ls`)"
    assert refused(store, "NOPE", [job.id]) == "no job with id NOPE (list jobs with `balsamd job ls`)"
    assert refused(store, job.id, []) == f"job {job.id}: no parents given: name the jobs it must wait for"


def test_a_cycle_is_refused_naming_it(store: Store) -> None:
    a, b, c = make_jobs(store, 3)
    store.add_parents(b.id, [a.id])
    store.add_parents(c.id, [b.id])
    assert refused(store, a.id, [c.id]) == (
        f"job {a.id} cannot wait for {c.id}: {a.id} -> {c.id} -> {b.id} -> {a.id} would be a cycle of jobs "
        "waiting for each other"
    )
    assert refused(store, a.id, [a.id]).startswith(f"job {a.id} cannot wait for {a.id}: {a.id} -> {a.id}")


def test_a_started_or_finished_child_and_a_failed_parent_are_refused(store: Store) -> None:
    done, parent, killed, child = make_jobs(store, 4)
    finish(store, done.id)
    assert refused(store, done.id, [parent.id]) == (
        f"job {done.id} is JOB_FINISHED; only a job that has not started can get parents"
    )
    store.kill([killed.id])
    assert refused(store, child.id, [parent.id, killed.id]) == (
        f"parent {killed.id} is KILLED: job {child.id} could never run after it; retry the parent first, or "
        "choose another"
    )
    session = store.open_session()
    claimed_jobs(store.claim(session.id, ClaimLimits(max_jobs=10)), ClaimLimits(max_jobs=10))
    assert refused(store, child.id, [parent.id]) == (
        f"job {child.id} is PREPROCESSED (claimed by launcher session {session.id}); only a job that has not "
        "started can get parents"
    )


def test_an_add_parents_intent_is_applied_once_and_a_malformed_one_rejected(store: Store) -> None:
    child, parent = make_jobs(store, 2)
    asked = Intent(id="I1", kind="add_parents", job_id=child.id, payload={"parent_ids": [parent.id]})
    malformed = Intent(id="I2", kind="add_parents", job_id=child.id, payload={"parent_ids": "all of them"})
    foreign = Intent(id="I3", kind="add_parents", job_id=child.id, payload={"parent_ids": [parent.id]}, owner="bob")
    outcomes = store.apply_intents([asked, malformed, foreign])
    assert outcomes["I1"] == IntentOutcome(status=IntentStatus.APPLIED, states={child.id: S.AWAITING_PARENTS})
    assert outcomes["I2"] == IntentOutcome(
        status=IntentStatus.REJECTED,
        reason='add_parents intent I2: it needs "parent_ids": a list of 1 to 10000 job ids',
    )
    assert outcomes["I3"].reason == (
        f"add_parents intent I3: job {child.id} is not a job of bob: only its owner may ask this"
    )
    assert store.get(child.id).parent_ids == [parent.id]
    assert store.apply_intents([asked]) == {"I1": outcomes["I1"]}  # seen again: the outcome recorded then
