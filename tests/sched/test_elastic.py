"""The elastic queue: its decision as a pure function, its service on a store, and a real daemon
that sizes batch jobs of the local scheduler to the backlog."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balsamd.config import ElasticSettings, NodeSettings, SchedulerSettings, Settings
from balsamd.models import BatchJob, BatchJobState
from balsamd.sched.base import BackfillWindow, SchedulerError
from balsamd.sched.elastic import choose_window, paused_until, plan
from balsamd.sched.service import ElasticService
from balsamd.store.batch import BacklogStats
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules
from tests.conftest import APPS, make_jobs, open_store
from tests.daemon.conftest import ELASTIC_SETTINGS, DaemonSite, new_site, wait_until

B = BatchJobState
NOW = 1_000_000.0
MIN = 60.0


def limits(**fields: Any) -> ElasticSettings:
    base: dict[str, Any] = {
        "min_nodes": 1, "max_nodes": 8, "min_wall_time_min": 35, "max_wall_time_min": 360,
        "wall_time_pad_min": 5, "max_queue_wait_min": 10.0, "max_queued": 20, "max_failures": 3, "pause_min": 30.0,
    }  # fmt: skip
    return ElasticSettings(**{**base, **fields})


def backlog(footprint: float = 0.0, running: float = 0.0, largest: int = 1, unfit: int = 0) -> BacklogStats:
    runnable = 0 if footprint == 0 else max(1, round(footprint))
    return BacklogStats(
        runnable=runnable, runnable_footprint=footprint, running_footprint=running,
        largest_nodes=largest if runnable else 0, unfit=unfit,
    )  # fmt: skip


_ids = iter(range(1, 1_000_000))


def batch(state: B, num_nodes: int = 1, origin: str = "elastic", age_min: float = 1.0) -> BatchJob:
    return BatchJob(
        id=f"b{next(_ids):06d}", num_nodes=num_nodes, wall_time_min=60, state=state, origin=origin,
        created_at=NOW - age_min * MIN, scheduler_id=None if state == B.PENDING_SUBMISSION else "42",
    )  # fmt: skip


# ----- the decision -------------------------------------------------------------------------


def test_nothing_to_run_plans_nothing():
    p = plan(backlog(), [], limits(), NOW)
    assert (p.num_nodes, p.wall_time_min, p.withdraw) == (0, 0, [])
    assert p.reason == "nothing to run"


def test_a_backlog_with_nothing_held_gets_a_batch_job_of_its_footprint_for_max_wall_minus_pad():
    p = plan(backlog(footprint=3.0), [], limits(), NOW)
    assert (p.num_nodes, p.wall_time_min) == (3, 355)
    assert p.reason == "backlog of 3 nodes exceeds 0 idle or coming nodes"


def test_a_fractional_footprint_rounds_up_to_whole_nodes():
    assert plan(backlog(footprint=2.25), [], limits(), NOW).num_nodes == 3


def test_nothing_is_planned_once_max_queued_batch_jobs_are_pending_queued_or_running():
    active = [batch(B.PENDING_SUBMISSION), batch(B.QUEUED), batch(B.RUNNING, origin="user")]
    p = plan(backlog(footprint=50.0), active, limits(max_queued=3), NOW)
    assert p.num_nodes == 0
    assert p.reason == "3 batch jobs queued or running (max_queued=3)"
    # ended ones do not count
    ended = [batch(B.FINISHED), batch(B.SUBMIT_FAILED), batch(B.FINISHED)]
    assert plan(backlog(footprint=4.0), active[:2] + ended, limits(max_queued=3), NOW).num_nodes == 2


def test_idle_nodes_are_held_nodes_minus_the_running_footprint():
    # 4 nodes held by a running batch job, 1.5 of them busy: 2.5 idle for a backlog of 5
    held = [batch(B.RUNNING, num_nodes=4)]
    p = plan(backlog(footprint=5.0, running=1.5), held, limits(), NOW)
    assert p.num_nodes == 3  # ceil(5 - 2.5)
    assert p.reason == "backlog of 5 nodes exceeds 2.5 idle or coming nodes"


def test_jobs_running_outside_batch_jobs_leave_no_negative_idle_nodes():
    # a launcher started by hand runs 3 nodes of jobs; no batch job holds them
    assert plan(backlog(running=3.0), [], limits(), NOW).num_nodes == 0
    assert plan(backlog(footprint=2.0, running=3.0), [], limits(), NOW).num_nodes == 2


def test_queued_and_pending_batch_jobs_count_as_coming_nodes():
    coming = [batch(B.QUEUED, num_nodes=2), batch(B.PENDING_SUBMISSION, num_nodes=1)]
    assert plan(backlog(footprint=4.0), coming, limits(), NOW).num_nodes == 1


def test_no_submission_while_queued_or_running_batch_jobs_cover_the_backlog():
    held = [batch(B.QUEUED, num_nodes=2), batch(B.RUNNING, num_nodes=4)]
    p = plan(backlog(footprint=3.0, running=3.0), held, limits(), NOW)
    assert p.num_nodes == 0
    assert p.reason == "backlog of 3 nodes is covered by 3 idle or coming nodes"
    # batch jobs on their way out do not cover anything
    leaving = [batch(B.PENDING_DELETION, num_nodes=8), batch(B.FINISHED, num_nodes=8)]
    assert plan(backlog(footprint=3.0), leaving, limits(), NOW).num_nodes == 3


def test_the_node_count_is_clamped_to_min_and_max_nodes():
    assert plan(backlog(footprint=1.0), [], limits(min_nodes=4), NOW).num_nodes == 4
    assert plan(backlog(footprint=100.0, largest=2), [], limits(max_nodes=8), NOW).num_nodes == 8


def test_the_batch_job_is_at_least_as_wide_as_the_widest_runnable_job():
    p = plan(backlog(footprint=3.0, largest=3), [batch(B.RUNNING, num_nodes=2)], limits(), NOW)
    assert p.num_nodes == 3  # the backlog minus idle is 1 node, but that job needs 3
    assert plan(backlog(footprint=1.5, largest=6), [], limits(), NOW).num_nodes == 6


def test_elastic_batch_jobs_queued_longer_than_max_queue_wait_are_withdrawn_not_user_ones():
    stale = batch(B.QUEUED, num_nodes=2, age_min=11)
    mine = [
        stale,
        batch(B.QUEUED, origin="user", age_min=60),  # a user's: never withdrawn
        batch(B.QUEUED, age_min=9),  # not waited long enough
        batch(B.RUNNING, age_min=60),  # started: stays
        batch(B.PENDING_SUBMISSION, age_min=60),  # not submitted yet: nothing to withdraw
    ]
    p = plan(backlog(footprint=5.0), mine, limits(max_queue_wait_min=10), NOW)
    assert p.withdraw == [stale.id]
    # the withdrawn batch job's nodes are not counted as coming: 5 - (1 + 1 + 1 + 1) held
    assert p.num_nodes == 1


def test_withdrawing_happens_even_when_nothing_is_submitted():
    stale = batch(B.QUEUED, age_min=30)
    p = plan(backlog(), [stale], limits(), NOW)
    assert (p.withdraw, p.num_nodes) == ([stale.id], 0)


def failed(age_min: float, origin: str = "elastic") -> BatchJob:
    return batch(B.SUBMIT_FAILED, origin=origin, age_min=age_min)


def test_max_failures_submission_failures_in_a_row_pause_it_for_pause_min():
    history = [batch(B.FINISHED, age_min=40), failed(3), failed(2), failed(1)]
    p = plan(backlog(footprint=2.0), history, limits(max_failures=3, pause_min=30), NOW)
    assert p.num_nodes == 0
    assert p.paused_until == NOW - 1 * MIN + 30 * MIN
    assert p.reason == "paused after 3 failed submissions in a row"


def test_it_resumes_after_pause_min():
    history = [failed(33), failed(32), failed(31)]
    assert paused_until(history, limits(max_failures=3, pause_min=30), NOW) is None
    p = plan(backlog(footprint=2.0), history, limits(max_failures=3, pause_min=30), NOW)
    assert (p.num_nodes, p.paused_until) == (2, None)


def test_a_success_among_the_last_submissions_means_no_pause():
    history = [failed(4), failed(3), batch(B.QUEUED, age_min=2), failed(1)]
    assert plan(backlog(footprint=2.0), history, limits(max_failures=3), NOW).paused_until is None
    # fewer failures than max_failures
    assert paused_until([failed(2), failed(1)], limits(max_failures=3), NOW) is None


def test_the_failures_of_user_batch_jobs_do_not_pause_it():
    history = [failed(3, "user"), failed(2, "user"), failed(1, "user")]
    assert plan(backlog(footprint=2.0), history, limits(max_failures=3), NOW).num_nodes == 2


def test_unfit_jobs_are_counted_and_not_chased():
    p = plan(backlog(unfit=4), [], limits(), NOW)
    assert (p.num_nodes, p.unfit) == (0, 4)
    p = plan(backlog(footprint=2.0, unfit=4), [], limits(), NOW)
    assert (p.num_nodes, p.unfit) == (2, 4)


# ----- backfill windows ---------------------------------------------------------------------


def window(nodes: int, minutes: int) -> BackfillWindow:
    return BackfillWindow(num_nodes=nodes, wall_time_min=minutes)


def test_the_largest_window_in_nodes_times_minutes_within_the_limits_is_chosen():
    lim = limits(min_nodes=2, max_nodes=8, min_wall_time_min=35, max_wall_time_min=120)
    windows = [window(4, 100), window(100, 40), window(6, 60), window(1, 1000), window(16, 20)]
    # 4 x 100 = 400; 100 nodes count as 8: 8 x 40 = 320; 6 x 60 = 360; 1 node and 20 minutes are too small
    assert choose_window(windows, lim) == window(4, 100)
    # a very long window counts as max_wall_time_min: 3 x 120 < 4 x 100 < 4 x 120
    assert choose_window([window(4, 100), window(3, 10_000)], lim) == window(4, 100)
    assert choose_window([window(4, 100), window(4, 10_000)], lim) == window(4, 10_000)


def test_a_window_of_zero_minutes_has_no_known_limit():
    lim = limits(max_wall_time_min=120, wall_time_pad_min=5)
    assert choose_window([window(2, 0), window(2, 100)], lim) == window(2, 0)
    p = plan(backlog(footprint=2.0), [], limits(use_backfill=True, max_wall_time_min=120), NOW, [window(2, 0)])
    assert (p.num_nodes, p.wall_time_min) == (2, 115)


def test_no_usable_window():
    lim = limits(min_nodes=2, min_wall_time_min=35)
    assert choose_window([], lim) is None
    assert choose_window([window(1, 100), window(4, 30)], lim) is None


def test_a_window_sizes_the_batch_job_with_the_pad_taken_off():
    lim = limits(use_backfill=True, max_nodes=8, max_wall_time_min=360, wall_time_pad_min=5)
    p = plan(backlog(footprint=10.0), [], lim, NOW, [window(3, 60), window(5, 50)])
    assert (p.num_nodes, p.wall_time_min) == (5, 45)
    # a window wider than needed: only what the backlog needs
    p = plan(backlog(footprint=2.0), [], lim, NOW, [window(50, 60)])
    assert (p.num_nodes, p.wall_time_min) == (2, 55)


def test_a_window_narrower_than_the_widest_runnable_job_is_not_used():
    lim = limits(use_backfill=True, max_nodes=8, max_wall_time_min=360, wall_time_pad_min=5)
    p = plan(backlog(footprint=4.0, largest=4), [], lim, NOW, [window(2, 60), window(4, 40)])
    assert (p.num_nodes, p.wall_time_min) == (4, 35)
    # no window fits it: the batch job goes to the queue for the usual wall time
    p = plan(backlog(footprint=4.0, largest=4), [], lim, NOW, [window(2, 300)])
    assert (p.num_nodes, p.wall_time_min) == (4, 355)


def test_windows_are_ignored_without_use_backfill():
    p = plan(backlog(footprint=2.0), [], limits(use_backfill=False), NOW, [window(2, 40)])
    assert p.wall_time_min == 355


def test_a_pad_that_leaves_no_time_is_refused_in_the_settings():
    with pytest.raises(ValueError, match=r"wall_time_pad_min: 5 must be smaller than min_wall_time_min \(5\)"):
        limits(min_wall_time_min=5, max_wall_time_min=5, wall_time_pad_min=5)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[BacklogStats, list[BatchJob], ElasticSettings, list[BackfillWindow]]:
    min_nodes = draw(st.integers(1, 16))
    max_nodes = draw(st.integers(min_nodes, 64))
    min_wall = draw(st.integers(1, 120))
    max_wall = draw(st.integers(min_wall, 720))
    lim = limits(
        min_nodes=min_nodes, max_nodes=max_nodes, min_wall_time_min=min_wall, max_wall_time_min=max_wall,
        wall_time_pad_min=draw(st.integers(0, min_wall - 1)), max_queued=draw(st.integers(1, 6)),
        use_backfill=draw(st.booleans()), max_failures=draw(st.integers(1, 4)),
    )  # fmt: skip
    runnable = draw(st.integers(0, 500))
    stats = BacklogStats(
        runnable=runnable,
        runnable_footprint=draw(st.floats(0.01, 1000.0)) if runnable else 0.0,
        largest_nodes=draw(st.integers(1, max_nodes)) if runnable else 0,
        running_footprint=draw(st.floats(0.0, 200.0)),
        unfit=draw(st.integers(0, 10)),
    )
    origins = st.sampled_from(["user", "elastic"])
    batches = [
        batch(draw(st.sampled_from(list(B))), draw(st.integers(1, 64)), draw(origins), draw(st.floats(0.0, 100.0)))
        for _ in range(draw(st.integers(0, 8)))
    ]
    windows = [window(draw(st.integers(0, 200)), draw(st.integers(0, 1000))) for _ in range(draw(st.integers(0, 4)))]
    return stats, batches, lim, windows


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_a_plan_stays_within_the_node_and_wall_time_limits(scenario):
    stats, batches, lim, windows = scenario
    p = plan(stats, batches, lim, NOW, windows)
    if p.num_nodes:
        assert lim.min_nodes <= p.num_nodes <= lim.max_nodes
        assert 1 <= p.wall_time_min <= lim.max_wall_time_min - lim.wall_time_pad_min
        assert p.num_nodes >= stats.largest_nodes
        assert stats.runnable > 0
    else:
        assert p.wall_time_min == 0
    assert p.unfit == stats.unfit
    assert set(p.withdraw) <= {b.id for b in batches if b.origin == "elastic" and b.state == B.QUEUED}


# ----- the service on a store, with a scheduler that is told what to say ---------------------


class FakeScheduler:
    name = "fake"
    commands: tuple[str, ...] = ()
    default_template = "#!/bin/bash\n{{ directives }}\n{{ launcher }}\n"

    def __init__(self, windows: list[BackfillWindow] | None = None, fail: bool = False) -> None:
        self.windows = windows or []
        self.fail = fail

    def directives(self, batch: BatchJob) -> list[str]:
        return []

    def submit(self, script: Path, cwd: Path) -> str:
        raise AssertionError("the elastic service never submits itself")

    def status(self, scheduler_ids: list[str]) -> dict:
        return {}

    def cancel(self, scheduler_id: str) -> None:
        pass

    def backfill(self) -> list[BackfillWindow]:
        if self.fail:
            raise SchedulerError("sinfo failed: slurm_load_partitions: Unable to contact slurm controller")
        return self.windows


async def positional_call(fn: Callable[..., Any], *args: Any) -> Any:
    """The daemon's store_call: positional arguments only, the function run in a thread."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SiteStore]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def service(store: SiteStore, scheduler: FakeScheduler | None = None, **elastic: Any) -> ElasticService:
    full = Settings()
    full.nodes.max_nodes = 8
    full.scheduler.default_queue = "debug"
    full.scheduler.default_project = "proj"
    full.elastic = limits(enabled=True, **elastic)
    return ElasticService(full, store, positional_call, scheduler or FakeScheduler())


