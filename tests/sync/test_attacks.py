"""Attacks on the central database, each made for real with the roles' own connections: a site
role writing what it does not own, a user planting rows and intents to wedge another user's
site or to take over another user's jobs, and a result written to run code where its owner
reads it.  Each is refused where the rules say (docs/security.md), and nobody else's
sync or jobs are harmed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import msgspec
import psycopg
import pytest
from psycopg.types.json import Jsonb

from balsamd.ids import new_id
from balsamd.models import IntentOutcome, IntentStatus
from balsamd.results import ARRAY, UnreadableResult, pack_value
from balsamd.sync.schema import SITE_JOB_INSERT

from .conftest import Central, SiteMaker, SyncSite, assert_converged

REJECTED = IntentStatus.REJECTED
SQUARE = {"app": "Square", "workdir": "w", "parameters": {"x": 2}}


@pytest.fixture
def world(central: Central, make_site: SiteMaker) -> tuple[SyncSite, SyncSite]:
    """Sites alpha and beta, synced; users alice (honest) and mallory."""
    central.add_user("alice")
    central.add_user("mallory")
    alpha, beta = make_site("alpha"), make_site("beta")
    alpha.sync()
    beta.sync()
    return alpha, beta


def plant_job(central: Central, user: str, site: str, job_id: str) -> None:
    """A job row written with plain SQL, as any user may."""
    with central.connect(user) as conn:
        conn.execute(
            "INSERT INTO balsamd.jobs (id, site, app, workdir, state, created_at, updated_at) "
            "VALUES (%s, %s, 'Square', 'planted', 'CREATED', 0, 0)",
            (job_id, site),
        )


def plant_create(central: Central, user: str, site: str, cover: str, *job_ids: str, intent_id: str = "") -> str:
    """A create intent written with plain SQL, naming ``job_ids``; ``cover`` is a job of the
    user's at ``site`` (central accepts intents only about one's own jobs there)."""
    intent_id = intent_id or new_id()
    payload = {"jobs": [{**SQUARE, "id": job_id} for job_id in job_ids]}
    with central.connect(user) as conn:
        conn.execute(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
            "VALUES (%s, %s, 'create', %s, %s, 0)",
            (intent_id, site, cover, Jsonb(payload)),
        )
    return intent_id


def outcome(central: Central, intent_id: str) -> IntentOutcome:
    [(found,)] = central.rows("SELECT outcome FROM balsamd.intents WHERE id = %s", (intent_id,))
    return msgspec.convert(found, IntentOutcome)


# ----- a site role writes only what it owns ------------------------------------------------


def test_a_site_cannot_change_the_owner_or_the_site_of_a_job(central: Central, world) -> None:
    alpha, _beta = world
    with central.remote("alice") as conn:
        job = conn.jobs.create("Square", "sq/1", site="alpha", parameters={"x": 1})
    alpha.sync()
    denied = pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table jobs")
    with central.connect(alpha.role) as conn:
        for sql in (
            "UPDATE balsamd.jobs SET owner = 'mallory' WHERE id = %s",
            "UPDATE balsamd.jobs SET owner = current_user WHERE id = %s",
            "UPDATE balsamd.jobs SET site = 'beta' WHERE id = %s",
            "UPDATE balsamd.jobs SET id = 'X' || id WHERE id = %s",
        ):
            with denied:
                conn.execute(sql, (job.id,))
        # nor a new job in a user's name: the owner is not among the columns a site may insert
        columns = ", ".join(SITE_JOB_INSERT)
        with denied:
            conn.execute(
                f"INSERT INTO balsamd.jobs (owner, {columns}) SELECT 'alice', {columns} "
                "FROM balsamd.jobs WHERE id = %s",
                (job.id,),
            )
        # what its site may change of the jobs it runs, it still may
        assert conn.execute("UPDATE balsamd.jobs SET state_reason = 'x' WHERE id = %s", (job.id,)).rowcount == 1
        # intents stay as their users wrote them; a site only acknowledges them
        for sql in (
            "UPDATE balsamd.intents SET owner = 'mallory'",
            "UPDATE balsamd.intents SET payload = '{}'",
            "UPDATE balsamd.sites SET role = 'mallory'",
            "UPDATE balsamd.events SET job_id = 'x'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                conn.execute(sql)
    assert central.rows("SELECT owner, site FROM balsamd.jobs WHERE id = %s", (job.id,)) == [("alice", "alpha")]


def test_a_site_cannot_add_a_job_or_events_for_another_site(central: Central, world) -> None:
    alpha, beta = world
    with central.remote("alice") as conn:
        at_beta = conn.jobs.create("Square", "sq/1", site="beta", parameters={"x": 1})
    beta.sync()
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security")
    with central.connect(alpha.role) as conn:
        with refused:
            conn.execute(
                "INSERT INTO balsamd.jobs (id, site, app, workdir, state, created_at, updated_at) "
                "VALUES (%s, 'beta', 'Square', 'w', 'CREATED', 0, 0)",
                (new_id(),),
            )
        # an event of alpha's own naming a job of beta (alice's), or a job central does not hold
        for job_id in (at_beta.id, new_id()):
            with refused:
                conn.execute(
                    "INSERT INTO balsamd.events (site, store_id, id, job_id, to_state, ts) "
                    "VALUES ('alpha', 's', 1, %s, 'KILLED', 0)",
                    (job_id,),
                )
    with central.remote("alice") as conn:
        assert [str(e.to_state) for e in conn.jobs.get(at_beta.id).events()] == ["READY", "STAGED_IN", "PREPROCESSED"]


def test_a_result_written_to_run_code_where_its_owner_reads_it_runs_nothing(
    central: Central, world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The site runs alice's job, so it writes its result; whatever it writes is read as data."""
    alpha, _beta = world
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    with central.remote("alice") as conn:
        job = conn.jobs.create("Square", "sq/1", site="alpha", parameters={"x": 1})
    alpha.sync()

    from tests.test_results import Marker

    planted = {
        "pickle": (pickle.dumps(("ok", Marker())), "written by an older balsamd as a pickle, which is never unpickled"),
        "bogus dtype": (
            msgspec.msgpack.encode(["ok", msgspec.msgpack.Ext(ARRAY, msgspec.msgpack.encode(["|O8", [1], b"x" * 8]))]),
            "a numpy value of the unsupported dtype '|O8'",
        ),
        "truncated": (pack_value({"a": list(range(50))})[:-3], "it is not a balsamd result"),
    }
    for blob, says in planted.values():
        with central.connect(alpha.role) as conn:
            conn.execute("UPDATE balsamd.jobs SET result = %s, state = 'JOB_FINISHED' WHERE id = %s", (blob, job.id))
        with central.remote("alice") as conn:
            with pytest.raises(UnreadableResult) as raised:
                conn.jobs.get(job.id).result()
            assert str(raised.value).startswith(f"the result of job {job.id} cannot be read: ")
            assert says in str(raised.value)
        assert not marker.exists()
    assert os.environ["MARKER"] == str(marker)


