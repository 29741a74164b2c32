"""A launcher whose job source is away warns now and then, not at every retry."""

from __future__ import annotations

import logging

import pytest

from balsamd.config import LauncherSettings
from balsamd.launch.leader.loop import WARN_EVERY_SEC, Launcher
from balsamd.models import JobMode


def test_failures_of_one_kind_are_logged_at_most_every_warn_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    launcher = Launcher(None, None, None, LauncherSettings(), JobMode.SERIAL, clock=lambda: now[0])  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="balsamd.launcher"):
        for _ in range(50):  # a report retried every step while the daemon restarts
            launcher._warn("report", "state reports failed: %s", "daemon away")
            now[0] += 0.05
        launcher._warn("claim", "claim failed: %s", "daemon away")  # another kind is not held back
        now[0] += WARN_EVERY_SEC
        launcher._warn("report", "state reports failed: %s", "still away")
    assert [r.getMessage() for r in caplog.records] == [
        "state reports failed: daemon away",
        "claim failed: daemon away",
        "state reports failed: still away",
    ]
