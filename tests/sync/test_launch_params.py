"""Launch parameters become options of the site's MPI launcher, run as its owner: a central user
can give only those the site allows, whichever way the request arrives."""

from __future__ import annotations

import psycopg
import pytest

from balsamd import ids
from balsamd.models import IntentOutcome, IntentStatus
from balsamd.validate import JobSpecError

from .conftest import Central, SyncSite

SQUARE = {"app": "Square", "workdir": "sq/1", "parameters": {"x": 2}}


@pytest.fixture
def alpha(make_site) -> SyncSite:
    site = make_site("alpha", {"launcher.allowed_launch_params": ["cpu-bind"]})
    site.sync()  # publishes its apps and rules
    return site


def test_the_client_refuses_a_flag_the_site_does_not_allow(central: Central, alpha: SyncSite) -> None:
    central.add_user("mallory")
    with central.remote("mallory") as conn, pytest.raises(JobSpecError) as refused:
        conn.jobs.create(site="alpha", **{**SQUARE, "launch_params": {"export": "LD_PRELOAD=/tmp/evil.so"}})
    assert "launch parameter 'export' is not allowed at this site (allowed: cpu-bind)" in str(refused.value)


def test_a_flag_written_straight_into_central_is_refused_by_the_site(central: Central, alpha: SyncSite) -> None:
    central.add_user("mallory")
    job_id = ids.new_id()
    with central.remote("mallory") as conn, conn.pg.transaction():
        spec = {**SQUARE, "id": job_id, "launch_params": {"outfile-pattern": "/home/owner/.bashrc"}}
        # the row and the intent a client would write, without the client's own check
        conn.pg.execute(
            "INSERT INTO balsamd.jobs (id, site, app, workdir, launch_params, state, created_at, updated_at) "
            "VALUES (%s, 'alpha', 'Square', 'sq/1', %s, 'CREATED', 0, 0)",
            (job_id, psycopg.types.json.Jsonb(spec["launch_params"])),
        )
        conn.pg.execute(
            "INSERT INTO balsamd.intents (id, site, kind, job_id, payload, created_at) "
            "VALUES ('evil', 'alpha', 'create', %s, %s, 0)",
            (job_id, psycopg.types.json.Jsonb({"jobs": [spec]})),
        )
    report = alpha.sync()
    assert (report.applied, report.rejected) == (0, 1)
    with central.remote("mallory") as conn:
        outcome = conn.jobs.intent_outcome("evil")
    assert outcome == IntentOutcome(
        status=IntentStatus.REJECTED,
        reason="job: launch parameter 'outfile-pattern' is not allowed at this site (allowed: cpu-bind); its "
        "owner may add it to [launcher] allowed_launch_params in settings.toml",
    )
    assert alpha.jobs_by_id() == {}


def test_an_allowed_flag_goes_through(central: Central, alpha: SyncSite) -> None:
    central.add_user("alice")
    with central.remote("alice") as conn:
        job = conn.jobs.create(site="alpha", **{**SQUARE, "launch_params": {"cpu-bind": "core"}})
        assert alpha.sync().applied == 1
    assert alpha.job(job.id).launch_params == {"cpu-bind": "core"}
