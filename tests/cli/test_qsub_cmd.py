"""``balsamd qsub``: a command line as a job the elastic queue packs into batch jobs, its
arguments arriving exactly as given."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest

import balsamd
from balsamd.apps import render_command
from balsamd.config import load_settings
from balsamd.launch.running.commands import app_argv
from balsamd.models import App, AppParameter, Job
from balsamd.sched.local import LocalScheduler
from balsamd.sched.service import ElasticService
from balsamd.site import find_site, open_store
from tests.daemon.conftest import ELASTIC_SETTINGS, DaemonSite, new_site, wait_until

HOSTILE = "'; rm -rf ~'"
ELASTIC: dict[str, object] = {"elastic.enabled": True, "elastic.max_nodes": 8, "elastic.queue": "debug",
                               "nodes.max_nodes": 8}  # fmt: skip


def configure(site: Path, values: dict[str, object]) -> None:
    DaemonSite(site, site).configure(values)


@pytest.fixture
def elastic(run):
    configure(run.site, ELASTIC)
    return run


def job_of(run, job_id: str):
    with balsamd.connect(run.site) as site:
        return site.store.get(job_id)


def test_qsub_prints_the_id_of_a_job_running_the_command_line(elastic) -> None:
    result = elastic("qsub", "-n", "2", "-t", "30", "--ranks-per-node", "4", "--tag", "exp=7", "--",
                     "./sim", "-n", "3", "a b")  # fmt: skip
    job_id = result.stdout.strip()
    assert result.stderr == ""
    job = job_of(elastic, job_id)
    assert (job.app, job.parameters, job.tags) == ("qsub", {"argv": ["./sim", "-n", "3", "a b"]}, {"exp": "7"})
    assert (job.num_nodes, job.ranks_per_node, job.wall_time_min, str(job.state)) == (2, 4, 30.0, "PREPROCESSED")
    assert job.workdir.startswith("qsub/")
    # the built-in app is an app of the site's apps/, like any other
    assert (elastic.site / "apps" / "qsub.py").exists()
    again = elastic("qsub", "-n", "1", "-t", "5", "true").stdout.strip()
    assert job_of(elastic, again).workdir != job.workdir


def test_every_argument_is_one_literal_word_with_or_without_a_shell(elastic) -> None:
    job_id = elastic("qsub", "-n", "1", "-t", "5", "--", "printf", "[%s]\\n", HOSTILE, "$HOME", "*").stdout.strip()
    job = job_of(elastic, job_id)
    app = balsamd.connect(elastic.site).apps.get("qsub")
    argv = app_argv(app, job)
    assert argv == ["printf", "[%s]\\n", HOSTILE, "$HOME", "*"]
    ran = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert ran.stdout == f"[{HOSTILE}]\n[$HOME]\n[*]\n"
    # a template that needs a shell gets each item quoted: the shell reads them back as given
    shell = subprocess.run(["/bin/sh", "-c", render_command("{{ argv }} | cat", job.parameters)],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert shell.stdout == ran.stdout


def test_queue_and_project_must_be_the_elastic_queues(elastic) -> None:
    elastic("qsub", "-n", "1", "-t", "5", "-q", "debug", "--", "true")
    err = elastic.fails("qsub", "-n", "1", "-t", "5", "-q", "prod", "-A", "chem", "--", "true")
    assert err == (
        "Error: qsub: -q 'prod': this site's elastic queue submits its batch jobs with queue 'debug'; leave -q "
        "out, or set [elastic] queue = 'prod' in settings.toml and restart the daemon; -A 'chem': this site's "
        "elastic queue submits its batch jobs with project 'local'; leave -A out, or set [elastic] project = "
        "'chem' in settings.toml and restart the daemon\n"
    )
    assert len(balsamd.connect(elastic.site).jobs.filter()) == 1


def test_a_job_no_elastic_batch_job_could_run_is_refused(elastic) -> None:
    settings = elastic.site / "settings.toml"
    settings.write_text(settings.read_text().replace("filter_tags = {}", 'filter_tags = { campaign = "a" }', 1))
    err = elastic.fails("qsub", "-n", "9", "-t", "400", "--tag", "campaign=b", "--", "true")
    assert "-n 9: the elastic queue's batch jobs have at most 8 node(s)" in err
    assert "-t 400: the elastic queue's batch jobs leave 355 minutes to run" in err
    assert "--tag campaign=b: the elastic queue runs only jobs tagged campaign=a" in err
    configure(elastic.site, {"elastic.job_mode": "serial"})
    err = elastic.fails("qsub", "-n", "1", "--ranks-per-node", "2", "-t", "5", "--", "true")
    assert err == (
        "Error: qsub: -n 1 --ranks-per-node 2: the elastic queue's batch jobs run in serial mode ([elastic] "
        'job_mode = "serial"), which runs one-node, one-rank jobs only; ask for -n 1 --ranks-per-node 1, or set '
        'job_mode = "mpi"\n'
    )
    # without a tag of its own, the job gets the elastic queue's
    job_id = elastic("qsub", "-n", "1", "-t", "5", "--", "true").stdout.strip()
    assert job_of(elastic, job_id).tags == {"campaign": "a"}


def test_without_the_elastic_queue_qsub_says_what_to_do(run) -> None:
    result = run("qsub", "-n", "1", "-t", "5", "true")
    assert len(result.stdout.strip()) == 26
    assert "note: the elastic queue is off" in result.stderr
    assert "[elastic] enabled = true" in result.stderr


def test_a_site_app_named_qsub_is_not_replaced(run) -> None:
    run("app", "create", "qsub", "--command", "echo {{ x }}")
    err = run.fails("qsub", "-n", "1", "-t", "5", "true")
    assert err == (
        "Error: the site's app qsub (apps/qsub.py) is not balsamd's qsub app; rename that app, so that "
        "`balsamd qsub` can install its own as apps/qsub.py\n"
    )


def test_the_command_is_required_and_options_stop_at_it(run) -> None:
    assert "Missing argument 'COMMAND...'" in run.fails("qsub", "-n", "1", "-t", "5", code=2)
    job_id = run("qsub", "-n", "1", "-t", "5", "./a.out", "-n", "3").stdout.split()[0]
    assert job_of(run, job_id).parameters == {"argv": ["./a.out", "-n", "3"]}


def test_twenty_qsub_jobs_are_packed_into_fewer_batch_jobs(elastic) -> None:
    for n in range(20):
        elastic("qsub", "-n", "1", "-t", "10", "--", "echo", str(n))
    layout = find_site(str(elastic.site))
    settings = load_settings(layout.settings)
    store = open_store(layout, settings)

    async def call(fn, *args):
        return fn(*args)

    service = ElasticService(settings, store, call, LocalScheduler())
    try:
        for step in range(5):  # the decisions of five periods
            anyio.run(service.step, 1_000_000.0 + step)
        made = store.batch_jobs()
    finally:
        store.close()
    assert [b.num_nodes for b in made] == [8, 8, 4]
    assert sum(b.num_nodes for b in made) == 20 and len(made) < 20
    assert {(b.queue, b.origin) for b in made} == {("debug", "elastic")}
    assert service.detail["decision"] == "backlog of 20 nodes is covered by 20 idle or coming nodes"


@pytest.mark.slow
def test_a_daemon_runs_qsub_jobs_in_fewer_batch_jobs_than_commands(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("BALSAMD_SITE", raising=False)
    settings = {**ELASTIC_SETTINGS, "nodes.cpus_per_node": 2, "nodes.max_nodes": 2, "elastic.max_nodes": 2,
                "elastic.max_queued": 2}  # fmt: skip
    with new_site(tmp_path, settings) as site:
        # submitted as a campaign is: all at once (the daemon starts after, so no batch job is
        # made while they trickle in and the count says how the elastic queue packs them)
        ids = [site.balsamd("qsub", "-n", "1", "-t", "1", "--", "printf", "%s", f"{n} {HOSTILE}").stdout.strip()
               for n in range(20)]  # fmt: skip
        site.start()
        for job_id in ids:
            site.wait_state(job_id, "JOB_FINISHED", timeout=90)
        batch = json.loads(site.balsamd("queue", "ls", "--all", "--json").stdout)
        assert 0 < len(batch) < len(ids)
        for n, job_id in enumerate(ids):
            workdir = site.root / "data" / site.job(job_id).workdir
            assert (workdir / "job.out").read_text() == f"{n} {HOSTILE}"
        wait_until(lambda: not site.balsamd("queue", "ls", "--json").stdout.strip("[]\n"), "the batch jobs ended")


def test_a_list_inside_a_word_splits_as_the_shell_would_split_it() -> None:
    app = App(name="a", command_template="echo -x{{ v }}. end", parameters={"v": AppParameter()})
    job = Job(id="J", app="a", workdir="w", parameters={"v": ["1", "2 3", "4"]})
    direct = app_argv(app, job)
    assert direct == ["echo", "-x1", "2 3", "4.", "end"]
    shell = subprocess.run(["/bin/sh", "-c", f"printf '[%s]' {render_command(app.command_template, job.parameters)}"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert shell.stdout == "".join(f"[{w}]" for w in direct)
