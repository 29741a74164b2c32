"""What a run executes: argv and environment, checked as built and, where it matters, run."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Any

import pytest

from balsamd.apps import AppError
from balsamd.config import LauncherSettings
from balsamd.launch.running.commands import app_argv, gpu_environment, job_environment, run_argv
from balsamd.launch.running.protocol import Placement
from balsamd.models import App, AppKind, Job
from tests.launch.conftest import require_mpiexec

RANK_ENTRY = [sys.executable, "-m", "balsamd.launch.python.rank", ".balsamd-task", ".balsamd-result"]
MPIEXEC = "/opt/mpi/bin/mpiexec"


def app(template: str = "", **fields: Any) -> App:
    return App(name="a", command_template=template, **fields)


def job(**fields: Any) -> Job:
    return Job(id="J1", app="a", workdir="runs/1", **fields)


def placement(*hosts: str, gpus: list[int] | None = None) -> Placement:
    hosts = hosts or ("h1",)
    return Placement("J1", list(hosts), dict.fromkeys(hosts, gpus or []), cpus=1.0, occupancy=1.0)


def argv(template: str, use_mpi: bool = False, env: dict[str, str] | None = None, **fields: Any) -> list[str]:
    the_app = app(template, **{k: v for k, v in fields.items() if k in ("shell_preamble", "kind")})
    the_job = job(**{k: v for k, v in fields.items() if k not in ("shell_preamble", "kind")})
    hosts = [f"h{i}" for i in range(1, the_job.num_nodes + 1)]
    settings = LauncherSettings(mpiexec=MPIEXEC)
    return run_argv(the_app, the_job, placement(*hosts), settings, use_mpi, env or {})


def output(command: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}).stdout


# ----- command apps ---------------------------------------------------------------------------


def test_a_simple_command_is_executed_directly_without_a_shell() -> None:
    assert argv("echo {{ msg }}", parameters={"msg": "hello"}) == ["echo", "hello"]


def test_a_parameter_with_spaces_stays_one_word() -> None:
    command = argv("printf %s {{ msg }}", parameters={"msg": "two words"})
    assert command == ["/bin/sh", "-c", "printf %s 'two words'"]  # % is shell syntax
    assert output(command) == "two words"
    assert argv("echo {{ msg }}", parameters={"msg": "two words"}) == ["echo", "two words"]


@pytest.mark.parametrize("value", ["a;b", "$HOME", "`id`", "x && echo injected", "*", "", "it's\nmulti"])
def test_parameter_values_with_shell_syntax_are_passed_literally(value: str) -> None:
    # a template that needs no shell gets none, whatever its values hold: each is one argument
    command = argv("echo {{ msg }}", parameters={"msg": value})
    assert command == ["echo", value]
    assert output(command) == f"{value}\n"
    # in a template that needs a shell, each is one quoted word
    shell = argv("echo {{ msg }} | cat", parameters={"msg": value})
    assert shell == ["/bin/sh", "-c", f"echo {shlex.quote(value)} | cat"]
    assert output(shell) == f"{value}\n"


def test_parameters_inside_a_word_fill_their_slots() -> None:
    assert argv("prog -i{{ a }}.in -v {{ a }}{{ b }}", parameters={"a": "x y", "b": ""}) == [
        "prog", "-ix y.in", "-v", "x y",
    ]  # fmt: skip


def test_a_value_of_a_megabyte_is_one_argument() -> None:
    value = "a b;" * 250_000
    assert argv("printf {{ v }}", parameters={"v": value}) == ["printf", value]


@pytest.mark.parametrize(
    "template",
    ["echo $GREETING", "echo a | tr a b", "echo a > out.txt", "cd /tmp && ls", "echo ~", "x=1 env"],
)
def test_a_template_with_shell_syntax_is_wrapped_in_sh_c(template: str) -> None:
    assert argv(template) == ["/bin/sh", "-c", template]


def test_a_template_renders_before_it_is_wrapped() -> None:
    command = argv("echo {{ a }} | tr {{ b }} x", parameters={"a": "abc", "b": "b"})
    assert command == ["/bin/sh", "-c", "echo abc | tr b x"]
    assert output(command) == "axc\n"


def test_a_missing_parameter_is_an_app_error_naming_it() -> None:
    with pytest.raises(AppError, match="needs parameter 'msg'"):
        app_argv(app("echo {{ msg }}"), job())


def test_a_shell_preamble_runs_first_then_execs_the_command() -> None:
    command = argv("printenv GREETING", shell_preamble="export GREETING=hi")
    assert command == ["/bin/sh", "-c", "export GREETING=hi\nexec printenv GREETING"]
    assert output(command) == "hi\n"


def test_a_shell_preamble_wraps_a_shell_command_as_one_quoted_word() -> None:
    command = argv("echo $GREETING there", shell_preamble="export GREETING=hi")
    assert command == ["/bin/sh", "-c", "export GREETING=hi\nexec /bin/sh -c 'echo $GREETING there'"]
    assert output(command) == "hi there\n"


def test_a_blank_preamble_adds_no_shell() -> None:
    assert argv("echo hi", shell_preamble="  \n") == ["echo", "hi"]


# ----- MPI ------------------------------------------------------------------------------------


def test_mpi_wraps_the_command_in_the_sites_mpiexec_with_hosts_ranks_and_environment() -> None:
    command = argv("echo hi", use_mpi=True, env={"BALSAMD_JOB_ID": "J1"}, num_nodes=2, ranks_per_node=3)
    assert command == [
        MPIEXEC, "-n", "6", "--ppn", "3", "-genv", "BALSAMD_JOB_ID", "J1", "--hosts", "h1,h2", "echo", "hi",
    ]  # fmt: skip


def test_mpi_wraps_the_sh_c_of_a_shell_command() -> None:
    command = argv("echo $PMI_RANK", use_mpi=True)
    assert command[-3:] == ["/bin/sh", "-c", "echo $PMI_RANK"]
    assert command[0] == MPIEXEC


def test_a_preamble_runs_before_mpiexec_in_the_same_shell() -> None:
    command = argv("echo hi", use_mpi=True, shell_preamble="module load mpi", num_nodes=2)
    preamble, launch = command[2].split("\n")
    assert command[:2] == ["/bin/sh", "-c"]
    assert preamble == "module load mpi"
    assert shlex.split(launch) == ["exec", *argv("echo hi", use_mpi=True, num_nodes=2)]


def test_mpi_launch_params_replace_or_extend_the_flavors_options() -> None:
    command = argv("true", use_mpi=True, launch_params={"ppn": "7", "bind-to": "core"})
    assert command == [MPIEXEC, "-n", "1", "--ppn", "7", "--hosts", "h1", "--bind-to", "core", "true"]


def test_the_built_mpi_command_runs_ranks_on_both_posed_hosts_with_the_environment() -> None:
    mpiexec = require_mpiexec()
    the_app, the_job = app('echo "$PMI_RANK $PMI_HOSTNAME $TOLD"'), job(num_nodes=2)
    command = run_argv(
        the_app, the_job, placement("localhost", "127.0.0.1"), LauncherSettings(mpiexec=mpiexec),
        True, {"TOLD": "told"},
    )  # fmt: skip
    lines = sorted(output(command, env={"TOLD": "not passed"}).splitlines())
    assert lines == ["0 localhost told", "1 127.0.0.1 told"]


# ----- Python apps ----------------------------------------------------------------------------


def test_a_python_app_runs_the_rank_entry_point_with_this_interpreter() -> None:
    assert argv("", kind=AppKind.PYTHON) == RANK_ENTRY


def test_a_multi_rank_python_app_runs_the_rank_entry_point_under_mpiexec() -> None:
    command = argv("", use_mpi=True, kind=AppKind.PYTHON, ranks_per_node=2)
    assert command[:5] == [MPIEXEC, "-n", "2", "--ppn", "2"]
    assert command[-len(RANK_ENTRY) :] == RANK_ENTRY


# ----- environment ----------------------------------------------------------------------------


def test_the_job_environment_names_the_job_site_workdir_and_threads() -> None:
    env = job_environment(job(threads_per_rank=6), app("true"), placement(), "/sites/s", ["CUDA_VISIBLE_DEVICES"])
    assert env == {
        "BALSAMD_JOB_ID": "J1", "BALSAMD_APP": "a", "BALSAMD_SITE": "/sites/s",
        "BALSAMD_WORKDIR": "runs/1", "OMP_NUM_THREADS": "6",
    }  # fmt: skip


def test_gpu_ids_of_the_first_host_bind_every_gpu_variable() -> None:
    variables = ["CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"]
    env = job_environment(job(), app("true"), placement("h1", gpus=[1, 3]), "/s", variables)
    assert (env["CUDA_VISIBLE_DEVICES"], env["ROCR_VISIBLE_DEVICES"]) == ("1,3", "1,3")


def test_app_environment_is_added_but_cannot_override_balsamd_variables() -> None:
    the_app = app("true", environment={"FOO": "bar", "BALSAMD_JOB_ID": "forged", "OMP_NUM_THREADS": "99"})
    env = job_environment(job(threads_per_rank=2), the_app, placement(), "/s", [])
    assert (env["FOO"], env["BALSAMD_JOB_ID"], env["OMP_NUM_THREADS"]) == ("bar", "J1", "2")


def test_python_apps_get_a_pythonpath_that_imports_this_balsamd() -> None:
    env = job_environment(job(), app(kind=AppKind.PYTHON), placement(), "/s", [])
    found = subprocess.run(
        [sys.executable, "-c", "import balsamd; print(balsamd.__file__)"],
        capture_output=True, text=True, check=True, cwd="/", env={"PYTHONPATH": env["PYTHONPATH"]},
    ).stdout.strip()  # fmt: skip
    import balsamd

    assert found == balsamd.__file__


# ----- GPU binding ----------------------------------------------------------------------------


def test_gpu_ids_are_bound_through_each_configured_variable() -> None:
    assert gpu_environment([0, 1], ["CUDA_VISIBLE_DEVICES"]) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert gpu_environment([3], ["ZE_AFFINITY_MASK", "ROCR_VISIBLE_DEVICES"]) == {
        "ZE_AFFINITY_MASK": "3",
        "ROCR_VISIBLE_DEVICES": "3",
    }


def test_a_run_without_gpus_leaves_gpu_variables_alone() -> None:
    assert gpu_environment([], ["CUDA_VISIBLE_DEVICES"]) == {}
