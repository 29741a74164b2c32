"""scripts/chaos.py as it is used: small rounds of a real campaign on a real site, daemon,
launchers and PostgreSQL, each killed with SIGKILL at random, every check passing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_sync import find_bindir
from benchmarks.chaos.campaign import PlanShape, plan
from benchmarks.chaos.rounds import transport_for
from benchmarks.chaos.site import Transport

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
JOBS = 150
WINDOW = 14


@pytest.fixture
def postgres() -> None:
    if find_bindir() is None:
        message = "the chaos runner needs PostgreSQL's server binaries (install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_small_rounds_under_every_kind_of_fault_lose_nothing_and_run_nothing_twice_at_once(
    postgres: None, tmp_path: Path
) -> None:
    # a seed whose rounds reach the store both ways: through the daemon's RPC and directly
    seed = next(s for s in range(100) if {transport_for(s, n) for n in range(ROUNDS)} == set(Transport))
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--rounds", str(ROUNDS), "--jobs", str(JOBS),
         "--window", str(WINDOW), "--mean-gap", "2.5", "--seed", str(seed), "--workdir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    report = json.loads(done.stdout)
    assert report["ok"]
    rounds = report["rounds"]
    assert [r["number"] for r in rounds] == list(range(ROUNDS))
    for r in rounds:
        assert r["jobs"] == JOBS
        assert r["converge_sec"] is not None
        # every job ran but those below a failing branch and, maybe, those killed before they started
        jobs = plan(seed, r["number"], PlanShape(jobs=JOBS, window=WINDOW)).jobs()
        assert r["findings"]["runs"] >= sum(1 for j in jobs if not j.reason and not j.killable)
        assert not any(r["failed_checks"].values())
    # every kind of process was killed for real, in every round
    for kind in ("daemon", "serial launcher", "mpi launcher", "postgres"):
        assert all(r["injected"][kind] >= 1 for r in rounds), (kind, [r["hits"] for r in rounds])
