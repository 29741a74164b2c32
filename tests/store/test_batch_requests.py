"""What a batch job may ask for, and who may remove it: partitions sharing out its nodes,
optional scheduler parameters from the site's allow-list, values that could reach a job script,
and batch-job intents applied under the ownership of who asked.  Over every transport."""

from __future__ import annotations

import pytest

from balsamd import ids
from balsamd.models import (
    BatchJob,
    BatchJobState,
    Intent,
    IntentOutcome,
    IntentStatus,
    JobMode,
    Partition,
)
from balsamd.store.contract import Store
from balsamd.validate import Refused

B = BatchJobState
APPLIED, REJECTED = IntentStatus.APPLIED, IntentStatus.REJECTED


def batch(**fields: object) -> BatchJob:
    return BatchJob(**{"id": ids.new_id(), "num_nodes": 4, "wall_time_min": 30, **fields})  # type: ignore[arg-type]


def refusal(store: Store, made: BatchJob) -> str:
    with pytest.raises(Refused) as refused:
        store.create_batch_job(made)
    assert store.batch_jobs() == []
    return str(refused.value)


def test_partitions_and_optional_parameters_are_kept_with_the_batch_job(store: Store) -> None:
    parts = [Partition(job_mode=JobMode.SERIAL, num_nodes=3, filter_tags={"kind": "small"}),
             Partition(job_mode=JobMode.MPI, num_nodes=1, filter_tags={"kind": "wide"})]  # fmt: skip
    made = store.create_batch_job(batch(partitions=parts, optional_params={"reservation": "resv-7"}))
    got = store.get_batch_job(made.id)
    assert got.partitions == parts
    assert got.optional_params == {"reservation": "resv-7"}
    assert (got.owner, got.state) == ("", B.PENDING_SUBMISSION)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"partitions": [Partition(job_mode=JobMode.SERIAL, num_nodes=3),
                         Partition(job_mode=JobMode.MPI, num_nodes=2)]},
         "partitions take 3 + 2 = 5 nodes, more than the batch job's num_nodes=4; shrink them or ask for more nodes"),
        ({"partitions": [Partition(job_mode=JobMode.SERIAL, num_nodes=0)]},
         "partition 0: num_nodes must be a whole number, 1 or more (got 0)"),
        ({"partitions": [Partition(job_mode=JobMode.SERIAL, num_nodes=1)], "filter_tags": {"a": "b"}},
         "filter_tags apply to a batch job without partitions; give each partition its filter_tags"),
        ({"partitions": [Partition(job_mode=JobMode.SERIAL, num_nodes=1, filter_tags={"a b": "c"})]},
         "partition 0's filter tag key 'a b' must be one word"),
        ({"optional_params": {"mail-user": "me@example.org"}},
         "optional parameter 'mail-user' is not allowed at this site (allowed: reservation, qos); its owner may "
         "add it to [scheduler] optional_params in settings.toml"),
        ({"optional_params": {"reservation": "r1\n#SBATCH --wrap=evil"}},
         "optional parameter reservation's value 'r1\\n#SBATCH --wrap=evil' is not one word"),
        ({"optional_params": {"qos": "$(touch /tmp/owned)"}},
         "optional parameter qos's value '$(touch /tmp/owned)' is not one word"),
        ({"queue": "debug\nrm -rf ~"}, "queue 'debug\\nrm -rf ~' is not a scheduler's queue name"),
        ({"project": "`id`"}, "project '`id`' is not a scheduler's project name"),
        ({"num_nodes": 65}, "--num-nodes 65 exceeds the site's max_nodes=64"),
    ],
)  # fmt: skip
def test_a_batch_job_the_site_cannot_take_is_refused_naming_the_field(
    store: Store, fields: dict[str, object], message: str
) -> None:
    assert message in refusal(store, batch(**fields))


# ----- batch jobs asked for through the central database ---------------------------------------


