"""Batch jobs from anywhere: a central user asks a site for a batch job, the site checks and
records it, its daemon submits it to the scheduler (here the local one, whose batch jobs are real
processes), its launchers run the user's jobs, and its states reach central.  A request the
site cannot take is refused with the reason, whichever way it was written; only who asked for a
batch job may remove it; nothing a user writes reaches a job script unchecked."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from balsamd import ids
from balsamd.models import BatchJobState, IntentOutcome, IntentStatus, JobMode, Partition
from balsamd.validate import Refused
from tests.daemon.conftest import wait_until

from .conftest import Central, SyncSite

B = BatchJobState
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")


@pytest.fixture
def alpha(make_site) -> SyncSite:
    site = make_site("alpha", {
        "nodes.max_nodes": 2, "scheduler.optional_params": ["reservation"], "scheduler.max_queued": 3,
        "daemon.scheduler_period_sec": 0.2, "launcher.idle_ttl_sec": 1.0, "launcher.mpiexec": MPIEXEC,
    })  # fmt: skip
    site.sync()  # publishes its apps and rules
    return site


def follow(conn, batch_id: str, seen: list[BatchJobState]) -> BatchJobState:
    """The batch job's state in central now, added to ``seen`` when it changed."""
    state = conn.batch_jobs.get(batch_id).state
    if not seen or seen[-1] != state:
        seen.append(state)
    return state


def test_a_remote_batch_job_is_submitted_runs_the_users_jobs_and_its_states_reach_central(
    central: Central, alpha: SyncSite
) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        jobs = conn.jobs.bulk_create([{"app": "Square", "workdir": f"sq/{x}", "parameters": {"x": x}}
                                      for x in range(3)], site="alpha")  # fmt: skip
        batch = conn.batch_jobs.create(site="alpha", num_nodes=1, wall_time_min=5, job_mode="serial",
                                       optional_params={"reservation": "resv-7"})  # fmt: skip
        assert (batch.state, batch.owner, batch.site) == (B.PENDING_SUBMISSION, "alice", "alpha")
        assert batch.status_info == "waiting for site alpha to take the request"
        alpha.start()
        seen: list[BatchJobState] = []
        wait_until(lambda: follow(conn, batch.id, seen) == B.FINISHED, f"batch job {batch.id} finished in central")
        for done in conn.jobs.as_completed(jobs, timeout=30):
            assert (done.state, done.batch_job_id) == ("JOB_FINISHED", batch.id)
        batch.refresh()
        assert batch.scheduler_id is not None and batch.start_time is not None and batch.end_time is not None
    # the local scheduler runs a batch job at once: central saw it running, then finished
    assert B.RUNNING in seen and seen[-1] == B.FINISHED
    assert seen == [s for s in (B.PENDING_SUBMISSION, B.QUEUED, B.RUNNING, B.FINISHED) if s in seen]
    with alpha.store() as store:
        at_site = store.get_batch_job(batch.id)
    assert (at_site.owner, at_site.optional_params) == ("alice", {"reservation": "resv-7"})
    script = (alpha.root / "batch" / f"{batch.id}.sh").read_text()
    assert "# optional parameter reservation=resv-7" in script.splitlines()


