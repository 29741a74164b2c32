"""MPI launch commands: the exact argv each launcher flavor receives."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from balsamd.config import MpiFlavor
from balsamd.launch.running.mpi import MPI_FLAVORS, build_mpi_command

APP = ["/apps/sim", "--input", "a b.txt"]


def command(flavor: str, **overrides: Any) -> list[str]:
    """Two hosts, 4 ranks each, 4 threads per rank on 2-way hyperthreaded cores, 1 GPU each."""
    spec: dict[str, Any] = {
        "app_argv": APP,
        "hosts": ["h1", "h2"],
        "ranks_per_node": 4,
        "threads_per_rank": 4,
        "threads_per_core": 2,
        "gpus_per_rank": 1.0,
        "env": {"OMP_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "0,1"},
    }
    spec.update(overrides)
    return build_mpi_command(flavor, **spec)


# --- each flavor's shape ----------------------------------------------------------------------


def test_mpich_uses_ppn_genv_pairs_and_a_host_list() -> None:
    assert command("mpich") == [
        "mpiexec", "-n", "8", "--ppn", "4",
        "-genv", "OMP_NUM_THREADS", "4", "-genv", "CUDA_VISIBLE_DEVICES", "0,1",
        "--hosts", "h1,h2",
        *APP,
    ]  # fmt: skip


def test_openmpi_maps_ranks_per_node_and_exports_with_x() -> None:
    assert command("openmpi") == [
        "mpirun", "-n", "8", "--map-by", "ppr:4:node",
        "-x", "OMP_NUM_THREADS=4", "-x", "CUDA_VISIBLE_DEVICES=0,1",
        "-H", "h1:4,h2:4",
        *APP,
    ]  # fmt: skip


def test_srun_names_nodes_and_cpus_per_task_and_exports_all_plus_the_run_env() -> None:
    assert command("srun") == [
        "srun", "-n", "8", "--ntasks-per-node", "4", "--nodelist", "h1,h2", "--nodes", "2",
        "--cpus-per-task", "2",
        '--export=ALL,OMP_NUM_THREADS=4,"CUDA_VISIBLE_DEVICES=0,1"',
        *APP,
    ]  # fmt: skip


def test_srun_quotes_only_assignments_whose_value_holds_a_comma() -> None:
    argv = command("srun", env={"A": "1", "B": "x,y"})
    assert '--export=ALL,A=1,"B=x,y"' in argv


def test_srun_without_run_env_still_exports_the_launcher_environment() -> None:
    assert "--export=ALL" in command("srun", env={})


def test_srun_refuses_values_with_quotes_it_cannot_pass() -> None:
    with pytest.raises(ValueError, match="srun --export cannot carry quote characters"):
        command("srun", env={"MSG": "it's"})


def test_aprun_places_on_nids_with_depth_binding_and_e_variables() -> None:
    assert command("aprun", hosts=["1", "2"]) == [
        "aprun", "-n", "8", "-N", "4", "-L", "1,2", "-cc", "depth", "-d", "4", "-j", "2",
        "-e", "OMP_NUM_THREADS=4", "-e", "CUDA_VISIBLE_DEVICES=0,1",
        *APP,
    ]  # fmt: skip


def test_jsrun_makes_one_resource_set_per_rank_with_its_cores_and_gpus() -> None:
    assert command("jsrun") == [
        "jsrun", "--nrs", "8", "--tasks_per_rs", "1", "--rs_per_host", "4",
        "--cpu_per_rs", "2", "--gpu_per_rs", "1",
        "-E", "OMP_NUM_THREADS=4", "-E", "CUDA_VISIBLE_DEVICES=0,1",
        *APP,
    ]  # fmt: skip


def test_jsrun_cannot_split_a_gpu_between_ranks() -> None:
    with pytest.raises(ValueError, match=r"jsrun gives each rank whole GPUs; gpus_per_rank=0\.5"):
        command("jsrun", gpus_per_rank=0.5)


def test_pbs_cray_mpiexec_binds_by_depth_and_passes_env_assignments() -> None:
    assert command("pbs-cray") == [
        "mpiexec", "-np", "8", "-ppn", "4", "--hosts", "h1,h2", "--cpu-bind", "depth", "-d", "4",
        "--env", "OMP_NUM_THREADS=4", "--env", "CUDA_VISIBLE_DEVICES=0,1",
        *APP,
    ]  # fmt: skip


@pytest.mark.parametrize("flavor", ["srun", "jsrun"])
def test_cores_per_rank_round_up_threads_over_threads_per_core(flavor: str) -> None:
    argv = command(flavor, threads_per_rank=3, threads_per_core=2)
    option = "--cpus-per-task" if flavor == "srun" else "--cpu_per_rs"
    assert argv[argv.index(option) + 1] == "2"


def test_the_config_flavors_are_exactly_the_buildable_ones() -> None:
    assert set(MPI_FLAVORS) == set(get_args(MpiFlavor))


@pytest.mark.parametrize("flavor", MPI_FLAVORS)
def test_the_application_argv_ends_the_command_unjoined(flavor: str) -> None:
    argv = command(flavor, hosts=["1"])
    assert argv[-3:] == APP


# --- launch params and the launcher program ---------------------------------------------------


def test_launch_params_become_long_options_before_the_command() -> None:
    argv = command("mpich", env={}, launch_params={"bind_to": "core", "verbose": ""})
    assert argv == [
        "mpiexec", "-n", "8", "--ppn", "4", "--hosts", "h1,h2",
        "--bind-to", "core", "--verbose",
        *APP,
    ]  # fmt: skip


def test_a_launch_param_replaces_the_option_the_flavor_sets() -> None:
    argv = command("pbs-cray", env={}, launch_params={"cpu_bind": "list:0-3"})
    assert argv[: argv.index(APP[0])] == [
        "mpiexec", "-np", "8", "-ppn", "4", "--hosts", "h1,h2", "--cpu-bind", "list:0-3", "-d", "4",
    ]  # fmt: skip


def test_a_launch_param_named_like_the_env_option_adds_to_the_variables() -> None:
    argv = command("pbs-cray", env={"A": "1"}, launch_params={"env": "B=2"})
    assert argv[-len(APP) - 4 : -len(APP)] == ["--env", "A=1", "--env", "B=2"]


def test_jsrun_launch_params_keep_their_underscores() -> None:
    argv = command("jsrun", env={}, launch_params={"latency_priority": "gpu-cpu", "smpiargs": ""})
    assert argv[-len(APP) - 3 : -len(APP)] == ["--latency_priority", "gpu-cpu", "--smpiargs"]


@pytest.mark.parametrize("key", ["", "-n", "a b", "x=1"])
def test_launch_param_keys_must_be_option_names(key: str) -> None:
    with pytest.raises(ValueError, match="is not an option name"):
        command("mpich", launch_params={key: "1"})


@pytest.mark.parametrize("flavor", ["mpich", "openmpi", "pbs-cray"])
def test_the_site_can_name_its_own_mpiexec(flavor: str) -> None:
    assert command(flavor, executable="/opt/site/bin/mpiexec")[0] == "/opt/site/bin/mpiexec"


@pytest.mark.parametrize("flavor", ["srun", "aprun", "jsrun"])
def test_scheduler_launchers_are_called_by_name_whatever_the_mpiexec_setting(flavor: str) -> None:
    assert command(flavor, executable="mpiexec")[0] == flavor


@pytest.mark.parametrize(
    ("flavor", "program"),
    [("mpich", "mpiexec"), ("openmpi", "mpirun"), ("pbs-cray", "mpiexec")],
)
def test_without_a_site_program_each_flavor_uses_its_usual_one(flavor: str, program: str) -> None:
    assert command(flavor)[0] == program


# --- refusals ---------------------------------------------------------------------------------


def test_an_unknown_flavor_is_an_error_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError) as error:
        command("mvapich")
    assert str(error.value) == (
        "unknown MPI flavor 'mvapich'; valid flavors: mpich, openmpi, srun, aprun, jsrun, pbs-cray"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"app_argv": []}, "nothing to launch"),
        ({"hosts": []}, "at least one host"),
        ({"ranks_per_node": 0}, "ranks_per_node must be at least 1"),
        ({"threads_per_rank": 0}, "threads_per_rank must be at least 1"),
        ({"threads_per_core": 0}, "threads_per_core must be at least 1"),
        ({"gpus_per_rank": -1.0}, "gpus_per_rank must be >= 0"),
        ({"env": {"BAD=NAME": "1"}}, "not a valid environment variable name"),
    ],
)
def test_impossible_launches_are_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        command("mpich", **overrides)