def test_the_service_creates_an_elastic_batch_job_sized_to_the_backlog(store):
    make_jobs(store, 3)  # 3 nodes of footprint
    svc = service(store, max_nodes=8, job_mode="serial", filter_tags={})
    anyio.run(svc.step, NOW)
    [made] = store.batch_jobs()
    assert (made.num_nodes, made.wall_time_min, made.origin, made.state) == (3, 355, "elastic", B.PENDING_SUBMISSION)
    assert (made.queue, made.project, str(made.job_mode)) == ("debug", "proj", "serial")
    assert svc.detail == {
        "decision": "backlog of 3 nodes exceeds 0 idle or coming nodes", "runnable": 3, "unfit": 0,
        "paused_until": None, "decisions": 1,
    }  # fmt: skip
    # the next period sees its nodes coming and submits nothing more
    anyio.run(svc.step, NOW + 1)
    assert len(store.batch_jobs()) == 1
    assert svc.detail["decision"] == "backlog of 3 nodes is covered by 3 idle or coming nodes"
    assert svc.detail["decisions"] == 2


def test_the_service_reports_unfit_jobs_and_does_not_chase_them(store):
    make_jobs(store, 2, num_nodes=4)
    make_jobs(store, 1, wall_time_min=600.0)
    svc = service(store, max_nodes=2, max_wall_time_min=360, wall_time_pad_min=5)
    anyio.run(svc.step, NOW)
    assert store.batch_jobs() == []
    assert svc.detail["unfit"] == 3
    assert svc.detail["unfit_note"] == (
        "3 runnable job(s) need more than max_nodes=2 nodes or 355 minutes: the elastic queue will not run them"
    )


