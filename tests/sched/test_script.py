"""Job scripts: the site's template filled with one batch job's values."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from balsamd.models import BatchJob, JobMode, Partition
from balsamd.modes import PRIVATE
from balsamd.sched.cobalt import CobaltScheduler
from balsamd.sched.local import LocalScheduler
from balsamd.sched.lsf import LsfScheduler
from balsamd.sched.pbs import PbsScheduler
from balsamd.sched.script import (
    COMMAND_ENV,
    GENERIC_TEMPLATE,
    TemplateError,
    balsamd_command,
    launcher_command,
    render,
    values,
)
from balsamd.sched.service import job_script
from balsamd.sched.slurm import SlurmScheduler
from balsamd.site import init_site


@pytest.fixture(autouse=True)
def _own_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMMAND_ENV, "/opt/bin/python -m balsamd")


def batch(**fields: object) -> BatchJob:
    base: dict[str, object] = {
        "id": "B1", "num_nodes": 3, "wall_time_min": 90, "job_mode": JobMode.SERIAL, "queue": "debug",
        "project": "chem",
    }  # fmt: skip
    return BatchJob(**{**base, **fields})


def test_values_of_a_batch_job():
    fields = values(batch(), Path("/sites/s1"), ["#SBATCH -N 3", "#SBATCH -t 01:30:00"])
    assert fields == {
        "directives": "#SBATCH -N 3\n#SBATCH -t 01:30:00",
        "launcher": "/opt/bin/python -m balsamd --site /sites/s1 launcher --job-mode serial --wall-time-min 90 "
        "--batch-job B1",
        "batch_job_id": "B1",
        "num_nodes": "3",
        "wall_time_min": "90",
        "walltime": "01:30:00",
        "queue": "debug",
        "project": "chem",
        "job_mode": "serial",
        "site": "/sites/s1",
    }


def test_render_fills_every_placeholder_with_or_without_spaces():
    text = render("#!/bin/bash\n{{directives}}\necho {{ num_nodes }} {{  queue  }}\n", {
        "directives": "#X", "num_nodes": "2", "queue": "q",
    })  # fmt: skip
    assert text == "#!/bin/bash\n#X\necho 2 q\n"


def test_an_unknown_placeholder_is_named_with_the_known_ones():
    with pytest.raises(TemplateError) as info:
        render("#!/bin/bash\n{{ acount }}\n", {"project": "p", "queue": "q"})
    assert str(info.value) == "job template uses {{ acount }}, which is not known; known: project, queue"


def test_text_that_is_not_a_placeholder_is_left_alone():
    template = "echo ${HOME} {{ Upper }} { queue } {{queue}\n"
    assert render(template, {"queue": "q"}) == template


def test_tags_and_paths_with_spaces_are_quoted_in_the_launcher_command():
    site = Path("/my sites/site one")
    command = launcher_command(batch(filter_tags={"run": "a b", "owner": "it's me"}), site)
    argv = shlex.split(command)
    assert argv == [
        "/opt/bin/python", "-m", "balsamd", "--site", "/my sites/site one", "launcher", "--job-mode", "serial",
        "--wall-time-min", "90", "--batch-job", "B1", "--tag", "owner=it's me", "--tag", "run=a b",
    ]  # fmt: skip


def test_the_command_is_this_python_unless_the_site_sets_one(monkeypatch: pytest.MonkeyPatch):
    assert balsamd_command() == ["/opt/bin/python", "-m", "balsamd"]
    monkeypatch.delenv(COMMAND_ENV)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/balsamd"])
    assert balsamd_command() == [sys.executable, "-m", "balsamd"]


def test_the_command_is_the_zipapp_when_balsamd_runs_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    app = tmp_path / "balsamd.pyz"
    app.write_bytes(b"PK")
    monkeypatch.delenv(COMMAND_ENV)
    monkeypatch.setattr(sys, "argv", [str(app)])
    assert balsamd_command() == [sys.executable, str(app)]


def test_job_script_uses_the_schedulers_template_without_a_site_template(tmp_path: Path):
    script = job_script(tmp_path, LocalScheduler(), batch(), PRIVATE)
    assert script == tmp_path / "batch" / "B1.sh"
    assert script.stat().st_mode & 0o777 == 0o700
    assert script.read_text() == render(
        GENERIC_TEMPLATE, values(batch(), tmp_path, LocalScheduler().directives(batch()))
    )


def test_job_script_uses_the_sites_job_template(tmp_path: Path):
    site = init_site(tmp_path / "site").root
    assert (site / "job-template.sh").read_text() == LocalScheduler.default_template
    (site / "job-template.sh").write_text(
        "#!/bin/bash\n{{ directives }}\nmodule load conda\nexport RUN={{ batch_job_id }}\n{{ launcher }}\n"
    )
    text = job_script(site, LocalScheduler(), batch(), PRIVATE).read_text()
    assert text == (
        "#!/bin/bash\n# balsamd batch job B1: 3 node(s), 90 min\nmodule load conda\nexport RUN=B1\n"
        f"/opt/bin/python -m balsamd --site {site} launcher --job-mode serial --wall-time-min 90 --batch-job B1\n"
    )


def test_a_bad_site_template_writes_no_script(tmp_path: Path):
    (tmp_path / "job-template.sh").write_text("#!/bin/bash\n{{ acount }}\n")
    with pytest.raises(TemplateError, match=r"\{\{ acount \}\}"):
        job_script(tmp_path, LocalScheduler(), batch(), PRIVATE)
    assert not (tmp_path / "batch" / "B1.sh").exists()


def test_a_site_template_others_may_write_writes_no_script(tmp_path: Path):
    template = tmp_path / "job-template.sh"
    template.write_text("#!/bin/bash\n{{ launcher }}\n")
    template.chmod(0o664)
    with pytest.raises(TemplateError) as info:
        job_script(tmp_path, LocalScheduler(), batch(), PRIVATE)
    assert str(info.value).startswith(f"{template} can be changed by the group ")
    assert str(info.value).endswith(f"(mode 0664), and balsamd runs a site's code and settings as you; "
                                    f"make it yours alone to write with `chmod go-w {template}`")  # fmt: skip
    assert not (tmp_path / "batch" / "B1.sh").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("queue", "debug\n#SBATCH --wrap=touch pwned"), ("project", "p; touch pwned"), ("id", "B1\ntouch pwned"),
        ("optional_params", {"reservation": "r1\ntouch pwned"}), ("optional_params", {"qos": "$(touch pwned)"}),
        ("optional_params", {"wrap=touch pwned #": "x"}),
    ],
)  # fmt: skip
def test_a_batch_job_whose_words_could_add_to_its_script_writes_no_script(tmp_path: Path, field, value) -> None:
    # a record made before the store checked these fields: the script refuses it too
    (tmp_path / "job-template.sh").write_text("#!/bin/bash\n{{ directives }}\necho {{ queue }} {{ project }}\n")
    with pytest.raises(TemplateError, match="cannot go into a job script"):
        job_script(tmp_path, LocalScheduler(), batch(**{field: value}), PRIVATE)
    assert not (tmp_path / "batch").exists() or list((tmp_path / "batch").iterdir()) == []


def test_the_words_the_shell_reads_in_a_site_template_are_quoted(tmp_path: Path) -> None:
    (tmp_path / "job-template.sh").write_text("#!/bin/bash\necho {{ queue }}:{{ project }}:{{ site }}\n")
    text = job_script(tmp_path, LocalScheduler(), batch(queue="gpu[0-3]"), PRIVATE).read_text()
    assert text.splitlines()[1] == f"echo 'gpu[0-3]':chem:{shlex.quote(str(tmp_path))}"


def test_each_partition_runs_its_own_launcher_on_its_share_of_the_nodes(tmp_path: Path) -> None:
    parts = [Partition(job_mode=JobMode.SERIAL, num_nodes=2, filter_tags={"size": "small one"}),
             Partition(job_mode=JobMode.MPI, num_nodes=1, filter_tags={"size": "wide"})]  # fmt: skip
    lines = launcher_command(batch(partitions=parts), Path("/sites/s1")).splitlines()
    common = "/opt/bin/python -m balsamd --site /sites/s1 launcher"
    assert lines == [
        f"{common} --job-mode serial --wall-time-min 90 --batch-job B1 --tag 'size=small one' --node-share 0:2 &",
        f"{common} --job-mode mpi --wall-time-min 90 --batch-job B1 --tag size=wide --node-share 2:1 &",
        "wait",
    ]


@pytest.mark.parametrize(
    ("scheduler", "directive"),
    [
        (SlurmScheduler, "#SBATCH --reservation=resv-1"),
        (PbsScheduler, "#PBS -l reservation=resv-1"),
        (CobaltScheduler, "#COBALT --attrs reservation=resv-1"),
        (LsfScheduler, "#BSUB -reservation resv-1"),
        (LocalScheduler, "# optional parameter reservation=resv-1"),
    ],
)
def test_an_optional_parameter_is_a_directive_of_each_scheduler(tmp_path: Path, scheduler, directive) -> None:
    made = batch(optional_params={"reservation": "resv-1"})
    assert scheduler().directives(made)[-1] == directive
    assert directive in job_script(tmp_path, scheduler(), made, PRIVATE).read_text().splitlines()
