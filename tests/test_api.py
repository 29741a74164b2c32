"""The Python API: ``site = balsamd.connect(PATH)``, then site.jobs and site.apps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import balsamd
from balsamd.apps import command_app_source
from balsamd.models import ClaimLimits
from balsamd.site import SiteError, init_site
from balsamd.states import IllegalTransition, JobState
from balsamd.store.errors import JobNotFound, StoreError
from balsamd.validate import JobSpecError
from tests.conftest import SmallDisk

S = JobState

SIM = """\
from balsamd.apps import ApplicationDefinition


class sim(ApplicationDefinition):
    def run(self, x, steps=10):
        return x * steps
"""


def make_site(root: Path, template: str = "echo {{ name }}") -> Path:
    path = init_site(root).root
    settings = path / "settings.toml"
    settings.write_text(re.sub(r"(?m)^cpus_per_node = \d+", "cpus_per_node = 4", settings.read_text()))
    (path / "apps" / "hello.py").write_text(command_app_source("hello", template))
    (path / "apps" / "sim.py").write_text(SIM)
    return path


@pytest.fixture
def site(tmp_path: Path):
    with balsamd.connect(make_site(tmp_path / "site")) as s:
        yield s


def test_connect_by_path_and_by_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_site(tmp_path / "s")
    with balsamd.connect(root) as s:
        assert s.path == root
        assert s.name == "s"
        assert s.settings.nodes.cpus_per_node == 4
    monkeypatch.setenv("BALSAMD_SITE", str(root))
    with balsamd.connect() as s:
        assert s.path == root
    monkeypatch.delenv("BALSAMD_SITE")
    monkeypatch.chdir(root / "data")
    with balsamd.connect() as s:
        assert s.path == root


def test_connect_to_a_missing_site(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match=r"does not exist or is not a directory"):
        balsamd.connect(tmp_path / "nope")


def test_create_returns_a_job(site) -> None:
    job = site.jobs.create("hello", "runs/1", parameters={"name": "a b"}, tags={"exp": "1"}, num_nodes=1)
    assert isinstance(job, balsamd.JobHandle)
    assert len(job.id) == 26
    assert (job.app, job.workdir, job.state) == ("hello", "runs/1", S.PREPROCESSED)
    assert job.parameters == {"name": "a b"}
    assert job.tags == {"exp": "1"}
    assert job.footprint == 1.0
    assert repr(job) == f"<Job {job.id} app=hello workdir=runs/1 state=PREPROCESSED>"
    assert site.jobs.get(job.id) == job
    assert hash(site.jobs.get(job.id)) == hash(job)
    with pytest.raises(AttributeError):
        job.no_such_field  # noqa: B018


def test_python_app_parameters_keep_their_types_and_defaults(site) -> None:
    job = site.jobs.create("sim", "s", parameters={"x": [1, 2]})
    assert site.jobs.get(job.id).parameters == {"x": [1, 2], "steps": 10}


def test_create_refuses_with_every_problem(site) -> None:
    with pytest.raises(JobSpecError) as info:
        site.jobs.create("hello", "../x", parameters={"nmae": 1}, ranks_per_node=5)
    assert info.value.problems == [
        "workdir '../x' contains '..'; give a path inside the site's data/ directory without it",
        "unknown parameter(s) nmae for app hello (it takes: name); correct the name or leave it out",
        "missing required parameter name: add -p name=VALUE",
        "5 ranks x 1 threads / 1 threads per core needs 5 CPUs per node but nodes have 4 "
        "(lower --ranks-per-node or --threads-per-rank, or spread over more nodes)",
    ]
    assert site.jobs.count() == 0


def test_create_refuses_unknown_apps_fields_and_bad_values(site) -> None:
    with pytest.raises(JobSpecError, match=r"^job: unknown app 'nope' \(known: hello, sim\); create it"):
        site.jobs.create("nope", "w")
    with pytest.raises(
        JobSpecError, match=r"^job: unknown field\(s\) \['nodes'\]; correct or remove them \(a job request takes "
    ):
        site.jobs.create("hello", "w", parameters={"name": "a"}, nodes=2)
    with pytest.raises(JobSpecError, match=r"^job: tags: expected a string, got a whole number; give a string$"):
        site.jobs.create("hello", "w", parameters={"name": "a"}, tags={"k": 1})
    assert site.jobs.count() == 0


def test_bulk_create_is_all_or_none(site) -> None:
    good = {"app": "hello", "workdir": "a", "parameters": {"name": "a"}}
    with pytest.raises(JobSpecError, match=r"^job 1: missing required parameter name"):
        site.jobs.bulk_create([good, {"app": "hello", "workdir": "b"}, good])
    assert site.jobs.count() == 0
    with pytest.raises(StoreError, match=r"parent job\(s\) not found: '7ZZZ'; give ids of jobs of this site"):
        site.jobs.bulk_create([good, {**good, "workdir": "b", "parent_ids": ["7ZZZ"]}])
    assert site.jobs.count() == 0
    assert site.store.events() == []
    jobs = site.jobs.bulk_create([{**good, "workdir": f"w{i}"} for i in range(50)])
    assert [j.workdir for j in jobs] == [f"w{i}" for i in range(50)]
    assert [j.id for j in site.jobs.filter()] == [j.id for j in jobs]


def test_create_on_a_full_disk_raises_disk_full_and_works_once_space_is_freed(small_disk: SmallDisk) -> None:
    with balsamd.connect(make_site(small_disk.path / "site")) as site:
        site.jobs.create("hello", "a", parameters={"name": "a"})
        small_disk.fill()
        with pytest.raises(balsamd.DiskFull) as raised:
            site.jobs.bulk_create([{"app": "hello", "workdir": f"w{i}", "parameters": {"name": "x" * 1000}}
                                   for i in range(1000)])  # fmt: skip
        assert isinstance(raised.value, StoreError)
        assert raised.value.path == str(site.layout.store)
        assert site.jobs.count() == 1
        small_disk.free()
        site.jobs.create("hello", "b", parameters={"name": "b"})
        assert site.jobs.count() == 2


def test_get_by_prefix_and_unknown_ids(site) -> None:
    a, b = site.jobs.bulk_create([{"app": "sim", "workdir": w, "parameters": {"x": 1}} for w in "ab"])
    assert site.jobs.get(a.id.lower()) == a
    with pytest.raises(JobNotFound, match=r"^no job with id 7ZZZ \(list jobs with `balsamd job ls`\)$"):
        site.jobs.get("7ZZZ")
    common = next(i for i in range(26) if a.id[i] != b.id[i])
    with pytest.raises(StoreError, match=r"matches several jobs; give more characters$"):
        site.jobs.get(a.id[:common])


def test_filter_and_count(site) -> None:
    a = site.jobs.create("hello", "a", parameters={"name": "a"}, tags={"exp": "1", "size": "big"})
    b = site.jobs.create("hello", "b", parameters={"name": "b"}, tags={"exp": "2"})
    c = site.jobs.create("sim", "c", parameters={"x": 1}, tags={"exp": "1"})
    site.jobs.kill([b])
    assert site.jobs.filter() == [a, b, c]
    assert site.jobs.filter(state="KILLED") == [b]
    assert site.jobs.filter(state=S.PREPROCESSED) == [a, c]
    assert site.jobs.filter(state=[S.KILLED, "PREPROCESSED"]) == [a, b, c]
    assert site.jobs.filter(tags={"exp": "1"}) == [a, c]
    assert site.jobs.filter(tags={"exp": "1", "size": "big"}) == [a]
    assert site.jobs.filter(app="sim") == [c]
    assert site.jobs.filter(app="hello", state="PREPROCESSED") == [a]
    assert site.jobs.filter(workdir="b") == [b]
    assert site.jobs.filter(limit=2) == [a, b]
    assert list(site.jobs) == [a, b, c]
    assert site.jobs.count() == 3
    assert site.jobs.count(tags={"exp": "1"}) == 2
    assert site.jobs.count(state="FAILED") == 0
    assert site.jobs.counts_by_state() == {"PREPROCESSED": 2, "KILLED": 1}


def test_filter_mistakes_are_explained(site) -> None:
    with pytest.raises(TypeError, match=r"^unknown filter\(s\) \['status'\]; use \["):
        site.jobs.filter(status="KILLED")
    with pytest.raises(ValueError, match=r"^job filter: 'DONE' is not a job state; use one of CREATED, "):
        site.jobs.filter(state="DONE")


def test_parents_children_and_filter_by_parent(site) -> None:
    parent = site.jobs.create("sim", "p", parameters={"x": 1})
    child = site.jobs.create("sim", "c", parameters={"x": 1}, parent_ids=[parent.id])
    assert child.state == S.AWAITING_PARENTS
    assert site.jobs.filter(parent=parent.id) == [child]
    site.jobs.kill([parent])
    assert child.refresh().state == S.FAILED
    assert child.state_reason == f"parent {parent.id} is KILLED; this job cannot run"


def test_refresh_and_events(site) -> None:
    job = site.jobs.create("hello", "w", parameters={"name": "a"})
    assert [(e.from_state, e.to_state) for e in job.events()] == [
        (S.CREATED, S.READY), (S.READY, S.STAGED_IN), (S.STAGED_IN, S.PREPROCESSED),
    ]  # fmt: skip
    assert site.jobs.kill([job.id, job]) == {job.id: S.KILLED}
    assert job.state == S.PREPROCESSED  # a handle shows what it last read
    assert job.refresh() is job
    assert job.state == S.KILLED
    assert job.events()[-1].reason == "killed by user"
    assert {e.job_id for e in job.events()} == {job.id}


def test_kill_retry_and_delete(site) -> None:
    a, b = (site.jobs.create("hello", w, parameters={"name": w}) for w in "ab")
    with pytest.raises(IllegalTransition):
        site.jobs.retry([a])
    site.jobs.kill([a])
    with pytest.raises(IllegalTransition, match=rf"^job {a.id}: cannot go from KILLED to KILLED"):
        site.jobs.kill([b, a])
    assert b.refresh().state == S.PREPROCESSED
    outcome = site.jobs.delete([a, a.id])
    assert (outcome.removed, outcome.refused) == ([a.id], {})
    assert site.jobs.filter() == [b]
    assert site.store.events(a.id) == []


def test_apps_list_and_get(site) -> None:
    apps = site.apps.list()
    assert [a.name for a in apps] == ["hello", "sim"]
    assert apps[0].command_template == "echo {{ name }}"
    assert site.apps.get("sim").kind == "python"
    with pytest.raises(JobSpecError, match=r"^app nope: unknown app 'nope' \(known: hello, sim\)"):
        site.apps.get("nope")


def test_apps_follow_the_apps_directory(site) -> None:
    (site.path / "apps" / "extra.py").write_text(command_app_source("extra", "true"))
    assert [a.name for a in site.apps.list()] == ["extra", "hello", "sim"]
    (site.path / "apps" / "extra.py").unlink()
    assert [a.name for a in site.apps.list()] == ["hello", "sim"]
    assert sorted(site.store.apps()) == ["hello", "sim"]


def test_two_sites_at_once_do_not_interfere(tmp_path: Path) -> None:
    one = balsamd.connect(make_site(tmp_path / "one", "echo one {{ name }}"))
    two = balsamd.connect(make_site(tmp_path / "two", "echo two {{ name }}"))
    try:
        assert one.apps.get("hello").command_template == "echo one {{ name }}"
        assert two.apps.get("hello").command_template == "echo two {{ name }}"
        a = one.jobs.create("hello", "w", parameters={"name": "x"})
        two.jobs.bulk_create([{"app": "hello", "workdir": w, "parameters": {"name": "y"}} for w in ("w", "v")])
        assert one.jobs.count() == 1
        assert two.jobs.count() == 2
        with pytest.raises(JobNotFound):
            two.jobs.get(a.id)
        one.close()
        assert two.jobs.count() == 2
        assert two.name == "two"
    finally:
        one.close()
        two.close()


def test_public_names() -> None:
    assert set(balsamd.__all__) >= {"ApplicationDefinition", "DiskFull", "JobHandle", "JobState", "Site", "connect"}


def test_an_empty_id_names_no_job(site) -> None:
    site.jobs.create("hello", "w", parameters={"name": "a"})
    with pytest.raises(StoreError):
        site.jobs.get("")


def test_result_gives_the_return_value_or_raises_the_remote_exception(site) -> None:
    from balsamd.models import StateUpdate
    from balsamd.results import RemoteError, ResultNotReady, pack_error, pack_value

    ok = site.jobs.create("hello", "ok", parameters={"name": "a"})
    bad = site.jobs.create("hello", "bad", parameters={"name": "b"})
    with pytest.raises(ResultNotReady, match="has no result yet"):
        ok.result()
    session = site.store.open_session()
    site.store.claim(session.id, ClaimLimits(max_jobs=2))
    site.store.update_states(
        session.id,
        [
            StateUpdate(job_id=ok.id, state="RUNNING", ts=1.0),
            StateUpdate(job_id=ok.id, state="RUN_DONE", ts=2.0, return_code=0, result=pack_value({"v": 42})),
            StateUpdate(job_id=bad.id, state="RUNNING", ts=1.0),
            StateUpdate(job_id=bad.id, state="RUN_ERROR", ts=2.0, return_code=1, result=pack_error(KeyError("k"))),
        ],
    )
    assert ok.result(timeout=1) == {"v": 42}
    with pytest.raises(RemoteError, match=r"^KeyError: 'k'\n") as raised:
        bad.result()
    assert raised.value.type_name == "KeyError"
    assert any(bad.id in note for note in raised.value.__notes__)
