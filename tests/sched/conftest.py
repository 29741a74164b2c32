"""A real single-node Slurm for the scheduler tests, brought up by scripts/slurm.sh."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from balsamd.sched.slurm import SlurmScheduler

SLURM_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm.sh"
SLURM_START_TIMEOUT = 900.0  # a first start installs the packages


def slurm_unavailable(reason: str) -> NoReturn:
    """Fail when CI is "true" (CI must test against a real Slurm), skip elsewhere."""
    message = f"real Slurm unavailable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def slurm_script(action: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SLURM_SCRIPT), action], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.fixture(scope="session")
def real_slurm() -> Iterator[SlurmScheduler]:
    """A SlurmScheduler talking to a running Slurm; started for the session if it was not up.

    A cluster this fixture started is stopped again at the end; one already running is left as
    it was.
    """
    if os.geteuid() != 0:
        slurm_unavailable("scripts/slurm.sh needs root")
    started = False
    if slurm_script("status").returncode != 0:
        try:
            done = slurm_script("start", timeout=SLURM_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            slurm_unavailable(f"scripts/slurm.sh start did not finish within {SLURM_START_TIMEOUT:g} s")
        if done.returncode != 0:
            slurm_unavailable(f"scripts/slurm.sh start failed:\n{done.stderr[-3000:]}")
        started = True
    yield SlurmScheduler()
    if started:
        slurm_script("stop")