# ----- a user cannot wedge another user's site, nor take over their jobs -------------------


def test_a_job_planted_at_another_site_with_a_create_naming_it_wedges_nobody(central: Central, world) -> None:
    """mallory plants a row at beta and asks alpha to create a job under its id: alpha would
    push that job over beta's row (refused by row-level security) in every round."""
    alpha, _beta = world
    with central.remote("alice") as conn:
        honest = conn.jobs.bulk_create([{**SQUARE, "workdir": f"a/{x}", "parameters": {"x": x}} for x in range(3)],
                                       site="alpha")  # fmt: skip
    with central.remote("mallory") as conn:
        cover = conn.jobs.create("Square", "m/1", site="alpha", parameters={"x": 1})
    victim = new_id()
    plant_job(central, "mallory", "beta", victim)
    intent = plant_create(central, "mallory", "alpha", cover.id, victim)

    report = alpha.sync()
    assert (report.applied, report.rejected, report.refused) == (2, 1, {})
    assert outcome(central, intent) == IntentOutcome(
        status=REJECTED, reason=f"job: id {victim} is taken in the central database by a job of another site"
    )
    assert victim not in alpha.jobs_by_id()
    assert central.rows("SELECT site, state FROM balsamd.jobs WHERE id = %s", (victim,)) == [("beta", "CREATED")]
    # alpha goes on syncing, and alice's jobs run and come back
    alpha.launch()
    alpha.sync()
    with central.remote("alice") as conn:
        assert [conn.jobs.get(j.id).result() for j in honest] == [{"square": x * x} for x in range(3)]
    assert_converged(alpha)


