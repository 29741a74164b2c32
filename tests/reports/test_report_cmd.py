"""`balsamd report ...` on the site the demo leaves, as a user types it: a table with a text
chart, --json with the series, --png with a plot, and clear refusals."""

from __future__ import annotations

import sys

import msgspec
import pytest

import balsamd
from balsamd.reports.records import Failures, Queue, Runtimes, Throughput, Utilization
from balsamd.states import JobState
from tests.cli.conftest import Balsamd

REPORTS = {"throughput": Throughput, "utilization": Utilization, "failures": Failures, "runtimes": Runtimes,
           "queue": Queue}  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run(demo_site) -> Balsamd:
    return Balsamd(demo_site)


def test_throughput_counts_every_job_that_finished_in_the_window_and_gives_the_rates(run, demo_site):
    report = msgspec.convert(run.json("report", "throughput", "--since", "2d"), Throughput)
    with balsamd.connect(demo_site) as site:
        finished = [e for e in site.events() if e.to_state == JobState.JOB_FINISHED]
    assert report.total == sum(report.finished) == len(finished)
    assert len(report.bin_starts) == len(report.finished)
    assert report.rate_avg_per_h == pytest.approx(report.total * 3600 / (report.until - report.since))
    text = run("report", "throughput", "--since", "2d").stdout
    assert f"{report.total} job(s) finished from " in text
    assert "jobs/h on average" in text and "BIN START" in text


def test_each_report_prints_a_table_of_what_the_demo_left(run):
    assert "of the allocated node-hours were busy" in run("report", "utilization").stdout
    failures = run("report", "failures").stdout
    assert "Simulate  exit code 1" in failures
    assert "ERROR: mesh did not converge" in failures  # the tail of the latest one's job.out
    runtimes = run("report", "runtimes").stdout
    apps = [line.split()[0] for line in runtimes.split("\n\n")[1].splitlines()[1:]]
    # the demo's MPI job runs only where it finds mpiexec
    assert [app for app in apps if app != "MpiHello"] == ["Analyze", "Noop", "Simulate", "Square"]
    queue = run("report", "queue").stdout
    assert queue.startswith("7 batch job(s) from ")
    assert "wait: median " in queue


@pytest.mark.parametrize("name", list(REPORTS))
def test_json_is_the_reports_series(run, name):
    report = msgspec.convert(run.json("report", name), REPORTS[name])
    # the last day; binned reports start their first bin on the bin's width (the hour, ...)
    assert 86400 - 1e-6 <= report.until - report.since < 86400 + getattr(report, "bin_sec", 1e-6)


def test_utilization_never_has_more_nodes_busy_than_batch_jobs_held_in_the_history(run):
    # until half an hour ago: the history's batch jobs ended before that, the demo's own runs
    # (outside any batch job) came after
    report = msgspec.convert(run.json("report", "utilization", "--until", "30m", "--bin", "15m"), Utilization)
    assert report.utilization is not None and 0.3 < report.utilization <= 1.0
    assert all(b <= a + 1e-6 for b, a in zip(report.busy_nodes, report.allocated_nodes, strict=True))


def test_filters_narrow_a_report_to_an_app_or_a_tag(run):
    only_sim = msgspec.convert(run.json("report", "runtimes", "--app", "Simulate"), Runtimes)
    assert [a.app for a in only_sim.apps] == ["Simulate"]
    tagged = msgspec.convert(run.json("report", "runtimes", "--tag", "kind=analysis"), Runtimes)
    assert [a.app for a in tagged.apps] == ["Analyze"]
    failures = msgspec.convert(run.json("report", "failures", "--app", "Noop"), Failures)
    assert failures.total == 0 and failures.groups == []
    timeouts = msgspec.convert(run.json("report", "failures", "--app", "Square"), Failures)
    assert {g.reason for g in timeouts.groups} == {"stopped: the launcher's wall time ran out"}


@pytest.mark.parametrize("name", list(REPORTS))
def test_png_writes_an_image_of_the_report(run, tmp_path, name):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"{name}.png"
    result = run("report", name, "--png", str(path))
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {path}" in result.stderr


def test_without_matplotlib_png_says_how_to_install_it(run, tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # what an environment without it imports
    path = tmp_path / "t.png"
    err = run.fails("report", "throughput", "--png", str(path))
    assert "--png needs matplotlib, which is not installed here: pip install 'balsamd[plots]'" in err
    assert not path.exists()


def test_a_png_that_cannot_be_written_is_a_usage_error_naming_the_option(run, tmp_path):
    pytest.importorskip("matplotlib")
    err = run.fails("report", "queue", "--png", str(tmp_path / "missing" / "q.png"), code=2)
    assert "Invalid value for --png: cannot write " in err
    assert "No such file or directory; give a file in a directory you may write to" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "Invalid value for --since: 'yesterday' is not a time"),
        (("--since", "1h", "--until", "2h"), "Invalid value for --since: must be before --until"),
        (("--bin", "5"), "Invalid value for --bin: '5' is not a duration"),
    ],
)
def test_a_window_that_cannot_be_read_is_a_usage_error_naming_the_option(run, args, message):
    err = run.fails("report", "throughput", *args, code=2)
    assert message in err
