"""The installed ``balsamd`` script and ``python -m balsamd``, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("balsamd")


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_DEBUG")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_console_script_end_to_end(tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert run(str(SCRIPT), "site", "init", str(site), cwd=tmp_path).returncode == 0
    made = run(str(SCRIPT), "app", "create", "hello", "--command", "echo {{ name }}", cwd=site)
    assert made.returncode == 0, made.stderr
    created = run(str(SCRIPT), "job", "create", "--app", "hello", "--workdir", "w", "-p", "name=a", "--json", cwd=site)
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    listed = run(str(SCRIPT), "--site", str(site), "job", "ls", "--json", cwd=tmp_path)
    assert [j["id"] for j in json.loads(listed.stdout)] == [job["id"]]
    failed = run(str(SCRIPT), "job", "show", "7ZZZ", cwd=site)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr == f"Error: site {site}: no job with id 7ZZZ (list jobs with `balsamd job ls`)\n"


def test_python_dash_m(tmp_path: Path) -> None:
    result = run(sys.executable, "-m", "balsamd", "job", "ls", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: no balsamd site found in {tmp_path.resolve()} or its parents")
    assert run(sys.executable, "-m", "balsamd", "--help", cwd=tmp_path).stdout.startswith(
        "Usage: balsamd [OPTIONS] COMMAND"
    )
