"""The benchmark runner: its table and ratio math on fake benchmarks, and a tiny real claim run.

The runner is exercised as a script (the way it is used), in subprocesses: the top-level
``benchmarks`` package is not installed and this test package shares its name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "run.py"

FAKE_MODULE = """
import itertools

from benchmarks.common import Benchmark

_ours = iter([10.0, 30.0, 20.0])


def _crash():
    raise RuntimeError("boom")


def benchmarks(ctx):
    return [
        # medians 20 vs 40: ratio exactly at the goal passes
        Benchmark(name="fake.fast", unit="ops/s", measure=lambda: next(_ours),
                  baseline=lambda: 40.0, goal_ratio=0.5),
        # ratio 2 meets its goal but the absolute floor of 100 is missed
        Benchmark(name="fake.floor", unit="ops/s", measure=lambda: 50.0,
                  baseline=lambda: 25.0, goal_ratio=1.5, goal_value=100.0),
        # lower is better: ratio is baseline / balsamd = 2, and 2 ms is under the 3 ms ceiling
        Benchmark(name="fake.latency", unit="ms", measure=lambda: 2.0, baseline=lambda: 4.0,
                  goal_ratio=1.5, goal_value=3.0, lower_is_better=True),
        Benchmark(name="fake.nogoal", unit="ops/s", measure=lambda: 1500.0),
        Benchmark(name="fake.crash", unit="ops/s", measure=_crash, baseline=lambda: 1.0),
        Benchmark(name="other.sized", unit="n", measure=lambda: float(ctx.size(1000, quick=10))),
    ]
"""


def run(*args: str, scale: str = "1") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BALSAMD_BENCH_SCALE": scale}
    return subprocess.run(
        [sys.executable, str(RUN), *args], capture_output=True, text=True, env=env, timeout=90, cwd=ROOT
    )


@pytest.fixture
def fake_dir(tmp_path: Path) -> Path:
    (tmp_path / "bench_fake.py").write_text(FAKE_MODULE)
    (tmp_path / "not_a_bench.py").write_text("raise RuntimeError('must not be imported')\n")
    return tmp_path


def table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| metric"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_table_ratios_goals_and_exit_status(fake_dir: Path) -> None:
    proc = run("--path", str(fake_dir), "--only", "fake.fast", "fake.floor", "fake.latency", "fake.nogoal")
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert list(rows) == ["fake.fast", "fake.floor", "fake.latency", "fake.nogoal"]
    # unit, balsamd, baseline, ratio, goal, result
    assert rows["fake.fast"] == ["ops/s", "20 (10..30)", "40 (40..40)", "0.50", "ratio >= 0.5", "pass"]
    assert rows["fake.floor"][3:] == ["2.00", "ratio >= 1.5, >= 100 ops/s", "miss"]
    assert rows["fake.latency"][3:] == ["2.00", "ratio >= 1.5, <= 3 ms", "pass"]
    assert rows["fake.nogoal"] == ["ops/s", "1.5k (1.5k..1.5k)", "-", "-", "-", "-"]
    assert "round 3/3" in proc.stderr


def test_json_output(fake_dir: Path) -> None:
    proc = run("--path", str(fake_dir), "--only", "fake", "--rounds", "3", "--json")
    assert proc.returncode == 1  # fake.crash raised
    doc = json.loads(proc.stdout)
    results = {r["name"]: r for r in doc["results"]}
    fast = results["fake.fast"]
    assert fast["balsamd"] == {"median": 20.0, "min": 10.0, "max": 30.0, "values": [10.0, 30.0, 20.0]}
    assert fast["ratio"] == 0.5
    assert fast["result"] == "pass"
    assert results["fake.floor"]["result"] == "miss"
    assert results["fake.nogoal"]["baseline"] is None
    crash = results["fake.crash"]
    assert crash["result"] == "error"
    assert "boom" in crash["error"]
    assert doc["settings"]["rounds"] == 3


def test_crash_is_reported_and_exits_nonzero(fake_dir: Path) -> None:
    proc = run("--path", str(fake_dir), "--only", "fake.crash")
    assert proc.returncode == 1
    assert table_rows(proc.stdout)["fake.crash"][-1] == "error"
    assert "RuntimeError: boom" in proc.stderr


def test_quick_and_scale_reach_the_module(fake_dir: Path) -> None:
    proc = run("--path", str(fake_dir), "--only", "other", "--quick", "--json", scale="0.5")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["balsamd"]["values"] == [5.0]  # one round, quick size 10 at half scale


def test_unknown_name_is_a_usage_error(fake_dir: Path) -> None:
    proc = run("--path", str(fake_dir), "--only", "nosuch")
    assert proc.returncode == 2
    assert "fake.fast" in proc.stderr


def test_claim_benchmark_runs_quick() -> None:
    proc = run("--quick", "--only", "claim", "--json", scale="0.005")
    assert proc.returncode == 0, proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {"claim.single", "claim.batch1000"}
    for r in results.values():
        assert r["error"] is None
        assert r["balsamd"]["median"] > 0 and r["baseline"]["median"] > 0
        assert r["result"] in ("pass", "miss")


def test_rpc_flood_benchmark_runs_quick() -> None:
    proc = run("--quick", "--only", "rpc_flood", "--json", scale="0.01")
    assert proc.returncode == 0, proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {"rpc_flood.ping_median", "rpc_flood.ping_p99", "rpc_flood.rss_growth"}
    for r in results.values():
        assert r["error"] is None
        assert r["balsamd"]["median"] >= 0 and r["baseline"]["median"] >= 0
    assert "connections made" in proc.stderr


def test_transfers_benchmark_runs_quick() -> None:
    """The service stages every file into its job's workdir over the private sshd, and one
    plain rsync brings the same tree."""
    proc = run("--quick", "--only", "transfers.stage_in", "--json", "--rounds", "1", scale="0.01")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["name"] == "transfers.stage_in" and result["error"] is None
    assert result["balsamd"]["median"] > 0 and result["baseline"]["median"] > 0


def test_transfer_work_benchmark_runs_quick() -> None:
    """Each look finds exactly the due items, beside jobs whose outbound items wait and beside
    jobs without items."""
    proc = run("--quick", "--only", "transfers.work_look", "--json", "--rounds", "1", scale="0.01")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["name"] == "transfers.work_look" and result["error"] is None
    assert result["balsamd"]["median"] > 0 and result["baseline"]["median"] > 0
