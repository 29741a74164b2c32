"""The chaos runner's fault schedule and campaign: pure functions of the seed and the round."""

from __future__ import annotations

from collections import Counter

from balsamd.lifecycle import PARENT_FAILED
from balsamd.states import JobState
from benchmarks.chaos.campaign import DAG_SIZE, PYTHON_APP, Lane, PlanShape, levels, plan
from benchmarks.chaos.schedule import Blast, FaultKind, ScheduleShape, schedule


def test_a_seed_and_a_round_always_give_the_same_faults_and_other_rounds_other_ones() -> None:
    shape = ScheduleShape(window=30.0, mean_gap=2.5)
    assert schedule(7, 3, shape) == schedule(7, 3, shape)
    assert schedule(7, 3, shape) != schedule(7, 4, shape)
    assert schedule(7, 3, shape) != schedule(8, 3, shape)


def test_every_kind_is_aimed_at_in_every_round_at_times_inside_the_window() -> None:
    shape = ScheduleShape(window=20.0, lead=2.0, mean_gap=4.0)
    for round_no in range(20):
        faults = schedule(1, round_no, shape)
        assert set(Counter(f.kind for f in faults)) == set(FaultKind)
        times = [f.at for f in faults]
        assert times == sorted(times)
        assert all(2.0 <= t <= 20.0 for t in times)


def test_only_the_daemon_and_postgres_come_back_after_a_pause_and_only_launchers_have_a_blast_radius() -> None:
    shape = ScheduleShape(daemon_down=(0.2, 2.0), postgres_down=(0.5, 3.0))
    faults = [f for n in range(10) for f in schedule(5, n, shape)]
    for f in faults:
        if f.kind == FaultKind.DAEMON:
            assert 0.2 <= f.down_for <= 2.0 and f.blast == Blast.LEADER
        elif f.kind == FaultKind.POSTGRES:
            assert 0.5 <= f.down_for <= 3.0 and f.blast == Blast.LEADER
        else:
            assert f.down_for == 0.0
    launchers = [f for f in faults if f.kind in (FaultKind.SERIAL, FaultKind.MPI)]
    assert {f.blast for f in launchers} == set(Blast)


def test_a_run_limited_to_some_kinds_aims_only_at_those() -> None:
    faults = schedule(2, 0, ScheduleShape(kinds=(FaultKind.POSTGRES,), mean_gap=5.0))
    assert faults and {f.kind for f in faults} == {FaultKind.POSTGRES}
    assert schedule(2, 0, ScheduleShape(kinds=())) == []


def test_a_campaign_has_the_jobs_asked_for_each_kind_of_job_and_waves_through_central() -> None:
    shape = PlanShape(jobs=2000, window=30.0, waves=8)
    campaign = plan(4, 1, shape)
    jobs = campaign.jobs()
    assert len(jobs) == 2000
    assert len({j.key for j in jobs}) == 2000
    assert plan(4, 1, shape) == campaign
    kinds = Counter((j.app, j.lane) for j in jobs)
    assert kinds[PYTHON_APP, Lane.SERIAL] > 200
    assert kinds["Marked", Lane.MPI] >= 8
    assert len(campaign.waves) == 8
    for number, wave in enumerate(campaign.waves):
        assert 0 < wave.at <= 30.0
        assert {j.wave for j in wave.jobs} == {number}
        assert any(j.lane == Lane.MPI for j in wave.jobs)
    # each wave but the first kills the victim of the wave before; only those are killable
    killed = [k for wave in campaign.waves for k in wave.kills]
    assert killed == [f"w{n}-victim" for n in range(7)]
    assert sorted(j.key for j in jobs if j.killable) == sorted(killed)
    # a few runs outlive a launcher's session
    assert any(j.parameters["nap"] == f"{shape.long_nap:g}" for j in jobs if j.app == "Marked")


def test_every_dag_fans_in_and_its_failing_branch_fails_every_descendant_naming_a_parent() -> None:
    campaign = plan(4, 1, PlanShape(jobs=600))
    dags = [j for j in campaign.site if j.key.startswith("d")]
    assert len(dags) == 2 * DAG_SIZE
    failed = {j.key: j for j in dags if j.expect == JobState.FAILED}
    assert {k.split("-")[1] for k in failed} == {"bad", "badkid", "badgrand", "badjoin"}
    for key, job in failed.items():
        assert job.reason == ("" if key.endswith("-bad") else PARENT_FAILED)
    assert any(len(j.parents) == 2 and j.expect == JobState.JOB_FINISHED for j in dags)  # the fan-in
    # created level by level, every job after its parents
    seen: set[str] = set()
    for level in levels(campaign.site):
        assert all(p in seen for j in level for p in j.parents)
        seen.update(j.key for j in level)
    assert [j.key for level in levels(campaign.site) for j in level] == [j.key for j in campaign.site]
