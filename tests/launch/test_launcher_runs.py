"""What a run gets and leaves behind: its environment, working directory and output, a shell
preamble, the output tail of a failure; and which jobs a launcher takes and when it stops."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator

import pytest

from .conftest import LaunchSite, new_site

ENV_TEMPLATE = 'echo "@env|$BALSAMD_JOB_ID|$BALSAMD_SITE|$BALSAMD_WORKDIR|$OMP_NUM_THREADS|$APP_LEVEL|$(pwd)"'
PARENT_SCRIPT = "import os\nprint(open(f'/proc/{os.getppid()}/cmdline').read().replace('\\0', ' '))\n"
NOISY_FAILURE = "head -c 6000 /dev/zero | tr '\\0' x; echo; echo 'last words' >&2; exit 3"
LENGTH_SCRIPT = "import sys\nprint(len(sys.argv[1]), sys.argv[1][:5])\n"
BIG = "ab c;" * 20_000  # 100 kB: most of what one argument may hold
MIXED = 'case "$1" in cat*) cat ../common.in ;; echo*) echo 42 > answer ;; boom) echo boom; exit 4 ;; esac'


class Ran:
    """Jobs of several apps, all run by one serial launcher."""

    def __init__(self, site: LaunchSite) -> None:
        self.site = site
        site.command_app("Env", ENV_TEMPLATE, environment={"APP_LEVEL": "from the app"})
        site.command_app("Greet", "echo $GREETING", shell_preamble="export GREETING=hi")
        site.command_app("GreetSimple", "printenv GREETING", shell_preamble="export GREETING=hello")
        site.command_app("Noisy", NOISY_FAILURE)
        parent = site.scratch / "parent.py"
        parent.write_text(PARENT_SCRIPT)
        site.command_app("Parent", f"{sys.executable} {parent}")
        length = site.scratch / "length.py"
        length.write_text(LENGTH_SCRIPT)
        site.command_app("Length", f"{sys.executable} {length} {{{{ v }}}}")
        self.env = site.create("Env", threads_per_rank=3)[0]
        self.greet = site.create("Greet")[0]
        self.greet_simple = site.create("GreetSimple")[0]
        self.noisy = site.create("Noisy")[0]
        self.parent = site.create("Parent")[0]
        self.big = site.create("Length", parameters={"v": BIG})[0]
        self.summary = site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    with new_site(tmp_path_factory.mktemp("ran")) as site:
        yield Ran(site)


def test_launcher_summary_counts_every_run(ran: Ran) -> None:
    assert "6 started, 5 done, 1 errors, 0 timed out, 0 killed" in ran.summary


def test_runs_get_the_job_environment_a_workdir_under_site_data_and_job_out(ran: Ran) -> None:
    job = ran.site.job(ran.env)
    assert job.state == "JOB_FINISHED"
    out = ran.site.data / job.workdir / "job.out"
    assert out.is_file()
    [line] = [r for r in out.read_text().splitlines() if r.startswith("@env|")]
    _, job_id, site_path, workdir, omp, app_level, cwd = line.split("|")
    assert job_id == ran.env
    assert site_path == str(ran.site.root)
    assert workdir == job.workdir
    assert omp == "3"  # threads_per_rank
    assert app_level == "from the app"
    assert cwd == str(ran.site.data / job.workdir)


def test_shell_preamble_runs_before_a_shell_command(ran: Ran) -> None:
    assert ran.site.job(ran.greet).state == "JOB_FINISHED"
    assert ran.site.output(ran.greet) == "hi\n"


def test_shell_preamble_runs_before_a_simple_command(ran: Ran) -> None:
    assert ran.site.job(ran.greet_simple).state == "JOB_FINISHED"
    assert ran.site.output(ran.greet_simple) == "hello\n"


def test_a_large_value_is_one_argument(ran: Ran) -> None:
    assert ran.site.job(ran.big).state == "JOB_FINISHED"
    assert ran.site.output(ran.big) == f"{len(BIG)} ab c;\n"


def test_simple_commands_are_executed_without_a_shell(ran: Ran) -> None:
    assert ran.site.job(ran.parent).state == "JOB_FINISHED"
    parent = ran.site.output(ran.parent).split()
    assert parent[:3] == [sys.executable, "-m", "balsamd"], f"the run's parent is {parent}"


def test_run_error_keeps_the_output_tail_in_state_reason(ran: Ran) -> None:
    job = ran.site.job(ran.noisy)
    assert job.state == "FAILED"
    assert job.return_code == 3
    reason = job.state_reason
    assert reason.startswith("exit code 3\n")
    assert reason.endswith("last words\n")
    tail = reason.removeprefix("exit code 3\n")
    assert 0 < len(tail) <= 4096 < 6000
    events = ran.site.events(ran.noisy)
    assert [str(e.to_state) for e in events][-2:] == ["RUN_ERROR", "FAILED"]
    assert events[-2].reason == reason


def test_launcher_exits_after_idle_ttl_and_closes_its_session(site: LaunchSite) -> None:
    proc = site.start_launcher("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
    summary = site.finish(proc)
    assert "launcher finished (idle for 0.5 s): 0 started" in summary
    session = site.session_of(proc.pid)
    assert session.state == "closed"


def test_tag_filter_runs_only_matching_jobs(site: LaunchSite) -> None:
    site.command_app("Hello", "echo hello")
    wanted = site.create("Hello", count=2, tags={"group": "a"})
    others = site.create("Hello", count=2, tags={"group": "b"})
    untagged = site.create("Hello")

    summary = site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5", "--tag", "group=a")

    assert "2 started, 2 done" in summary
    assert site.states(wanted) == ["JOB_FINISHED"] * 2
    for job_id in others + untagged:
        job = site.job(job_id)
        assert (job.state, job.session_id) == ("PREPROCESSED", None)
        assert "RUNNING" not in site.path(job_id)


def test_idle_ttl_ends_a_launcher_only_after_it_asked_for_work(site: LaunchSite) -> None:
    site.command_app("Nap", "sleep 0.1")
    [parent] = site.create("Nap")
    [child] = site.create("Nap", parent_ids=[parent])

    site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.3")

    assert site.states([parent, child]) == ["JOB_FINISHED", "JOB_FINISHED"]


def test_idle_ttl_zero_runs_the_ready_jobs_then_exits(site: LaunchSite) -> None:
    site.command_app("Hello", "echo hello")
    job_ids = site.create("Hello", count=2)

    summary = site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0")

    assert "2 started, 2 done" in summary
    assert site.states(job_ids) == ["JOB_FINISHED"] * 2


def lazy_leftovers(site: LaunchSite) -> list[str]:
    """Scratch directories and spill files of lazy runs still in the site's data."""
    return [p.name for p in site.data.rglob("*") if p.name.startswith((".balsamd-scratch-", "run-"))]


