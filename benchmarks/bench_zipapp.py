"""The single file: warm start of ``balsamd.pyz --version`` and its size.

The baseline is the same command from the installed package (the console script in this
environment), measured in the same run.  Goals from the issue: at most 0.3 s warm, at most
25 MB.  The pyz is built fresh in setup, so the numbers describe the current code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Benchmark, Context

ROOT = Path(__file__).resolve().parent.parent
BARE_PATH = "/usr/bin:/bin"


def _time(argv: list[str], env: dict[str, str] | None, runs: int = 5) -> float:
    """Median seconds of ``runs`` executions after one warm-up."""
    subprocess.run(argv, env=env, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def benchmarks(ctx: Context) -> list[Benchmark]:
    state: dict[str, Path] = {}
    python = shutil.which("python3", path=BARE_PATH) or sys.executable
    bare = {"PATH": BARE_PATH, "LANG": "C.UTF-8"}

    def build() -> None:
        if "pyz" in state:
            return
        output = ctx.scratch("zipapp-") / "balsamd.pyz"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "build_zipapp.py"), "--output", str(output)],
            check=True, capture_output=True,
        )  # fmt: skip
        state["pyz"] = output

    def pyz_version() -> float:
        return _time([python, str(state["pyz"]), "--version"], bare)

    def installed_version() -> float:
        script = Path(sys.executable).with_name("balsamd")
        return _time([str(script), "--version"], None)

    return [
        Benchmark(
            name="zipapp.version_warm", unit="s", measure=pyz_version, baseline=installed_version,
            goal_value=0.3, lower_is_better=True, setup=build,
            description="balsamd.pyz --version with a bare python3, warm; baseline: the installed console script",
        ),
        Benchmark(
            name="zipapp.size", unit="MB", measure=lambda: state["pyz"].stat().st_size / 1e6,
            goal_value=25.0, lower_is_better=True, setup=build, description="size of dist/balsamd.pyz",
        ),
    ]  # fmt: skip
