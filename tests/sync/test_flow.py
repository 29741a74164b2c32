"""Two sites and one central database: jobs created remotely run at their site, results and
events come back, and users' kill / retry / update requests are applied once by the site.

Sync rounds run in the test's process (what the daemon's sync service runs), launchers too
(``run_launcher`` on the site until it is idle), so every step happens when the test says.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from balsamd.models import ClaimLimits, IntentOutcome, IntentStatus, JobState, StateUpdate
from balsamd.results import RemoteError
from balsamd.states import IllegalTransition
from balsamd.store.queries import claimed_jobs
from balsamd.sync.remote import RemoteJob

from .conftest import Central, SyncSite, assert_converged

APPLIED, REJECTED = IntentStatus.APPLIED, IntentStatus.REJECTED


def squares(xs: range, prefix: str = "sq") -> list[dict]:
    return [{"app": "Square", "workdir": f"{prefix}/{x}", "parameters": {"x": x}} for x in xs]


@pytest.fixture
def alpha(make_site) -> SyncSite:
    site = make_site("alpha")
    site.sync()
    return site


@pytest.fixture
def beta(make_site) -> SyncSite:
    site = make_site("beta")
    site.sync()
    return site


def test_remote_jobs_run_at_their_site_and_only_there(central: Central, alpha: SyncSite, beta: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        assert conn.sites() == ["alpha", "beta"]
        at_alpha = conn.jobs.bulk_create(squares(range(1, 4)), site="alpha")
        [at_beta] = conn.jobs.bulk_create(squares(range(10, 11)), site="beta")
        assert {str(j.refresh().state) for j in [*at_alpha, at_beta]} == {"CREATED"}

        report = alpha.sync()
        assert (report.applied, report.rejected, report.pushed_jobs) == (1, 0, 3)
        assert set(alpha.jobs_by_id()) == {j.id for j in at_alpha}
        # the same round pushed what the site made of them: claimable, with their events
        assert {str(j.refresh().state) for j in at_alpha} == {"PREPROCESSED"}
        assert str(at_beta.refresh().state) == "CREATED"

        beta.sync()
        assert set(beta.jobs_by_id()) == {at_beta.id}

        alpha.launch()
        beta.launch()
        alpha.sync()
        beta.sync()

        for x, job in zip(range(1, 4), at_alpha, strict=True):
            job.refresh()
            assert (job.site, str(job.state), job.return_code) == ("alpha", "JOB_FINISHED", 0)
            assert job.result() == {"square": x * x}
        assert at_beta.result(timeout=5) == {"square": 100}
        assert at_beta.site == "beta"
        path = [str(e.to_state) for e in at_beta.events()]
        assert path[0] == "READY" and path[-1] == "JOB_FINISHED" and "RUNNING" in path

    # jobs for one site never reached the other
    assert set(alpha.jobs_by_id()) == {j.id for j in at_alpha}
    assert set(beta.jobs_by_id()) == {at_beta.id}
    assert_converged(alpha)
    assert_converged(beta)


def test_as_completed_yields_each_job_once_as_it_finishes(central: Central, alpha: SyncSite, beta: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        first = conn.jobs.bulk_create(squares(range(1, 4)), site="alpha")
        second = conn.jobs.bulk_create(squares(range(4, 6)), site="beta")
        alpha.sync()
        beta.sync()
        alpha.launch()
        alpha.sync()

        waiting = conn.jobs.as_completed([*first, *second], timeout=30, poll=0.05)
        early = [next(waiting) for _ in first]
        assert sorted(j.id for j in early) == sorted(j.id for j in first)

        beta.launch()
        beta.sync()
        late = list(waiting)
        assert sorted(j.id for j in late) == sorted(j.id for j in second)
        assert {str(j.state) for j in [*early, *late]} == {"JOB_FINISHED"}

        # a job that never finishes ends the wait with a clear error
        [stuck] = conn.jobs.bulk_create(squares(range(7, 8)), site="beta")
        with pytest.raises(TimeoutError, match=r"1 job\(s\) not finished within 0\.2 s"):
            list(conn.jobs.as_completed([stuck], timeout=0.2, poll=0.05))


def test_kill_before_it_runs_is_applied_at_the_site_and_shown_centrally(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        doomed, kept = conn.jobs.bulk_create(squares(range(1, 3)), site="alpha")
        alpha.sync()
        [intent] = conn.jobs.kill([doomed])
        assert conn.jobs.intent_outcome(intent) is None  # not applied yet

        report = alpha.sync()
        assert (report.applied, report.rejected) == (1, 0)
        assert conn.jobs.intent_outcome(intent) == IntentOutcome(status=APPLIED, states={doomed.id: JobState.KILLED})
        assert alpha.job(doomed.id).state == "KILLED"
        assert doomed.refresh().state == "KILLED"

        summary = alpha.launch()
        assert summary.started == 1  # only the job that was not killed
        alpha.sync()
        assert kept.refresh().state == "JOB_FINISHED"
        assert doomed.refresh().state == "KILLED"
        assert alpha.path(doomed.id)[-1] == "KILLED" and "RUNNING" not in alpha.path(doomed.id)

        # killing a finished job is refused by the site, with the reason recorded
        [again] = conn.jobs.kill([kept])
        assert alpha.sync().rejected == 1
        refused = conn.jobs.intent_outcome(again)
        assert refused is not None and refused.status == REJECTED
        assert refused.reason == str(IllegalTransition(kept.id, JobState.JOB_FINISHED, JobState.KILLED))
    assert_converged(alpha)


def test_retry_of_a_failed_job_runs_it_again(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        job = conn.jobs.create("Flaky", "flaky/1", site="alpha")
        alpha.sync()
        alpha.launch()
        alpha.sync()
        assert job.refresh().state == "FAILED"
        assert job.attempts == 1
        with pytest.raises(RemoteError, match=r"^RuntimeError: first attempt fails\n"):
            job.result()

        [intent] = conn.jobs.retry([job])
        alpha.sync()
        assert conn.jobs.intent_outcome(intent) == IntentOutcome(
            status=APPLIED, states={job.id: JobState.RESTART_READY}
        )
        assert job.refresh().state == "RESTART_READY"

        assert alpha.launch().started == 1
        alpha.sync()
        assert job.refresh().state == "JOB_FINISHED"
        assert (job.attempts, job.result()) == (2, "second attempt")
        assert [str(e.to_state) for e in job.events()].count("RUNNING") == 2
    assert_converged(alpha)


def test_update_applies_before_the_start_and_is_refused_after(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        waiting, running, finished = conn.jobs.bulk_create(squares(range(1, 4)), site="alpha")
        alpha.sync()
        # a launcher session claims all three, starts two, finishes one and hands `waiting` back
        with alpha.store() as store:
            session = store.open_session(label="test").id
            limits = ClaimLimits(max_jobs=3)
            assert len(claimed_jobs(store.claim(session, limits), limits)) == 3
            now = time.time()
            store.update_states(session, [StateUpdate(job_id=j.id, state=JobState.RUNNING, ts=now)
                                          for j in (running, finished)])  # fmt: skip
            store.update_states(session, [StateUpdate(job_id=finished.id, state=JobState.RUN_DONE, ts=now + 1,
                                                      return_code=0)])  # fmt: skip
            store.release(session, [waiting.id])
        assert alpha.job(finished.id).state == "JOB_FINISHED"
        assert alpha.job(running.id).state == "RUNNING"

        ok = conn.jobs.update(waiting, parameters={"x": 7}, tags={"edited": "yes"})
        late = conn.jobs.update(running, parameters={"x": 8})
        done = conn.jobs.update(finished, parameters={"x": 9})
        unknown = conn.jobs.update(waiting, parameters={"y": 1})
        report = alpha.sync()
        assert (report.applied, report.rejected) == (1, 3)

        assert conn.jobs.intent_outcome(ok) == IntentOutcome(status=APPLIED)
        refused = "only jobs that have not started can be edited; no job was edited"
        assert conn.jobs.intent_outcome(late) == IntentOutcome(
            status=REJECTED, reason=f"job {running.id} is RUNNING; {refused}"
        )
        assert conn.jobs.intent_outcome(done) == IntentOutcome(
            status=REJECTED, reason=f"job {finished.id} is JOB_FINISHED; {refused}"
        )
        assert conn.jobs.intent_outcome(unknown) == IntentOutcome(
            status=REJECTED,
            reason=f"job {waiting.id}: unknown parameter(s) y for app Square (it takes: x); correct the name or "
            "leave it out; missing required parameter x: add -p x=VALUE",
        )
        assert alpha.job(waiting.id).parameters == {"x": 7}
        assert waiting.refresh().parameters == {"x": 7} and waiting.tags == {"edited": "yes"}
        assert running.refresh().parameters == {"x": 2}
        assert finished.refresh().parameters == {"x": 3}

        alpha.launch()  # runs `waiting` with its new parameters
        alpha.sync()
        assert waiting.result(timeout=5) == {"square": 49}
    assert_converged(alpha)


def test_a_create_the_site_refuses_fails_centrally_with_the_reason(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    # the site drops its Noop app; central still lists it until the next sync
    (alpha.root / "apps" / "noop.py").unlink()
    alpha.register_apps()
    with central.remote("alice") as conn:
        [job] = conn.jobs.bulk_create([{"app": "Noop", "workdir": "noop/1"}], site="alpha")
        [fine] = conn.jobs.bulk_create(squares(range(2, 3)), site="alpha")
        report = alpha.sync()
        assert (report.applied, report.rejected) == (1, 1)

        job.refresh()
        assert job.state == "FAILED"
        reason = (
            "job: unknown app 'Noop' (known: Flaky, Square); create it with `balsamd app create Noop --command ...`"
        )
        assert job.state_reason == f"refused by site alpha: {reason}"
        [intent] = central.rows("SELECT outcome FROM balsamd.intents WHERE job_id = %s", (job.id,))
        assert intent[0] == {"status": "rejected", "reason": reason}
        assert [j.id for j in conn.jobs.as_completed([job], timeout=5)] == [job.id]
        assert fine.refresh().state == "PREPROCESSED"
        # the removal reached central: the app is no longer offered for this site
        assert central.rows("SELECT name FROM balsamd.apps WHERE site = 'alpha' ORDER BY name") == [
            ("Flaky",),
            ("Square",),
        ]
    assert_converged(alpha, refused=1)


def test_malformed_intents_are_refused_and_never_block_the_site(central: Central, alpha: SyncSite) -> None:
    """Users write intents with SQL: whatever they write, the site keeps syncing."""
    central.add_user("alice")
    with central.remote("alice") as conn:
        [job] = conn.jobs.bulk_create(squares(range(1, 2)), site="alpha")
        alpha.sync()
        spec = {"app": "Square", "workdir": "w", "parameters": {"x": 1}}
        bad = {
            "no-id": ("create", {"jobs": [spec]}),
            "no-jobs": ("create", {}),
            "array": ("create", ["not", "an", "object"]),
            "params-not-object": ("create", {"jobs": [{**spec, "id": "01BAD", "parameters": [1, 2]}]}),
            "empty-update": ("update", {}),
            "update-not-object": ("update", {"parameters": "x=3"}),
            "bad-tags": ("update", {"tags": {"n": 1}}),
        }
        with conn.pg.transaction():
            for label, (kind, payload) in bad.items():
                conn.pg.execute(
                    "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
                    "VALUES (%s, 'alpha', %s, %s, %s, 0)",
                    (f"0-{label}", kind, job.id, psycopg.types.json.Jsonb(payload)),
                )
        [fine] = conn.jobs.bulk_create(squares(range(5, 6)), site="alpha")

        report = alpha.sync()
        assert (report.applied, report.rejected) == (1, len(bad))
        outcomes = dict(central.rows("SELECT id, outcome FROM balsamd.intents WHERE id LIKE '0-%%'"))
        assert {o["status"] for o in outcomes.values()} == {"rejected"}, outcomes
        assert outcomes["0-empty-update"]["reason"] == (
            f"job {job.id}: nothing to edit: give parameters, tags, data or resources"
        )
        assert outcomes["0-update-not-object"]["reason"] == (
            "update intent 0-update-not-object: only parameters, tags and data (as objects) and resources can be "
            "edited: Expected `object | null`, got `str` - at `$.parameters`"
        )
        assert fine.refresh().state == "PREPROCESSED"
        assert alpha.job(job.id).parameters == {"x": 1}
        assert set(alpha.jobs_by_id()) == {job.id, fine.id}
    assert_converged(alpha)


def test_remote_job_reads(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        made = conn.jobs.bulk_create(
            [{**spec, "tags": {"batch": str(n % 2)}} for n, spec in enumerate(squares(range(1, 5)))], site="alpha"
        )
        alpha.sync()
        assert conn.jobs.count(site="alpha") == 4
        assert conn.jobs.count(site="beta") == 0
        assert [j.id for j in conn.jobs.filter(tags={"batch": "1"})] == [made[1].id, made[3].id]
        assert conn.jobs.count(state="PREPROCESSED", app="Square") == 4
        assert isinstance(conn.jobs.get(made[0].id), RemoteJob)
        assert len(conn.jobs.filter(limit=2)) == 2


def test_jobs_removed_at_the_site_leave_central_with_their_events(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        gone, kept = conn.jobs.bulk_create(squares(range(1, 3)), site="alpha")
        alpha.sync()
        assert gone.events()
        with alpha.store() as store:
            assert store.delete([gone.id]).removed == [gone.id]
        report = alpha.sync()
        assert report.deleted_jobs == 1
        assert conn.jobs.count(site="alpha") == 1
        assert central.rows("SELECT count(*) FROM balsamd.events WHERE job_id = %s", (gone.id,)) == [(0,)]
        assert kept.refresh().events()
    assert_converged(alpha)
