"""Job queries: every JobFilter field narrows; counts agree with listings."""

from __future__ import annotations

import pytest

from balsamd import ids
from balsamd.models import JobSpec
from balsamd.states import JobState
from balsamd.store.queries import JobFilter
from tests.conftest import make_jobs
from tests.store import run_all

S = JobState


def found(store, **criteria) -> set[str]:
    f = JobFilter(**criteria)
    jobs = {j.id for j in store.filter(f)}
    assert store.count(f) == len(jobs)
    return jobs


@pytest.fixture
def mixed(store):
    a = make_jobs(store, 2, tags={"exp": "a", "size": "s"})
    b = make_jobs(store, 2, tags={"exp": "b", "size": "s"}, app="post")
    c = make_jobs(store, 1, tags={"exp": "a", "size": "l"}, app="pre")
    run_all(store, a[:1])
    store.kill([b[0].id])
    return a, b, c


def test_no_filter_lists_every_job_oldest_first(store, mixed):
    listed = [j.id for j in store.filter()]
    assert listed == sorted(j.id for group in mixed for j in group)


def test_filter_by_state(store, mixed):
    a, b, c = mixed
    assert found(store, states=[S.JOB_FINISHED]) == {a[0].id}
    assert found(store, states=[S.KILLED, S.STAGED_IN]) == {b[0].id, c[0].id}


def test_filter_by_several_tags_requires_all_of_them(store, mixed):
    a, _, c = mixed
    assert found(store, tags={"exp": "a"}) == {a[0].id, a[1].id, c[0].id}
    assert found(store, tags={"exp": "a", "size": "s"}) == {a[0].id, a[1].id}
    assert found(store, tags={"exp": "b", "size": "l"}) == set()


def test_filter_by_app(store, mixed):
    _, b, _ = mixed
    assert found(store, app="post") == {j.id for j in b}
    assert found(store, app="nosuch") == set()


def test_filter_by_parent(store):
    [parent] = make_jobs(store, 1)
    children = make_jobs(store, 2, parent_ids=[parent.id])
    make_jobs(store, 1)
    assert found(store, parent_id=parent.id) == {j.id for j in children}


def test_filter_by_id_list(store, mixed):
    a, b, _ = mixed
    assert found(store, ids=[a[1].id, b[1].id, ids.new_id()]) == {a[1].id, b[1].id}
    assert found(store, ids=[]) == set()


def test_filters_combine(store, mixed):
    a, _, _ = mixed
    assert found(store, tags={"exp": "a"}, states=[S.PREPROCESSED], app="noop") == {a[1].id}


def test_limit_caps_the_listing(store, mixed):
    assert len(store.filter(JobFilter(limit=2))) == 2


def test_workdir_filter_matches_a_substring(store):
    jobs = store.create_jobs([JobSpec(app="noop", workdir=w) for w in ["run/a1", "run/b1", "x/a2"]])
    assert found(store, workdir_contains="a") == {jobs[0].id, jobs[2].id}
    assert found(store, workdir_contains="run/") == {jobs[0].id, jobs[1].id}


@pytest.mark.parametrize(("needle", "matches"), [("50%", ["mix_50%"]), ("_5", ["mix_50%"]), ("\\", ["back\\slash"])])
def test_workdir_filter_treats_like_wildcards_literally(store, needle, matches):
    names = ["mix_50%", "mix-500", "mixx5", "back\\slash"]
    store.create_jobs([JobSpec(app="noop", workdir=w) for w in names])
    assert sorted(j.workdir for j in store.filter(JobFilter(workdir_contains=needle))) == matches


def test_counts_by_state_counts_every_state_present_in_lifecycle_order(store, mixed):
    assert store.counts_by_state() == {
        "STAGED_IN": 1, "PREPROCESSED": 2, "JOB_FINISHED": 1, "KILLED": 1,
    }  # fmt: skip
    assert list(store.counts_by_state()) == ["STAGED_IN", "PREPROCESSED", "JOB_FINISHED", "KILLED"]
    assert store.counts_by_state(JobFilter(tags={"exp": "b"})) == {"PREPROCESSED": 1, "KILLED": 1}