def test_partitions_run_a_launcher_each_in_their_own_mode_on_their_own_jobs(central: Central, alpha: SyncSite) -> None:
    # a run under mpiexec has PMI_RANK, a serial run does not: each job succeeds only in its mode
    alpha.command_app("Wide", 'test -n "$PMI_RANK"')
    alpha.command_app("Small", 'test -z "$PMI_RANK"')
    alpha.register_apps()
    alpha.sync()
    central.add_user("alice")
    with central.remote("alice") as conn:
        small = conn.jobs.bulk_create([{"app": "Small", "workdir": f"s/{n}", "tags": {"kind": "small"}}
                                       for n in range(3)], site="alpha")  # fmt: skip
        wide = conn.jobs.create("Wide", "w/0", site="alpha", tags={"kind": "wide"})
        batch = conn.batch_jobs.create(site="alpha", num_nodes=2, wall_time_min=5, partitions=[
            {"job_mode": "serial", "num_nodes": 1, "filter_tags": {"kind": "small"}},
            {"job_mode": "mpi", "num_nodes": 1, "filter_tags": {"kind": "wide"}},
        ])  # fmt: skip
        assert batch.partitions == [
            Partition(job_mode=JobMode.SERIAL, num_nodes=1, filter_tags={"kind": "small"}),
            Partition(job_mode=JobMode.MPI, num_nodes=1, filter_tags={"kind": "wide"}),
        ]
        alpha.start()
        finished = {j.id: j for j in conn.jobs.as_completed([*small, wide], timeout=60)}
        wait_until(lambda: batch.refresh().state == B.FINISHED, "the batch job finished in central")
    assert {j.id: (j.state, j.batch_job_id) for j in finished.values()} == {
        j.id: ("JOB_FINISHED", batch.id) for j in [*small, wide]
    }
    with alpha.store() as store:
        launchers = sorted(s.label.split(" on ")[0] for s in store.sessions() if s.batch_job_id == batch.id)
    assert launchers == ["mpi launcher", "serial launcher"]
    out = (alpha.root / "batch" / f"{batch.id}.out").read_text()
    assert sorted(re.findall(r"launcher finished .*: (\d+) started", out)) == ["1", "3"]


# ----- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"num_nodes": 3}, "--num-nodes 3 exceeds the site's max_nodes=2 (lower it, or raise [nodes] max_nodes "
         "in settings.toml)"),
        ({"optional_params": {"qos": "high"}}, "optional parameter 'qos' is not allowed at this site (allowed: "
         "reservation); its owner may add it to [scheduler] optional_params in settings.toml"),
        ({"num_nodes": 2,
          "partitions": [{"job_mode": "serial", "num_nodes": 2}, {"job_mode": "mpi", "num_nodes": 1}]},
         "partitions take 2 + 1 = 3 nodes, more than the batch job's num_nodes=2; shrink them or ask for more "
         "nodes"),
        ({"partitions": [{"job_mode": "gpu", "num_nodes": 1}]},
         "partitions[0].job_mode: 'gpu' is not a job mode; use one of mpi, serial"),
    ],
)  # fmt: skip
def test_a_request_the_site_cannot_take_is_refused_by_the_client_and_by_the_site(
    central: Central, alpha: SyncSite, fields: dict[str, object], problem: str
) -> None:
    central.add_user("alice")
    request = {"num_nodes": 1, "wall_time_min": 5, **fields}
    with central.remote("alice") as conn:
        with pytest.raises(Refused) as refused:
            conn.batch_jobs.create(site="alpha", **request)
        assert problem in str(refused.value)
        # the same request written straight into central, without the client's checks
        batch_id = ids.new_id()
        conn.execute(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
            "VALUES ('raw', 'alpha', 'batch_create', %s, %s, 0)",
            (batch_id, Jsonb(request)),
        )
        report = alpha.sync()
        assert (report.applied, report.rejected) == (0, 1)
        outcome = conn.batch_jobs.intent_outcome("raw")
        assert outcome is not None and outcome.status == IntentStatus.REJECTED
        assert problem in outcome.reason
        told = conn.batch_jobs.get(batch_id)
        assert told.state == B.SUBMIT_FAILED
        assert told.status_info == f"refused by site alpha: {outcome.reason}"
    with alpha.store() as store:
        assert store.batch_jobs() == []


