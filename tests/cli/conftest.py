"""A fresh site per test and a helper that runs ``balsamd`` in-process as a user types it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import balsamd
from balsamd.cli import cli
from balsamd.models import ClaimLimits, Session, StateUpdate
from balsamd.site import init_site
from balsamd.states import JobState
from balsamd.store.queries import claimed_jobs


def set_nodes(site: Path, cpus: int = 4, gpus: int = 0, max_nodes: int = 2) -> None:
    """Give the site a fixed node shape (init_site writes this host's CPU count)."""
    path = site / "settings.toml"
    text = path.read_text()
    for key, value in (("cpus_per_node", cpus), ("gpus_per_node", gpus), ("max_nodes", max_nodes)):
        text, n = re.subn(rf"(?m)^{key} = \d+", f"{key} = {value}", text, count=1)
        assert n == 1, key
    path.write_text(text)


class Balsamd:
    """``run("job", "ls")`` is ``balsamd --site SITE job ls``; checks the exit code."""

    def __init__(self, site: Path) -> None:
        self.site = site

    def __call__(self, *args: str, code: int = 0, site: bool = True, env: dict[str, str] | None = None) -> Result:
        argv = ["--site", str(self.site), *args] if site else list(args)
        result = CliRunner().invoke(cli, argv, prog_name="balsamd", catch_exceptions=False, env=env)
        assert result.exit_code == code, (
            f"exit {result.exit_code}, wanted {code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.stderr == ""
        return json.loads(result.stdout)

    def fails(self, *args: str, code: int = 1, site: bool = True) -> str:
        """Run a command that must fail; returns its stderr, checking nothing went to stdout.
        The site an error names itself by (``Error: site PATH: ...``) is left out: tests of a
        message compare what it says (test_errors_name_the_site_they_come_from checks the name)."""
        result = self(*args, code=code, site=site)
        assert result.stdout == ""
        return result.stderr.replace(f"Error: site {self.site}: ", "Error: ", 1)

    def job(self, workdir: str, name: str = "a", *extra: str) -> str:
        """Create a job of the hello app; returns its id."""
        return self.json("job", "create", "--app", "hello", "--workdir", workdir, "-p", f"name={name}", *extra)["id"]


@pytest.fixture(autouse=True)
def _no_outside_site(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BALSAMD_SITE", raising=False)
    # an unexpected exception reaches the test with its traceback instead of one line
    monkeypatch.setenv("BALSAMD_DEBUG", "1")


@pytest.fixture
def site_path(tmp_path: Path) -> Path:
    root = init_site(tmp_path / "site", name="testsite").root
    set_nodes(root)
    return root


@pytest.fixture
def run(site_path: Path) -> Balsamd:
    return Balsamd(site_path)


@pytest.fixture
def hello(run: Balsamd) -> Balsamd:
    """The site with a command app ``hello`` running ``echo {{ name }}``."""
    run("app", "create", "hello", "--command", "echo {{ name }}")
    return run


@pytest.fixture
def hold(site_path: Path):
    """hold(job_id): bind a runnable job to a launcher session, as a launcher claiming it would."""

    def hold(job_id: str) -> Session:
        with balsamd.connect(site_path) as s:
            session = s.store.open_session(label="test")
            limits = ClaimLimits()
            claimed = [j.id for j in claimed_jobs(s.store.claim(session.id, limits), limits)]
            assert job_id in claimed
            s.store.release(session.id, [i for i in claimed if i != job_id])
        return session

    return hold


@pytest.fixture
def run_to(site_path: Path, hold):
    """run_to(job_id, *states): claim a job, report it RUNNING then each state; returns where
    it settled (the app's default hooks move it on)."""

    def run_to(job_id: str, *states: JobState) -> JobState:
        session = hold(job_id)
        with balsamd.connect(site_path) as s:
            updates = [StateUpdate(job_id=job_id, state=JobState.RUNNING, ts=1.0)]
            updates += [StateUpdate(job_id=job_id, state=st, ts=2.0 + i, return_code=1) for i, st in enumerate(states)]
            outcome = s.store.update_states(session.id, updates)
            assert outcome.rejected == {}
            return s.store.get(job_id).state

    return run_to
