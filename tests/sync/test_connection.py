"""One API, local and remote: the same script runs against a site's directory and against the
central database (``balsamd.connection``), with the same outcomes once the site has acted."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import balsamd
from balsamd.connection import Connection
from balsamd.results import RemoteError
from tests.daemon.conftest import wait_until
from tests.sync.conftest import Central, SiteMaker, SyncSite


@pytest.fixture(params=["site", "central"])
def opened(
    request: pytest.FixtureRequest, central: Central, make_site: SiteMaker
) -> Iterator[tuple[Connection, SyncSite]]:
    site = make_site("alpha")
    site.start()
    wait_until(lambda: central.rows("SELECT 1 FROM balsamd.apps WHERE site = 'alpha'"), "the site publishes")
    if request.param == "site":
        conn: Connection = balsamd.connect(site.root)
    else:
        central.add_user("alice")
        conn = central.remote("alice")
    try:
        yield conn, site
    finally:
        conn.close()


def at_site(site: SyncSite, count: int) -> None:
    wait_until(lambda: len(site.jobs_by_id()) == count, f"the site holds {count} jobs")


@pytest.mark.slow
def test_the_same_calls_give_the_same_outcomes_locally_and_through_central(opened) -> None:
    conn, site = opened
    a = conn.jobs.create("Square", "sq/a", site="alpha", parameters={"x": 3})
    b, c = conn.jobs.bulk_create(
        [{"app": "Square", "workdir": "sq/b", "parameters": {"x": 4}},
         {"app": "Square", "workdir": "sq/c", "parameters": {"x": -1}}], site="alpha",
    )  # fmt: skip
    k = conn.jobs.create("Noop", "noop/k", site="alpha")
    at_site(site, 4)
    conn.jobs.update(b, parameters={"x": 5})
    conn.jobs.kill([k])
    wait_until(lambda: conn.jobs.count(site="alpha", state="KILLED") == 1, "the kill is seen")
    wait_until(lambda: conn.jobs.get(b.id).parameters == {"x": 5}, "the edit is seen")
    site.finish(site.start_launcher("--job-mode", "serial", "--idle-ttl", "0.5"))

    done = conn.jobs.wait([a, b, c, k], timeout=60)
    assert [j.id for j in done] == [a.id, b.id, c.id, k.id]
    assert [str(j.state) for j in done] == ["JOB_FINISHED", "JOB_FINISHED", "FAILED", "KILLED"]
    assert (done[0].result(), done[1].result()) == ({"square": 9}, {"square": 25})
    with pytest.raises(RemoteError) as raised:
        done[2].result()
    assert str(raised.value) == "ValueError: cannot square negative -1"
    assert {j.id for j in conn.jobs.as_completed([a, c], timeout=5)} == {a.id, c.id}

    assert conn.jobs.count(site="alpha", app="Square") == 3
    assert [j.id for j in conn.jobs.filter(site="alpha", state="FAILED")] == [c.id]
    assert [j.id for j in conn.jobs.filter(site="alpha", ids=[a.id, k.id], limit=1)] == [a.id]
    assert {"Square", "Flaky", "Noop"} <= {app.name for app in conn.apps.list(site="alpha")}
    wait_until(lambda: [str(e.to_state) for e in conn.events(a)][-1:] == ["JOB_FINISHED"], "a's events are seen")

    conn.jobs.delete([k])
    wait_until(lambda: conn.jobs.count(site="alpha", app="Noop") == 0, "the removal is seen")
    assert sorted(site.jobs_by_id()) == sorted([a.id, b.id, c.id])

    batch = site.balsamd(
        "queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--job-mode", "serial", "--json"
    )
    batch_id = json.loads(batch.stdout)["id"]
    wait_until(lambda: [x.id for x in conn.batch_jobs.filter(site="alpha")] == [batch_id], "the batch job is seen")

    asked = conn.batch_jobs.create(1, 5, site="alpha", job_mode="serial")
    wait_until(lambda: asked.id in [x.id for x in conn.batch_jobs.filter(site="alpha", mine=True)],
               "the batch job asked for is seen")  # fmt: skip
    assert [x.id for x in conn.batch_jobs.filter(site="alpha", ids=[batch_id, asked.id])] == [batch_id, asked.id]
    conn.batch_jobs.delete([asked])
    wait_until(lambda: str(conn.batch_jobs.get(asked.id, site="alpha").state) == "finished", "the removal is seen")
