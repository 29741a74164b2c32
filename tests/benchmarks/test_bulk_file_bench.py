"""The file-creation benchmark runs end to end at a tiny size."""

from __future__ import annotations

import json

from tests.benchmarks.test_runner import run


def test_bulk_file_benchmark_runs_quick() -> None:
    proc = run("--quick", "--only", "bulk_file", "--json", scale="0.01")
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert (result["name"], result["error"]) == ("bulk_file.create", None)
    assert result["balsamd"]["median"] > 0 and result["baseline"]["median"] > 0
