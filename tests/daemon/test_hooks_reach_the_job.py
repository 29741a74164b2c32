"""Hooks reach their job: they run in its workdir, read its parents, and its files are cleaned.

Real app files, a real daemon with one hook worker (so that every hook of this module shares
one process, and one hook's current directory could leak into the next), real launchers
running real commands that write real files into the jobs' workdirs.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.states import JobState
from tests.daemon.conftest import DaemonSite, running, wait_until

S = JobState

APPS = {
    # writes its result into its workdir; postprocess reads it back by a relative path and
    # through self.workdir, and records where it ran
    "Square": """
command_template = "expr {{ n }} '*' {{ n }} > square.txt"

def postprocess(self):
    import os
    by_relative_path = int(open("square.txt").read())
    through_workdir = int((self.workdir / "square.txt").read_text())
    self.job.data.update(square=by_relative_path, same=by_relative_path == through_workdir,
                         cwd=os.getcwd(), workdir=str(self.workdir))
    self.job.state = JobState.POSTPROCESSED
""",
    # sums what its parents' runs wrote in their workdirs and what their hooks recorded
    "Total": """
command_template = "true"

def preprocess(self):
    from pathlib import Path
    parents = self.job.parents()
    self.job.data["parents"] = [p.id for p in self.job.parent_query()]
    self.job.data["from_files"] = sum(int(Path(p.workdir_path, "square.txt").read_text()) for p in parents)
    self.job.data["from_data"] = sum(p.data["square"] for p in parents)
    self.job.data["states"] = sorted({str(p.state) for p in parents})
    self.job.state = JobState.PREPROCESSED
""",
    # records where it starts, then wanders off: the next hook must start in its own workdir
    "Wanders": """
command_template = "true"

def preprocess(self):
    import os
    self.job.data["cwd"] = os.getcwd()
    os.chdir("/")
""",
    # a hook that reads parents of a job without any
    "Orphan": """
command_template = "true"

def preprocess(self):
    self.job.data["parents"] = self.job.parents()
""",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonSite]:
    base = tmp_path_factory.mktemp("reach")
    with running(base, {"daemon.hook_workers": 1}) as made:
        for name, body in APPS.items():
            made.app(name, body)
        yield made


def workdir(site: DaemonSite, job_id: str) -> Path:
    return site.root / "data" / site.job(job_id).workdir


def run_until_finished(site: DaemonSite, job_ids: list[str]) -> None:
    """A launcher runs the jobs (those waiting for parents too) until all have finished."""
    proc = site.start_launcher("--job-mode", "serial", "--idle-ttl", "600")
    wait_until(lambda: all(j.state in (S.JOB_FINISHED, S.FAILED) for j in site.jobs(job_ids)), "the jobs end")
    proc.send_signal(signal.SIGTERM)
    site.finish(proc)
    for job in site.jobs(job_ids):
        assert job.state == S.JOB_FINISHED, (job.id, job.state_reason)


def test_postprocess_reads_what_its_run_wrote_by_a_relative_path_and_through_workdir(site: DaemonSite) -> None:
    (job_id,) = site.create("Square", parameters={"n": 7})
    run_until_finished(site, [job_id])
    job = site.job(job_id)
    here = workdir(site, job_id)
    assert job.data == {"square": 49, "same": True, "cwd": str(here), "workdir": str(here)}


def test_a_hook_reads_its_parents_records_and_workdirs(site: DaemonSite) -> None:
    parents = site.create_each("Square", [{"parameters": {"n": n}} for n in (2, 3, 4)])
    (child,) = site.create("Total", parent_ids=parents)
    run_until_finished(site, [*parents, child])
    assert site.job(child).data == {
        "parents": parents,
        "from_files": 4 + 9 + 16,
        "from_data": 4 + 9 + 16,
        "states": ["JOB_FINISHED"],
    }


def test_a_job_without_parents_reads_none(site: DaemonSite) -> None:
    (job_id,) = site.create("Orphan")
    job = site.wait_state(job_id, S.PREPROCESSED)
    assert job.data == {"parents": []}


def test_each_hook_starts_in_its_own_workdir_made_for_it(site: DaemonSite) -> None:
    jobs = site.create("Wanders", 3)
    for job_id in jobs:
        assert not workdir(site, job_id).exists()
    for job_id in jobs:
        job = site.wait_state(job_id, S.PREPROCESSED)
        assert job.data == {"cwd": str(workdir(site, job_id))}
        assert workdir(site, job_id).is_dir()
