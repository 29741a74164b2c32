"""The site `balsamd demo` leaves, made once for the reports' tests (it holds a day of history)."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsamd.demo import DemoReport, run_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoReport:
    # the reports read its history; whether its live runs went well is the demo command's test
    report = run_demo(tmp_path_factory.mktemp("demo"), noop_jobs=20)
    assert report.history.runs > 0
    return report


@pytest.fixture(scope="session")
def demo_site(demo: DemoReport) -> Path:
    return demo.site
