"""Python apps: return values and exceptions travel back to the user, and warm workers serve
job after job."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import balsamd
from balsamd.cli import cli
from balsamd.results import RemoteError, value_of

from .conftest import InProcessRun, LaunchSite, new_site

SQUARE_APP = """\
import os

from balsamd import ApplicationDefinition


class Square(ApplicationDefinition):
    def run(self, x: int) -> dict:
        with open("square.txt", "w") as f:
            f.write(str(x * x))
        print(f"squaring {x} in {self.workdir}")
        if x < 0:
            raise ValueError(f"cannot square negative {x}")
        return {"square": x * x, "pid": os.getpid()}
"""


Squared = tuple[LaunchSite, list[str], str, int]


@pytest.fixture(scope="module")
def squared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Squared]:
    """Four good Square jobs and a failing one, run by a serial launcher on one node that fits
    one run at a time; gives the site, the good ids, the failing id and the launcher's pid."""
    with new_site(tmp_path_factory.mktemp("squared")) as site:
        site.configure(cpus_per_node=1)
        site.python_app("Square", SQUARE_APP)
        good = [site.create("Square", parameters={"x": x})[0] for x in range(1, 5)]
        [bad] = site.create("Square", parameters={"x": -3})
        proc = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
        site.finish(proc)
        yield site, good, bad, proc.pid


def show_json(site: LaunchSite, job_id: str) -> dict:
    result = CliRunner().invoke(
        cli, ["--site", str(site.root), "job", "show", "--json", job_id], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_python_return_values_come_back_through_value_of(squared: Squared) -> None:
    site, good, _bad, _pid = squared
    for x, job_id in enumerate(good, start=1):
        job = site.job(job_id)
        assert job.state == "JOB_FINISHED"
        assert value_of(job)["square"] == x * x
        assert f"squaring {x} in {site.data / job.workdir}" in site.output(job_id)
        assert (site.data / job.workdir / "square.txt").read_text() == str(x * x)


def test_python_exceptions_are_reraised_with_the_remote_traceback(squared: Squared) -> None:
    site, _good, bad, _pid = squared
    job = site.job(bad)
    assert job.state == "FAILED"
    assert "ValueError: cannot square negative -3" in job.state_reason
    with pytest.raises(RemoteError, match=r"^ValueError: cannot square negative -3\n") as raised:
        value_of(job)
    assert (raised.value.type_name, raised.value.message) == ("ValueError", "cannot square negative -3")
    [note] = raised.value.__notes__
    assert note.startswith(f"raised at the site in job {bad}:\nTraceback")
    assert 'raise ValueError(f"cannot square negative {x}")' in note
    assert "Traceback" in site.output(bad)


def test_job_show_json_includes_the_result_or_the_traceback(squared: Squared) -> None:
    site, good, bad, _pid = squared
    shown = show_json(site, good[1])
    assert shown["state"] == "JOB_FINISHED"
    assert shown["result"] == repr(value_of(site.job(good[1])))
    failed = show_json(site, bad)
    assert failed["state"] == "FAILED"
    assert failed["result"].startswith("Traceback")
    assert failed["result"].endswith("ValueError: cannot square negative -3")
    assert [e["to_state"] for e in failed["events"]][-2:] == ["RUN_ERROR", "FAILED"]


def test_python_workers_are_warm_one_process_serves_every_job(squared: Squared) -> None:
    site, good, _bad, launcher_pid = squared
    pids = {value_of(site.job(job_id))["pid"] for job_id in good}
    assert len(pids) == 1, f"one run at a time should reuse one worker, saw pids {pids}"
    assert launcher_pid not in pids


NOOP_APP = """\
from balsamd import ApplicationDefinition


class Noop(ApplicationDefinition):
    def run(self, i: int) -> int:
        return i
"""


def test_a_campaign_of_short_python_jobs_is_queued_on_workers_and_makes_no_empty_workdirs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with new_site(tmp_path_factory.mktemp("short")) as site:
        site.configure(cpus_per_node=2)
        site.python_app("Noop", NOOP_APP)
        ids = [site.create("Noop", parameters={"i": i}, node_packing_count=2)[0] for i in range(2)]
        with balsamd.connect(site.root) as s:
            ids += [h.id for h in s.jobs.bulk_create(
                {"app": "Noop", "workdir": f"bulk/{i}", "parameters": {"i": i}, "node_packing_count": 2}
                for i in range(2, 600)
            )]  # fmt: skip
        proc = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
        site.finish(proc)
        assert set(site.states(ids)) == {"JOB_FINISHED"}
        assert [value_of(site.job(job_id)) for job_id in ids[::50]] == list(range(0, 600, 50))
        assert site.path(ids[-1])[-5:] == ["RUNNING", "RUN_DONE", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]
        # once the app's runs are known to be short, silent runs make no directory
        made = list((site.data / "bulk").iterdir()) if (site.data / "bulk").exists() else []
        assert len(made) < 50, f"{len(made)} of 598 silent runs made a workdir"


SPAWNER_APP = """\
import os

import balsamd
from balsamd import ApplicationDefinition


class Spawner(ApplicationDefinition):
    def run(self, depth: int) -> int:
        # jobs that make jobs: the site's store, opened from inside a warm worker
        with balsamd.connect(os.environ["BALSAMD_SITE"]) as site:
            if depth:
                site.jobs.create(app="Spawner", workdir=f"{self.job.workdir}-next", parameters={"depth": depth - 1})
            return site.jobs.count()
"""


def test_a_python_app_may_open_the_sites_store_while_the_launcher_has_it_open(
    tmp_path: Path, run_in_process: Callable[..., InProcessRun]
) -> None:
    with new_site(tmp_path) as site:
        site.python_app("Spawner", SPAWNER_APP)
        site.create("Spawner", parameters={"depth": 2})
        run = run_in_process(site, ["n1"])
        assert run.summary.errors == 0, run.summary
        with balsamd.connect(site.root) as opened:
            assert [j.state for j in opened.jobs.filter()] == ["JOB_FINISHED"] * 3