def test_the_service_filters_the_backlog_by_its_tags_and_gives_them_to_the_batch_job(store):
    make_jobs(store, 2, tags={"campaign": "b"})
    make_jobs(store, 1, tags={"campaign": "a"})
    svc = service(store, filter_tags={"campaign": "a"})
    anyio.run(svc.step, NOW)
    [made] = store.batch_jobs()
    assert (made.num_nodes, made.filter_tags) == (1, {"campaign": "a"})


def test_the_service_withdraws_its_stale_queued_batch_jobs(store):
    stale = store.create_batch_job(
        BatchJob(id="stale", num_nodes=1, wall_time_min=60, origin="elastic"), now=NOW - 3600
    )
    users = store.create_batch_job(BatchJob(id="users", num_nodes=1, wall_time_min=60), now=NOW - 3600)
    for b in (stale, users):
        store.update_batch_job(b.id, B.QUEUED, scheduler_id="1")
    anyio.run(service(store).step, NOW)
    assert store.get_batch_job("stale").state == B.PENDING_DELETION
    assert store.get_batch_job("stale").status_info == "withdrawn: queued longer than max_queue_wait_min"
    assert store.get_batch_job("users").state == B.QUEUED


@pytest.mark.parametrize("meanwhile", [[B.RUNNING], [B.RUNNING, B.FINISHED]], ids=["started", "ended"])
def test_a_stale_batch_job_that_moved_on_meanwhile_is_left_alone(store, meanwhile):
    store.create_batch_job(BatchJob(id="stale", num_nodes=1, wall_time_min=60, origin="elastic"), now=NOW - 3600)
    store.update_batch_job("stale", B.QUEUED, scheduler_id="1")

    async def racing_call(fn: Callable[..., Any], *args: Any) -> Any:
        if isinstance(fn, functools.partial) and fn.func == store.update_batch_job:
            for state in meanwhile:  # the scheduler service saw it start (and end) just now
                store.update_batch_job("stale", state)
        return await positional_call(fn, *args)

    svc = service(store)
    svc.call = racing_call
    anyio.run(svc.step, NOW)
    assert store.get_batch_job("stale").state == meanwhile[-1]