def create_intent(asker: str, batch_id: str | None = None, **payload: object) -> Intent:
    body = {"num_nodes": 2, "wall_time_min": 20, **payload}
    return Intent(id=ids.new_id(), kind="batch_create", job_id=batch_id or ids.new_id(), payload=body, owner=asker)


def delete_intent(owner: str, batch_id: str) -> Intent:
    return Intent(id=ids.new_id(), kind="batch_delete", job_id=batch_id, owner=owner)


def test_a_batch_create_intent_records_a_pending_batch_job_of_its_asker(store: Store) -> None:
    intent = create_intent("alice", partitions=[{"job_mode": "serial", "num_nodes": 2}], queue="debug")
    outcome = store.apply_intents([intent])[intent.id]
    assert outcome == IntentOutcome(status=APPLIED, batch_jobs={intent.job_id: B.PENDING_SUBMISSION})
    made = store.get_batch_job(intent.job_id)
    assert (made.owner, made.queue, made.partitions) == ("alice", "debug", [Partition(job_mode=JobMode.SERIAL,
                                                                                      num_nodes=2)])  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"num_nodes": 100}, "--num-nodes 100 exceeds the site's max_nodes=64"),
        ({"optional_params": {"account": "other"}}, "optional parameter 'account' is not allowed at this site"),
        ({"queue": "q\n$(reboot)"}, "queue 'q\\n$(reboot)' is not a scheduler's queue name"),
        ({"partitions": [{"job_mode": "gpu", "num_nodes": 1}]}, "partitions[0].job_mode"),
        ({"owner": "bob"}, "unknown field"),
    ],
)
def test_a_batch_create_the_site_cannot_take_is_rejected_with_the_reason(
    store: Store, payload: dict[str, object], reason: str
) -> None:
    intent = create_intent("alice", **payload)
    outcome = store.apply_intents([intent])[intent.id]
    assert outcome.status == REJECTED
    assert reason in outcome.reason
    assert store.batch_jobs() == []


def test_a_batch_create_naming_an_existing_batch_job_changes_nothing(store: Store) -> None:
    mine = store.create_batch_job(batch())
    intent = create_intent("mallory", batch_id=mine.id, num_nodes=1)
    outcome = store.apply_intents([intent])[intent.id]
    assert outcome == IntentOutcome(
        status=REJECTED, reason=f"a batch job with id {mine.id} exists already; give it another id"
    )
    assert store.get_batch_job(mine.id) == mine


def test_only_who_asked_for_a_batch_job_may_remove_it(store: Store) -> None:
    asked = create_intent("alice")
    store.apply_intents([asked])
    sites_own = store.create_batch_job(batch())
    by_bob, of_site = delete_intent("bob", asked.job_id), delete_intent("alice", sites_own.id)
    outcomes = store.apply_intents([by_bob, of_site])
    assert outcomes[by_bob.id] == IntentOutcome(status=REJECTED, reason=(
        f"batch_delete intent {by_bob.id}: batch job {asked.job_id} was not asked for by bob: only who asked for "
        "it may remove it"))  # fmt: skip
    assert outcomes[of_site.id].reason == (
        f"batch_delete intent {of_site.id}: batch job {sites_own.id} was not asked for by alice: only who asked "
        "for it may remove it"
    )
    assert [b.state for b in store.batch_jobs()] == [B.PENDING_SUBMISSION, B.PENDING_SUBMISSION]

    by_alice = delete_intent("alice", asked.job_id)
    outcome = store.apply_intents([by_alice])[by_alice.id]
    assert outcome == IntentOutcome(status=APPLIED, batch_jobs={asked.job_id: B.FINISHED})
    assert store.get_batch_job(asked.job_id).status_info == "removed by user"


def test_a_batch_job_made_at_the_site_is_the_site_owners_whatever_the_record_says(store: Store) -> None:
    made = store.create_batch_job(batch(owner="alice"))
    assert made.owner == ""
    intent = delete_intent("alice", made.id)
    assert store.apply_intents([intent])[intent.id].status == REJECTED