def test_short_command_runs_make_their_workdir_and_output_only_if_they_use_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with new_site(tmp_path_factory.mktemp("lazy")) as site:
        site.configure(cpus_per_node=2)
        # the kinds of run, chosen by a parameter that stays a word ($1 of a fixed script)
        site.command_app("Mixed", f"sh -c {shlex.quote(MIXED)} mixed {{{{ script }}}}")
        (site.data / "Mixed").mkdir(parents=True)
        (site.data / "Mixed" / "common.in").write_text("shared input\n")
        kinds = ["true"] * 7 + ["cat ../common.in", "echo 42 > answer", "boom"]
        scripts = kinds * 30
        ids = [site.create("Mixed", parameters={"script": s}, node_packing_count=2)[0] for s in scripts]
        site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
        by_kind = {kind: [i for i, s in zip(ids, scripts, strict=True) if s == kind] for kind in kinds}
        assert set(site.states(by_kind["true"])) == {"JOB_FINISHED"}
        made = [i for i in by_kind["true"] if (site.data / site.job(i).workdir).exists()]
        assert len(made) < 10, f"{len(made)} of {len(by_kind['true'])} silent runs made a workdir"
        assert {site.output(i) for i in by_kind["cat ../common.in"]} == {"shared input\n"}
        assert {(site.data / site.job(i).workdir / "answer").read_text() for i in by_kind["echo 42 > answer"]} == {
            "42\n"
        }
        failed = [site.job(i) for i in by_kind["boom"]]
        assert {(j.state, j.return_code, j.state_reason) for j in failed} == {("FAILED", 4, "exit code 4\nboom\n")}
        assert lazy_leftovers(site) == []


def test_short_command_runs_that_cannot_start_fail_and_leave_no_files(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with new_site(tmp_path_factory.mktemp("lazy-missing")) as site:
        site.configure(cpus_per_node=2)
        site.command_app("Program", "{{ program }}")
        fine = site.create("Program", 40, parameters={"program": "true"}, node_packing_count=2)
        missing = site.create("Program", 40, parameters={"program": "no-such-program-here"}, node_packing_count=2)
        site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
        assert set(site.states(fine)) == {"JOB_FINISHED"}
        failed = [site.job(i) for i in missing]
        assert {j.state for j in failed} == {"FAILED"}
        assert all("could not start: FileNotFoundError" in j.state_reason for j in failed), failed[0].state_reason
        assert lazy_leftovers(site) == []