def test_the_service_uses_a_backfill_window_and_goes_on_when_the_query_fails(store):
    make_jobs(store, 6)
    anyio.run(service(store, FakeScheduler([window(4, 50)]), use_backfill=True).step, NOW)
    [made] = store.batch_jobs()
    assert (made.num_nodes, made.wall_time_min) == (4, 45)
    store.update_batch_job(made.id, B.SUBMIT_FAILED)
    anyio.run(service(store, FakeScheduler(fail=True), use_backfill=True).step, NOW)
    assert [b.num_nodes for b in store.batch_jobs([B.PENDING_SUBMISSION])] == [6]


def test_the_service_pauses_after_failed_submissions_and_says_until_when(store):
    make_jobs(store, 1)
    for i in range(2):
        b = store.create_batch_job(BatchJob(id=f"f{i}", num_nodes=1, wall_time_min=60, origin="elastic"), now=NOW - 60)
        store.update_batch_job(b.id, B.SUBMIT_FAILED, status_info="sbatch: error: invalid account")
    svc = service(store, max_failures=2, pause_min=10)
    anyio.run(svc.step, NOW)
    assert len(store.batch_jobs()) == 2
    assert svc.detail["paused_until"] == NOW - 60 + 600
    assert svc.detail["decision"] == "paused after 2 failed submissions in a row"