def test_a_row_planted_at_another_site_under_an_id_a_site_made_is_left_out_and_the_round_goes_on(
    central: Central, world
) -> None:
    """A row someone put at beta under the id of a job alpha has not pushed yet: alpha leaves
    that one job (and its events) out of central, says so, and pushes everything else."""
    alpha, beta = world
    [taken, fine] = alpha.create("Noop", 2)
    plant_job(central, "mallory", "beta", taken)
    with central.remote("alice") as conn:
        honest = conn.jobs.create("Square", "sq/3", site="alpha", parameters={"x": 3})

    report = alpha.sync()
    assert report.refused == {
        taken: "the central database holds a job of another site under its id; it is not pushed, nor its events"
    }
    assert central.rows("SELECT site, owner, workdir FROM balsamd.jobs WHERE id = %s", (taken,)) == [
        ("beta", "mallory", "planted")
    ]
    assert central.rows("SELECT count(*) FROM balsamd.events WHERE job_id = %s", (taken,)) == [(0,)]
    assert central.rows("SELECT site, state FROM balsamd.jobs WHERE id = %s", (fine,)) == [("alpha", "PREPROCESSED")]
    # later changes of the job are left out too, and the rest keeps flowing
    alpha.launch()
    assert alpha.job(taken).state == "JOB_FINISHED"
    shown = alpha.sync_cli().stdout  # `balsamd sync --once` says so too
    assert f"\n  job {taken} not pushed: the central database holds a job of another site under its id" in shown
    with central.remote("alice") as conn:
        assert conn.jobs.get(honest.id).result() == {"square": 9}
    assert central.rows("SELECT state FROM balsamd.jobs WHERE id = %s", (fine,)) == [("JOB_FINISHED",)]
    pushed = {e[0] for e in central.events("alpha", alpha.store_id())}
    assert pushed == {e[0] for e in alpha.event_rows() if e[1] != taken}
    assert beta.sync().refused == {}


def test_a_create_naming_another_users_job_is_rejected_and_their_job_unharmed(central: Central, world) -> None:
    alpha, beta = world
    with central.remote("alice") as conn:
        pending = conn.jobs.create("Square", "sq/1", site="alpha", parameters={"x": 1})  # not yet at alpha
        at_beta = conn.jobs.create("Square", "sq/2", site="beta", parameters={"x": 2})
    beta.sync()
    with central.remote("mallory") as conn:
        cover = conn.jobs.create("Square", "m/1", site="alpha", parameters={"x": 1})
    # ids sort first: applied before alice's own intent
    first = plant_create(central, "mallory", "alpha", cover.id, pending.id, intent_id="0" * 26)
    elsewhere = plant_create(central, "mallory", "alpha", cover.id, at_beta.id, intent_id="0" * 25 + "1")

    report = alpha.sync()
    assert (report.applied, report.rejected) == (2, 2)
    assert outcome(central, first) == IntentOutcome(
        status=REJECTED, reason=f"job: id {pending.id} is taken in the central database by a job mallory does not own"
    )
    assert outcome(central, elsewhere).reason == (
        f"job: id {at_beta.id} is taken in the central database by a job of another site"
    )
    # alice's jobs are hers, as she asked for them, and run
    assert alpha.job(pending.id).owner == "alice"
    alpha.launch()
    beta.launch()
    alpha.sync()
    beta.sync()
    with central.remote("alice") as conn:
        assert conn.jobs.get(pending.id).result() == {"square": 1}
        assert conn.jobs.get(at_beta.id).result() == {"square": 4}
        assert {e.to_state for e in conn.jobs.get(at_beta.id).events()} >= {"JOB_FINISHED"}
    # the rejections failed nothing of alice's in central (only the asker's own rows would be)
    rows = central.rows("SELECT site, owner, state FROM balsamd.jobs WHERE id IN (%s, %s) ORDER BY site",
                        (pending.id, at_beta.id))  # fmt: skip
    assert rows == [("alpha", "alice", "JOB_FINISHED"), ("beta", "alice", "JOB_FINISHED")]
    assert_converged(alpha)
    assert_converged(beta)


