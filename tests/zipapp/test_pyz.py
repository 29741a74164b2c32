"""balsamd.pyz runs the whole product with a bare python3: no virtual environment, nothing installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.bench_sync import PostgresServer, PostgresUnavailable
from tests.zipapp.conftest import BARE_PATH


def pyz(
    pyz_file: Path, *args: str, env: dict[str, str], timeout: float = 120, umask: int = -1
) -> subprocess.CompletedProcess[str]:
    """Run the pyz with a bare python3 (``umask`` -1: this process's)."""
    return subprocess.run(
        ["python3", str(pyz_file), *args], env=env, capture_output=True, text=True, timeout=timeout, umask=umask
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def wait_for(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_version_names_build_python_and_sqlite(built_pyz: Path, bare_env: dict[str, str]) -> None:
    out = ok(pyz(built_pyz, "--version", env=bare_env))
    assert out.startswith("balsamd 0.1.0 (build ")
    assert "(build dev)" not in out
    assert "Python 3." in out and "SQLite 3." in out


def test_the_pyz_runs_the_whole_flow_with_a_bare_interpreter(
    built_pyz: Path, bare_env: dict[str, str], tmp_path: Path
) -> None:
    server = PostgresServer()
    try:
        server.start()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        server.cleanup()
        if os.environ.get("CI") == "true":
            pytest.fail(f"this test needs a PostgreSQL server: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {exc}")
    site = tmp_path / "site"
    try:
        admin = server.dsn()
        ok(pyz(built_pyz, "central", "init", admin, env=bare_env))
        ok(pyz(built_pyz, "central", "add-site", admin, "zsite", "--role", "zsite_role", env=bare_env))
        ok(pyz(built_pyz, "site", "init", str(site), "--name", "zsite", "--scheduler", "local",
               "--central", server.dsn(user="zsite_role"), env=bare_env))  # fmt: skip
        settings = site / "settings.toml"
        text = settings.read_text()
        for old, new in (
            ("scheduler_period_sec = 10.0", "scheduler_period_sec = 0.5"),
            ("idle_ttl_sec = 300.0", "idle_ttl_sec = 1.0"),
            ("period_sec = 10.0", "period_sec = 1.0"),
        ):
            text = text.replace(old, new, 1)
        settings.write_text(text)
        run = lambda *a: ok(pyz(built_pyz, "--site", str(site), *a, env=bare_env))  # noqa: E731
        run("app", "create", "hello", "--command", "echo hello {{ name }}")
        (site / "apps" / "square.py").write_text(
            "from balsamd import ApplicationDefinition\n\n\n"
            "class Square(ApplicationDefinition):\n    def run(self, x):\n        return x * x\n"
        )
        for i in range(5):
            run("job", "create", "--app", "hello", "--workdir", f"h/{i}", "-p", f"name=n{i}")
        square = json.loads(run("job", "create", "--app", "Square", "--workdir", "sq", "-p", "x=9", "--json"))
        run("start")
        run("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--job-mode", "serial")

        def finished() -> bool:
            return json.loads(run("job", "ls", "--by-state", "--json")) == {"JOB_FINISHED": 6}

        wait_for("the batch job's launcher to finish every job", finished, timeout=90)
        wait_for(
            "the batch job to end",
            lambda: [b["state"] for b in json.loads(run("queue", "ls", "--all", "--json"))] == ["finished"],
        )
        assert "hello n3" in (site / "data" / "h" / "3" / "job.out").read_text()
        shown = json.loads(run("job", "show", square["id"], "--json"))
        assert shown["result"] == "81"

        import psycopg

        def synced() -> bool:
            with psycopg.connect(admin) as conn:
                rows = conn.execute("SELECT state, count(*) FROM balsamd.jobs WHERE site = 'zsite' GROUP BY state")
                return dict(rows.fetchall()) == {"JOB_FINISHED": 6}

        wait_for("the central database to hold every finished job", synced)
        status = json.loads(run("status", "--json"))
        assert status["healthy"], status
        assert {s["name"] for s in status["services"]} >= {"processing", "scheduler (local)", "sync"}
        run("stop")
        assert not (site / "daemon.json").exists()
    finally:
        subprocess.run(["python3", str(built_pyz), "--site", str(site), "stop"], env=bare_env, capture_output=True)
        server.cleanup()


def test_many_concurrent_first_runs_of_a_fresh_pyz_all_succeed(
    built_pyz: Path, bare_env: dict[str, str], tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh-copy.pyz"
    shutil.copy(built_pyz, fresh)
    extract = tmp_path / "extract"
    env = {**bare_env, "BALSAMD_EXTRACT_DIR": str(extract)}
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: pyz(fresh, "--version", env=env), range(16)))
    for done in results:
        ok(done)
    # exactly one complete copy, and no staging directory left behind
    assert [p.name for p in extract.iterdir()] == [next(extract.iterdir()).name]
    assert next(extract.iterdir()).name.startswith("fresh-copy.pyz_")


def test_extraction_is_node_local_by_default_and_private(
    built_pyz: Path, bare_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**bare_env, "TMPDIR": str(tmp_path)}
    ok(pyz(built_pyz, "--version", env=env))
    root = tmp_path / f"balsamd-{os.getuid()}"
    assert root.is_dir()
    assert root.stat().st_mode & 0o777 == 0o700
    assert any(p.name.startswith("balsamd.pyz_") for p in root.iterdir())


def test_a_foreign_extraction_directory_is_refused_with_a_way_out(
    built_pyz: Path, bare_env: dict[str, str], tmp_path: Path
) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    done = pyz(built_pyz, "--version", env={**bare_env, "BALSAMD_EXTRACT_DIR": str(foreign)})
    assert done.returncode != 0
    assert done.stderr.startswith(f"balsamd: will not run code from {foreign}: it belongs to user ")
    assert done.stderr.endswith("or set BALSAMD_EXTRACT_DIR to a directory of yours\n")


def test_the_build_is_reproducible(built_pyz: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pyz"
    subprocess.run(
        [sys.executable, "scripts/build_zipapp.py", "--output", str(again)],
        check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert again.read_bytes() == built_pyz.read_bytes()


def test_bare_path_has_no_virtual_environment() -> None:
    assert ".venv" not in BARE_PATH
