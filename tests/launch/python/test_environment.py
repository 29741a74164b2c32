"""A warm worker's environment: each job gets its variables, and nothing leaks into the next."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from balsamd.launch.python.environment import Environment


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WORKER_OWN", "worker")
    monkeypatch.delenv("ONLY_FIRST", raising=False)
    monkeypatch.delenv("JOB_ID", raising=False)
    yield


def test_each_job_gets_its_values_and_the_workers_own_come_back(environ: None) -> None:
    env = Environment()
    env.apply({"JOB_ID": "1", "WORKER_OWN": "job", "ONLY_FIRST": "x"})
    assert (os.environ["JOB_ID"], os.environ["WORKER_OWN"], os.environ["ONLY_FIRST"]) == ("1", "job", "x")
    env.apply({"JOB_ID": "2"})
    assert os.environ["JOB_ID"] == "2"
    assert os.environ["WORKER_OWN"] == "worker"
    assert "ONLY_FIRST" not in os.environ


def test_a_run_that_changed_the_environment_does_not_leak_into_the_next(environ: None) -> None:
    env = Environment()
    env.apply({"JOB_ID": "1", "WORKER_OWN": "job"})
    os.environ["JOB_ID"] = "changed by the run"
    del os.environ["WORKER_OWN"]
    env.apply({"JOB_ID": "1", "WORKER_OWN": "job"})  # the same values as the last job
    assert (os.environ["JOB_ID"], os.environ["WORKER_OWN"]) == ("1", "job")
    env.apply({})
    assert os.environ["WORKER_OWN"] == "worker" and "JOB_ID" not in os.environ