def test_the_site_refuses_more_batch_jobs_than_its_max_queued_and_says_so(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        made = [conn.batch_jobs.create(site="alpha", num_nodes=1, wall_time_min=5) for _ in range(4)]
        assert alpha.sync().rejected == 1
        states = [b.refresh().state for b in made]
        assert states == [B.PENDING_SUBMISSION] * 3 + [B.SUBMIT_FAILED]
        assert "[scheduler] max_queued=3" in made[3].status_info


def test_only_who_asked_for_a_batch_job_may_remove_it(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    central.add_user("bob")
    with central.remote("alice") as alice, central.remote("bob") as bob:
        batch = alice.batch_jobs.create(site="alpha", num_nodes=1, wall_time_min=5)
        alpha.sync()
        assert bob.batch_jobs.get(batch.id).state == B.PENDING_SUBMISSION  # every user sees batch jobs
        with pytest.raises(Refused, match=f"batch job {batch.id} was not asked for by bob"):
            bob.batch_jobs.delete([batch.id])
        # central refuses an intent about another user's batch job
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute(
                "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
                "VALUES ('sneaky', 'alpha', 'batch_delete', %s, '{}', 0)",
                (batch.id,),
            )
        # and the site refuses one an administrator wrote in bob's name
        central.rows(
            "INSERT INTO balsamd.intents (id, site, owner, kind, job_id, payload, created_at) "
            "VALUES ('forged', 'alpha', 'bob', 'batch_delete', %s, '{}', 0)",
            (batch.id,),
        )
        alpha.sync()
        assert bob.batch_jobs.intent_outcome("forged") == IntentOutcome(status=IntentStatus.REJECTED, reason=(
            f"batch_delete intent forged: batch job {batch.id} was not asked for by bob: only who asked for it "
            "may remove it"))  # fmt: skip
        assert batch.refresh().state == B.PENDING_SUBMISSION

        [removal] = alice.batch_jobs.delete([batch])
        alpha.sync()
        assert alice.batch_jobs.intent_outcome(removal) == IntentOutcome(
            status=IntentStatus.APPLIED, batch_jobs={batch.id: B.FINISHED}
        )
        assert (batch.refresh().state, batch.status_info) == (B.FINISHED, "removed by user")
        assert [b.id for b in alice.batch_jobs.filter(site="alpha", state="finished", mine=True)] == [batch.id]


def test_a_request_not_yet_taken_can_be_withdrawn_by_its_asker(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        batch = conn.batch_jobs.create(site="alpha", num_nodes=1, wall_time_min=5)
        conn.batch_jobs.delete([batch])
        alpha.sync()  # the create is applied first, then the removal
        assert batch.refresh().state == B.FINISHED


# ----- attacks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"queue": "debug\ntouch {marker}"},
        {"project": "$(touch {marker})"},
        {"optional_params": {"reservation": "r1\n#SBATCH --wrap='touch {marker}'"}},
        {"optional_params": {"reservation": "`touch {marker}`"}},
        {"partitions": [{"job_mode": "serial", "num_nodes": 1, "filter_tags": {"k\n$(touch {marker})": "v"}}]},
    ],
)
def test_a_value_that_could_reach_a_shell_never_reaches_a_script(
    central: Central, alpha: SyncSite, tmp_path: Path, fields: dict[str, object]
) -> None:
    marker = tmp_path / "owned"
    planted = json.loads(json.dumps(fields).replace("{marker}", str(marker)))
    request = {"num_nodes": 1, "wall_time_min": 5, **planted}
    central.add_user("mallory")
    with central.remote("mallory") as conn:
        with pytest.raises(Refused):
            conn.batch_jobs.create(site="alpha", **request)
        conn.execute(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
            "VALUES ('evil', 'alpha', 'batch_create', %s, %s, 0)",
            (ids.new_id(), Jsonb(request)),
        )
        alpha.start()
        wait_until(lambda: conn.batch_jobs.intent_outcome("evil") is not None, "the site answered the request")
        outcome = conn.batch_jobs.intent_outcome("evil")
    assert outcome is not None and outcome.status == IntentStatus.REJECTED
    assert alpha.status()["services"]  # the daemon goes on
    with alpha.store() as store:
        assert store.batch_jobs() == []
    assert not (alpha.root / "batch").exists() or list((alpha.root / "batch").iterdir()) == []
    assert not marker.exists()
