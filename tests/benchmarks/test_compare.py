"""benchmarks/compare.py: two commits measured alternately, each with its own code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worktrees() -> set[str]:
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list", "--porcelain"], capture_output=True, text=True)
    return {line for line in listed.stdout.splitlines() if line.startswith("worktree ")}


def test_a_commit_compared_with_itself_runs_each_side_each_round_and_reports_both() -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    rev = head.stdout.strip()
    before = worktrees()
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--base", rev, "--head", rev,
         "--only", "claim.single", "--rounds", "2", "--scale", "0.002", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    [result] = report["results"]
    assert result["name"] == "claim.single"
    assert len(result["base_values"]) == len(result["head_values"]) == 2
    assert result["base"] > 0 and result["head"] > 0 and result["head_vs_base"] > 0
    # the sides alternate which goes first from round to round
    assert [line.split("]")[0] for line in done.stderr.splitlines() if line.startswith("[")][:4] == [
        f"[base {rev}",
        f"[head {rev}",
        f"[head {rev}",
        f"[base {rev}",
    ]
    assert worktrees() == before  # its own trees are gone (others' runs may have theirs)
