"""A launcher whose job source is away warns now and then, not at every retry."""

from __future__ import annotations

import logging

import pytest

from balsamd.launch.leader.failures import WARN_EVERY_SEC, Failures


def test_failures_of_one_kind_are_logged_at_most_every_warn_period(caplog: pytest.LogCaptureFixture) -> None:
    failures = Failures(logging.getLogger("balsamd.launcher"))
    now = 100.0
    with caplog.at_level(logging.WARNING, logger="balsamd.launcher"):
        for _ in range(50):  # a report retried every step while the daemon restarts
            failures.warn("report", now, "state reports failed: %s", "daemon away")
            now += 0.05
        failures.warn("claim", now, "claim failed: %s", "daemon away")  # another kind is not held back
        now += WARN_EVERY_SEC
        failures.warn("report", now, "state reports failed: %s", "still away")
    assert [r.getMessage() for r in caplog.records] == [
        "state reports failed: daemon away",
        "claim failed: daemon away",
        "state reports failed: still away",
    ]