def test_users_write_rows_and_intents_only_as_themselves_about_their_own_jobs(central: Central, world) -> None:
    alpha, _beta = world
    with central.remote("alice") as conn:
        alices = conn.jobs.create("Square", "sq/1", site="alpha", parameters={"x": 1})
    alpha.sync()
    with central.remote("mallory") as conn:
        mine = conn.jobs.create("Square", "m/1", site="beta", parameters={"x": 1})
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security")
    with central.connect("mallory") as conn:
        with refused:  # a job in alice's name
            conn.execute(
                "INSERT INTO balsamd.jobs (id, site, owner, app, workdir, state, created_at, updated_at) "
                "VALUES (%s, 'alpha', 'alice', 'Square', 'w', 'CREATED', 0, 0)",
                (new_id(),),
            )
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # at a site that does not exist
            conn.execute(
                "INSERT INTO balsamd.jobs (id, site, app, workdir, state, created_at, updated_at) "
                "VALUES (%s, 'nowhere', 'Square', 'w', 'CREATED', 0, 0)",
                (new_id(),),
            )
        for kind, job_id, site in (
            ("kill", alices.id, "alpha"),  # alice's job
            ("create", alices.id, "alpha"),  # a create naming alice's job
            ("create", new_id(), "alpha"),  # a create without its job's row
            ("kill", mine.id, "alpha"),  # her own job, but at another site
        ):
            with refused:
                conn.execute(
                    "INSERT INTO balsamd.intents (id, site, kind, job_id, created_at) VALUES (%s, %s, %s, %s, 0)",
                    (new_id(), site, kind, job_id),
                )


def test_an_intent_about_a_job_its_author_does_not_own_is_rejected_by_the_site(central: Central, world) -> None:
    """Should central let one through (an administrator writing intents, a policy gone wrong),
    the site still checks the job's owner."""
    alpha, _beta = world
    with central.remote("alice") as conn:
        job = conn.jobs.create("Square", "sq/1", site="alpha", parameters={"x": 1})
    alpha.sync()
    made = {}
    for kind, payload in (("kill", {}), ("retry", {}), ("update", {"parameters": {"x": 5}})):
        made[kind] = new_id()
        central.rows(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, owner, created_at) "
            "VALUES (%s, 'alpha', %s, %s, %s, 'mallory', 0)",
            (made[kind], kind, job.id, Jsonb(payload)),
        )
    assert alpha.sync().rejected == 3
    for kind, intent_id in made.items():
        assert outcome(central, intent_id) == IntentOutcome(
            status=REJECTED,
            reason=f"{kind} intent {intent_id}: job {job.id} is not a job of mallory: only its owner may ask this",
        )
    assert (alpha.job(job.id).state, alpha.job(job.id).parameters) == ("PREPROCESSED", {"x": 1})
    assert_converged(alpha)
