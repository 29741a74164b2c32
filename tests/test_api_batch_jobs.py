"""Batch jobs through the local Python API: ``site.batch_jobs``, the interface of the central
one without a site to name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import balsamd
from balsamd.models import BatchJobState, JobMode, Partition
from balsamd.site import SiteError, init_site
from balsamd.validate import Refused

B = BatchJobState


@pytest.fixture
def site(tmp_path: Path):
    path = init_site(tmp_path / "here").root
    settings = path / "settings.toml"
    text = re.sub(r"(?m)^max_nodes = 1", "max_nodes = 4", settings.read_text())
    text = re.sub(r"(?m)^optional_params = \[\]", 'optional_params = ["qos"]', text)
    settings.write_text(text)
    with balsamd.connect(path) as s:
        yield s


def test_create_filter_and_delete(site) -> None:
    made = site.batch_jobs.create(num_nodes=3, wall_time_min=30, site="here", optional_params={"qos": "low"},
                                  partitions=[{"job_mode": "serial", "num_nodes": 2, "filter_tags": {"k": "v"}},
                                              {"job_mode": "mpi", "num_nodes": 1}])  # fmt: skip
    assert (made.state, made.owner, made.queue) == (B.PENDING_SUBMISSION, "", site.settings.scheduler.default_queue)
    assert made.partitions == [Partition(job_mode=JobMode.SERIAL, num_nodes=2, filter_tags={"k": "v"}),
                               Partition(job_mode=JobMode.MPI, num_nodes=1)]  # fmt: skip
    other = site.batch_jobs.create(2, 10)
    assert site.batch_jobs.filter(state="pending_submission") == [made, other]
    [removed] = site.batch_jobs.delete([made])
    assert (removed.state, removed.status_info) == (B.FINISHED, "removed by user")
    assert site.batch_jobs.filter(state=["finished"]) == [removed]
    assert site.batch_jobs.get(other.id) == other


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"site": "elsewhere"}, "batch job: site='elsewhere' is not this site (here); leave it out, or connect to "
         "the central database to ask another site"),
        ({"num_nodes": 5}, "--num-nodes 5 exceeds the site's max_nodes=4"),
        ({"optional_params": {"reservation": "r"}}, "optional parameter 'reservation' is not allowed at this site "
         "(allowed: qos)"),
        ({"node_count": 2}, "batch job: unknown field(s) ['node_count']"),
        ({"wall_time_min": "long"}, "batch job: wall_time_min: expected a whole number, got a string"),
    ],
)  # fmt: skip
def test_a_request_the_site_cannot_take_is_refused_and_nothing_is_written(site, fields, message) -> None:
    with pytest.raises(Refused) as refused:
        site.batch_jobs.create(**{"num_nodes": 1, "wall_time_min": 5, **fields})
    assert message in str(refused.value)
    assert site.batch_jobs.filter() == []


def test_an_unknown_state_to_filter_on_names_the_states(site) -> None:
    with pytest.raises(Refused) as refused:
        site.batch_jobs.filter(state="done")
    assert str(refused.value) == (
        "batch job filter: 'done' is not a batch job state; use one of pending_submission, queued, running, "
        "finished, submit_failed, pending_deletion"
    )


def test_filter_by_ids_and_by_who_asked_and_get_at_this_site_only(site) -> None:
    first, second = site.batch_jobs.create(1, 5), site.batch_jobs.create(1, 5)
    assert site.batch_jobs.filter(ids=[second.id]) == [second]
    assert site.batch_jobs.filter(site="here", mine=True) == [first, second]  # the site owner asked for both
    assert site.batch_jobs.get(first.id, site="here") == first
    with pytest.raises(SiteError) as wrong:
        site.batch_jobs.get(first.id, site="elsewhere")
    assert str(wrong.value).startswith("this connection is to site here, not 'elsewhere'")
