"""Reports through the central database: the same series as at the site, from what sync
pushed, as each role may see it."""

from __future__ import annotations

import time

import msgspec
import pytest
from click.testing import CliRunner

import balsamd
from balsamd.cli import cli
from balsamd.demo_history import app_sources, write_history
from balsamd.reports.records import Failures, Throughput

from .conftest import Central, SiteMaker

WINDOW = {"since": "1d", "until": "1m"}


@pytest.fixture
def history_site(central: Central, make_site: SiteMaker):
    """A site with the demo's day of history in its store, pushed to central."""
    site = make_site("alpha", {"nodes.max_nodes": 4}, apps=False)
    for name, source in app_sources().items():
        (site.root / "apps" / name).write_text(source)
    site.command_app("Square", "echo {{ x }}")
    site.register_apps()
    with balsamd.connect(site.root) as local:
        write_history(local.store, local.layout, local.settings.scheduler, time.time())
    site.sync()
    return site


def _same(here, there) -> None:
    """Two reports with the same series (the window's ends are each side's clock)."""
    a, b = msgspec.to_builtins(here), msgspec.to_builtins(there)
    for report in (a, b):
        report.pop("since"), report.pop("until")
        report.pop("bin_starts", None)
    assert a.keys() == b.keys()
    for key, value in a.items():  # sums made in another order (SQL at the site) may differ in the last bits
        if isinstance(value, float) or (isinstance(value, list) and all(isinstance(v, float) for v in value)):
            assert value == pytest.approx(b[key]), key
        else:
            assert value == b[key], key


def test_central_reports_give_the_series_the_site_gives(central: Central, history_site) -> None:
    now = time.time()
    window = {"since": now - 86400, "until": now - 60}
    with balsamd.connect(history_site.root) as site, central.remote("postgres") as admin:
        for name in ("throughput", "utilization", "runtimes", "queue"):
            _same(getattr(site.reports, name)(**window), getattr(admin.reports, name)(**window))
        here, there = site.reports.failures(**window), admin.reports.failures(**window)
        assert there.total == here.total > 0
        assert [(g.app, g.reason, g.count) for g in there.groups] == [(g.app, g.reason, g.count) for g in here.groups]
        assert all(g.tail == "" for g in there.groups)  # the files are at the site
        assert {e.site for e in there.recent} == {"alpha"}
        assert admin.reports.throughput(**window, site="alpha").total == site.reports.throughput(**window).total
        assert admin.reports.throughput(**window, app="Simulate", tags={"kind": "simulation"}).total == (
            site.reports.throughput(**window, app="Simulate").total
        )


def test_a_central_user_sees_reports_of_their_own_jobs_only(central: Central, history_site) -> None:
    central.add_user("alice")
    with central.remote("alice") as alice:
        assert alice.reports.throughput().total == 0  # the history's jobs are the site's own
        assert alice.reports.failures().groups == []
        assert len(alice.reports.queue().batch_jobs) == 7  # batch jobs are visible to every user


def test_report_commands_work_through_central(central: Central, history_site) -> None:
    def laptop(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--central", central.dsn, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    report = msgspec.json.decode(laptop("report", "throughput", *_flags(), "--json"), type=Throughput)
    assert report.total > 500
    failures = msgspec.json.decode(laptop("report", "failures", *_flags(), "--site-name", "alpha", "--json"),
                                   type=Failures)  # fmt: skip
    assert failures.total > 0
    assert "SITE" in laptop("report", "queue", *_flags())


def _flags() -> list[str]:
    return ["--since", WINDOW["since"], "--until", WINDOW["until"]]
