"""A sync round that moves much tells how far it is, batch by batch, to a bar on a terminal."""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest

from balsamd.cli.sync import RoundBars
from balsamd.sync.engine import RoundReport, SyncEngine

from .conftest import Central, SyncSite

JOBS, BATCH = 250, 100


@pytest.fixture
def behind(central: Central, make_site) -> SyncSite:
    """A site with JOBS kill requests waiting in central, and what applying them changes to push."""
    site = make_site("alpha")
    site.sync()
    central.add_user("alice")
    with central.remote("alice") as conn:
        jobs = conn.jobs.bulk_create([{"app": "Noop", "workdir": f"n/{n}"} for n in range(JOBS)], site="alpha")
        site.sync()
        conn.jobs.kill(jobs)
    return site


def one_round(site: SyncSite, progress) -> RoundReport:
    settings = site.settings()
    with site.store() as store:
        return SyncEngine(store, settings.sync.central, site.name, settings, batch=BATCH, progress=progress).round()


def test_a_round_reports_each_batch_it_applies_then_pushes(behind: SyncSite) -> None:
    reports: list[RoundReport] = []
    final = one_round(behind, lambda r: reports.append(dataclasses.replace(r)))
    applying = [(r.applied, r.to_apply) for r in reports if not r.to_push]
    assert applying == [(100, JOBS), (200, JOBS), (JOBS, JOBS)]
    pushing = [(r.pushed_changes, r.to_push) for r in reports if r.to_push]
    assert len(pushing) > 1 and pushing == sorted(pushing)
    assert pushing[-1][0] == pushing[-1][1] == JOBS  # a change per kill applied
    assert (final.applied, final.lag) == (JOBS, 0)


def test_the_bars_are_drawn_on_a_terminal(behind: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        bars = RoundBars(BATCH)
        one_round(behind, bars)
        bars.close()
    drawn = os.read(leader, 1 << 20).decode()
    os.close(leader)
    assert "applying" in drawn and f"{JOBS}/{JOBS}" in drawn
    assert "pushing" in drawn and "jobs," in drawn
