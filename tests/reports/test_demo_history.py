"""`balsamd demo` leaves a site with a day of varied history, which every report shows."""

from __future__ import annotations

import datetime

import pytest

import balsamd
from balsamd.demo_history import BATCHES, HOURS
from balsamd.reports.window import WindowError
from tests.cli.conftest import Balsamd


def test_the_demo_leaves_a_day_of_history_that_every_report_has_something_of(demo, demo_site):
    history = demo.history
    assert history.batch_jobs == len(BATCHES)
    assert history.jobs > 500 and history.runs > 500 and 0 < history.failed_runs < history.runs
    with balsamd.connect(demo_site) as site:
        day = {"since": f"{HOURS}h"}
        throughput = site.reports.throughput(**day)
        assert sum(1 for n in throughput.finished if n) > 8  # spread over the day, not one burst
        utilization = site.reports.utilization(**day)
        assert utilization.utilization is not None and utilization.mean_busy_nodes > 1
        failures = site.reports.failures(**day)
        reasons = {(g.app, g.reason) for g in failures.groups}
        assert {("Simulate", "exit code 1"), ("Analyze", "exit code 2"),
                ("Analyze", "parent is FAILED; this job cannot run")} <= reasons  # fmt: skip
        assert any("mesh did not converge" in g.tail for g in failures.groups)
        runtimes = site.reports.runtimes(**day)
        assert {"Simulate", "Analyze", "Square"} <= {a.app for a in runtimes.apps}
        queue = site.reports.queue(**day)
        assert len(queue.batch_jobs) == len(BATCHES)
        assert all(t.wait_sec is not None and t.wait_sec > 0 for t in queue.batch_jobs)


def test_the_demo_command_says_what_it_left_and_exits_0(tmp_path):
    result = Balsamd(tmp_path)("demo", "--dir", str(tmp_path), "--jobs", "10", site=False)
    out = result.stdout
    assert "history: a day of made-up campaign in the same site: " in out
    assert f"in {len(BATCHES)} batch jobs" in out
    assert f"balsamd --site {tmp_path / 'demo-site'} report throughput" in out
    assert out.rstrip().endswith("result: OK")


def test_the_python_api_takes_datetimes_and_texts_and_names_a_wrong_bin(demo_site):
    with balsamd.connect(demo_site) as site:
        now = datetime.datetime.now()
        by_datetime = site.reports.throughput(since=now - datetime.timedelta(hours=6), until=now, bin=3600)
        by_text = site.reports.throughput(since="6h", bin="1h")
        assert by_datetime.bin_sec == by_text.bin_sec == 3600
        assert len(by_datetime.finished) in (6, 7)
        with pytest.raises(WindowError, match=r"^bin: 0 is not a width of bin"):
            site.reports.throughput(bin=0)
