"""The ``balsamd`` command, run the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COMMAND_TIMEOUT = 120.0


class CommandFailed(RuntimeError):
    """A ``balsamd`` command that exited non-zero; the message carries its output."""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without a site or transport choice of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_RPC")}
    env.update(extra)
    return env


def balsamd_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "balsamd", *args],
        capture_output=True, text=True, env=env or clean_env(), cwd=cwd, timeout=COMMAND_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise CommandFailed(f"balsamd {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc
