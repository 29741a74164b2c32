"""The reports benchmark runs (at a tiny scale): its store builder writes a history the report
reads back whole, and both sides of the comparison check what they counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reports_benchmark_runs_quick(tmp_path) -> None:
    env = {**os.environ, "BALSAMD_BENCH_SCALE": "0.002", "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "reports", "--rounds", "1", "--json"],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {"reports.throughput_2k.week", "reports.throughput_2k.day", "reports.utilization_2k.day"}
    assert all(r["result"] != "error" for r in results.values())
