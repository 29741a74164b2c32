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
from tests.daemon.conftest import DaemonSite, new_site, running, wait_until

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
    # leaves files to clean and to keep, and links out of its workdir that its globs match
    "Tidy": """
command_template = (
    "touch a.tmp b.tmp keep.out && mkdir scratch && touch scratch/x.dat scratch/y.log"
    " && ln -s {{ outside }}/precious.tmp link.tmp && ln -s {{ outside }} escape"
)
cleanup_files = ["*.tmp", "scratch/*.dat", "escape/*", "link*"]
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


def listing(root: Path) -> list[str]:
    """Every file and link under ``root`` (links not followed), relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink() or not p.is_dir())


def outside_the_site(site: DaemonSite) -> Path:
    """Files a cleanup must never reach, reachable from a workdir by a link."""
    outside = site.scratch / "outside"
    outside.mkdir(exist_ok=True)
    for name in ("precious.tmp", "other.dat"):
        (outside / name).write_text("keep me")
    return outside


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


def test_cleanup_files_are_removed_after_the_job_finished_and_nothing_else(site: DaemonSite) -> None:
    outside = outside_the_site(site)
    (job_id,) = site.create("Tidy", parameters={"outside": str(outside)})
    run_until_finished(site, [job_id])
    here = workdir(site, job_id)
    wait_until(lambda: not (here / "a.tmp").exists(), "the finished job's files are cleaned up")
    # the link matched by "link*" is removed itself; "escape/*" is never followed out
    assert listing(here) == ["escape", "job.out", "keep.out", "scratch/y.log"]
    assert listing(outside) == ["other.dat", "precious.tmp"]
    assert site.job(job_id).state == S.JOB_FINISHED


def test_a_workdir_that_is_a_link_out_is_left_alone_and_said_once(site: DaemonSite) -> None:
    outside = outside_the_site(site)
    target = site.scratch / "elsewhere"
    target.mkdir()
    (site.root / "data" / "linked").mkdir()
    (site.root / "data" / "linked" / "w").symlink_to(target)
    linked, plain = site.create_each(
        "Tidy",
        [{"workdir": "linked/w", "parameters": {"outside": str(outside)}}, {"parameters": {"outside": str(outside)}}],
    )
    run_until_finished(site, [linked, plain])
    wait_until(lambda: not (workdir(site, plain) / "a.tmp").exists(), "the plain job's files are cleaned up")
    line = f"job {linked}: cleanup of {site.root / 'data' / 'linked' / 'w'} left 1 path(s): "
    wait_until(lambda: line in site.daemon_log(), "the cleanup says why it left the linked workdir alone")
    assert "a.tmp" in listing(target)
    assert listing(outside) == ["other.dat", "precious.tmp"]
    assert site.job(linked).state == S.JOB_FINISHED
    log = (site.root / "log" / "daemon.log").read_text()
    assert log.count(f"job {linked}: cleanup") == 1, log


@pytest.mark.parametrize(
    ("glob", "problem"),
    [
        ("../*", "cleanup_files glob '../*' goes up with '..'; it may name files in the workdir only"),
        ("/etc/*", "cleanup_files glob '/etc/*' is absolute; name files relative to the job's workdir"),
    ],
)
def test_an_app_whose_cleanup_glob_leaves_its_workdir_is_refused(tmp_path: Path, glob: str, problem: str) -> None:
    with new_site(tmp_path) as fresh:
        fresh.app("Evil", f'command_template = "true"\ncleanup_files = ["*.tmp", {glob!r}]')
        proc = fresh.balsamd("job", "create", "--app", "Evil", "--workdir", "w", code=None)
        assert proc.returncode != 0
        assert f"app Evil: {problem}" in proc.stderr
        with fresh.store() as store:
            assert store.filter() == []
