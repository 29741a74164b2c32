"""What users change in jobs that have not started: resources (``update_job``) and parents
(``add_parents``), over every transport of the contract."""

from __future__ import annotations

import pytest

from balsamd.models import ClaimLimits, JobChanges
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.store.errors import StoreError
from balsamd.store.queries import claimed_jobs
from tests.conftest import make_jobs

S = JobState


def test_resources_of_a_job_that_has_not_started_are_edited(store: Store) -> None:
    [job] = make_jobs(store, 1)
    edited = store.update_job(job.id, JobChanges(num_nodes=4, ranks_per_node=8, wall_time_min=30.0))
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
        store.update_job(claimed.id, JobChanges(num_nodes=2))
    assert str(refused.value) == (
        f"job {job.id} is PREPROCESSED (claimed by launcher session {session.id}); "
        "only jobs that have not started can be edited"
    )
    assert store.get(job.id).num_nodes == 1