def test_the_service_keeps_to_the_site_limits(tmp_path):
    """[elastic] may allow more than the site's [nodes] / [scheduler] limits; the store keeps to those."""
    rules = SiteRules(nodes=NodeSettings(max_nodes=2), scheduler=SchedulerSettings(max_wall_time_min=60))
    store = SiteStore(tmp_path / "store.db", rules)
    store.put_apps(APPS)
    make_jobs(store, 4)
    svc = service(store, max_nodes=8)
    anyio.run(svc.step, NOW)
    assert store.batch_jobs() == []
    assert svc.detail["decision"].startswith("not submitted: ")
    assert "exceeds the site's max_nodes=2" in svc.detail["decision"]
    assert "exceeds [scheduler] max_wall_time_min=60" in svc.detail["decision"]


# ----- a real daemon with the local scheduler ------------------------------------------------

ELASTIC: dict[str, object] = {"nodes.cpus_per_node": 2, "nodes.max_nodes": 2, **ELASTIC_SETTINGS}


@pytest.fixture
def elastic_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonSite]:
    monkeypatch.delenv("BALSAMD_SITE", raising=False)
    monkeypatch.delenv("BALSAMD_RPC", raising=False)
    with new_site(tmp_path, ELASTIC) as made:
        made.command_app("Hello", "echo hello {{ name }}")
        yield made


def elastic_service(site: DaemonSite) -> Any:
    """The elastic queue's health as the daemon reports it (over RPC: quicker than the CLI)."""
    client = site.client()
    try:
        status = client.call("status")
    finally:
        client.close()
    [service] = [s for s in status.services if s.name == "elastic-queue"]
    assert service.healthy, service
    return service


def batch_states(site: DaemonSite) -> list[tuple[str, B]]:
    with site.store() as s:
        return [(b.origin, b.state) for b in s.batch_jobs()]


@pytest.mark.slow
def test_a_daemon_with_the_elastic_queue_runs_a_backlog_through_local_batch_jobs(elastic_site: DaemonSite):
    site = elastic_site
    site.start()
    wait_until(lambda: elastic_service(site).detail.get("decision") == "nothing to run", "the elastic queue looked")
    assert batch_states(site) == []

    jobs = site.create("Hello", 3, parameters={"name": "x"})
    site.create("Hello", 1, parameters={"name": "big"}, num_nodes=2)  # wider than [elastic] max_nodes: unfit
    for job_id in jobs:
        site.wait_state(job_id, "JOB_FINISHED")
    wait_until(lambda: all(state == B.FINISHED for _, state in batch_states(site)), "every batch job has ended")
    wait_until(lambda: elastic_service(site).detail["decision"] == "nothing to run", "the backlog is seen drained")
    made = batch_states(site)
    assert made and {origin for origin, _ in made} == {"elastic"}

    # more decisions with nothing runnable but the unfit job: nothing more is submitted
    decided = elastic_service(site).detail["decisions"]
    wait_until(lambda: elastic_service(site).detail["decisions"] >= decided + 2, "two more elastic decisions")
    assert batch_states(site) == made

    ran = json.loads(site.balsamd("queue", "ls", "--all", "--json").stdout)
    shapes = {(b["num_nodes"], b["wall_time_min"], b["job_mode"], b["state"]) for b in ran}
    assert shapes == {(1, 10, "serial", "finished")}
    assert {site.job(j).batch_job_id for j in jobs} <= {b["id"] for b in ran}
    services = {s["name"]: s for s in site.status()["services"]}
    assert services["scheduler (local)"]["healthy"] and services["scheduler (local)"]["restarts"] == 0
    elastic = services["elastic-queue"]
    assert (elastic["healthy"], elastic["restarts"]) == (True, 0)
    assert elastic["detail"].pop("decisions") >= decided + 2
    assert elastic["detail"] == {
        "decision": "nothing to run", "runnable": 0, "unfit": 1, "paused_until": None,
        "unfit_note": "1 runnable job(s) need more than max_nodes=1 nodes or 10 minutes: the elastic queue will "
        "not run them",
    }  # fmt: skip
    site.stop()
