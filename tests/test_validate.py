"""Checks on a job request before anything is written: workdir, parameters, resources."""

from __future__ import annotations

import pytest

from balsamd.config import NodeSettings
from balsamd.models import App, AppParameter, Job
from balsamd.validate import JobSpecError, normalize_workdir, resolve_parameters, resource_problems


@pytest.mark.parametrize(
    ("given", "normal"),
    [("a", "a"), ("a/b/", "a/b"), ("./a", "a"), ("a//b", "a/b"), ("a/./b", "a/b"), ("..a/b..", "..a/b..")],
)
def test_workdir_is_normalized(given: str, normal: str) -> None:
    assert normalize_workdir(given) == normal


@pytest.mark.parametrize(
    ("workdir", "message"),
    [
        ("", "workdir is empty; give a path relative to the site's data/ directory"),
        ("  ", "workdir is empty; give a path relative to the site's data/ directory"),
        ("/abs/w", "workdir '/abs/w' is absolute; give a path relative to the site's data/"),
        ("..", "workdir '..' contains '..'; give a path inside the site's data/ directory without it"),
        ("../x", "workdir '../x' contains '..'; give a path inside the site's data/ directory without it"),
        (
            "a/../b",
            "workdir 'a/../b' contains '..'; give a path inside the site's data/ directory without it",
        ),
        ("a/..", "workdir 'a/..' contains '..'; give a path inside the site's data/ directory without it"),
        (".", "workdir '.' is data/ itself; give each job its own directory below it"),
        ("a/b\0", "workdir 'a/b\\x00' contains a control character; give a plain relative path"),
        ("a\nb", "workdir 'a\\nb' contains a control character; give a plain relative path"),
    ],
)
def test_bad_workdirs(workdir: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_workdir(workdir)
    assert str(info.value) == message


APP = App(
    name="sim",
    parameters={
        "x": AppParameter(required=True, help="the input"),
        "y": AppParameter(required=True),
        "steps": AppParameter(required=False, default=10),
    },
)


def test_parameters_get_defaults() -> None:
    assert resolve_parameters(APP, {"x": 1, "y": 2}) == ({"x": 1, "y": 2, "steps": 10}, [])
    assert resolve_parameters(APP, {"x": 1, "y": 2, "steps": 3}) == ({"x": 1, "y": 2, "steps": 3}, [])


def test_missing_and_unknown_parameters() -> None:
    _, problems = resolve_parameters(APP, {"z": 1, "a": 2})
    assert problems == [
        "unknown parameter(s) a, z for app sim (it takes: steps, x, y)",
        "missing required parameter x (the input): add -p x=VALUE",
        "missing required parameter y: add -p y=VALUE",
    ]


def test_parameters_of_an_app_that_takes_none() -> None:
    assert resolve_parameters(App(name="noop"), {"a": 1})[1] == ["unknown parameter(s) a for app noop (it takes: none)"]


NODES = NodeSettings(cpus_per_node=8, gpus_per_node=4, max_nodes=4)


def job(**resources) -> Job:
    return Job(id="J", app="a", workdir="w", **resources)


@pytest.mark.parametrize(
    "resources",
    [
        {},
        {"num_nodes": 4, "ranks_per_node": 8},
        {"ranks_per_node": 4, "threads_per_rank": 2},
        {"ranks_per_node": 8, "threads_per_rank": 2, "threads_per_core": 2},
        {"ranks_per_node": 8, "gpus_per_rank": 0.5},
        {"node_packing_count": 8, "gpus_per_rank": 0.5, "wall_time_min": 30},
    ],
)
def test_jobs_that_fit(resources: dict) -> None:
    assert resource_problems(job(**resources), NODES) == []


def test_too_many_nodes() -> None:
    assert resource_problems(job(num_nodes=5), NODES) == [
        "num_nodes=5 exceeds the site's max_nodes=4 (lower --num-nodes, or raise [nodes] max_nodes in settings.toml)"
    ]


def test_too_many_cpus() -> None:
    assert resource_problems(job(ranks_per_node=3, threads_per_rank=3), NODES) == [
        "3 ranks x 3 threads / 1 threads per core needs 9 CPUs per node but nodes have 8 "
        "(lower --ranks-per-node or --threads-per-rank, or spread over more nodes)"
    ]


def test_too_many_gpus() -> None:
    assert resource_problems(job(ranks_per_node=3, gpus_per_rank=1.5), NODES) == [
        "3 ranks x 1.5 GPUs needs 4.5 GPUs per node but nodes have 4 (lower --gpus-per-rank, "
        "or set [nodes] gpus_per_node in settings.toml if the nodes have GPUs)"
    ]


def test_packing_multi_node_jobs() -> None:
    assert resource_problems(job(num_nodes=2, node_packing_count=2), NODES) == [
        "node_packing_count > 1 only applies to single-node jobs; set it to 1"
    ]


def test_every_shape_problem_at_once() -> None:
    assert len(resource_problems(job(num_nodes=9, ranks_per_node=9, gpus_per_rank=1), NODES)) == 3


def test_impossible_numbers_are_reported_before_the_shape() -> None:
    problems = resource_problems(
        job(num_nodes=0, threads_per_core=0, gpus_per_rank=-1, wall_time_min=float("inf")), NODES
    )
    assert problems == [
        "num_nodes must be at least 1 (got 0)",
        "threads_per_core must be at least 1 (got 0)",
        "gpus_per_rank must be a non-negative number (got -1)",
        "wall_time_min must be a non-negative number (got inf)",
    ]


def test_job_spec_error_lists_every_problem() -> None:
    exc = JobSpecError("job 3", ["first", "second"])
    assert str(exc) == "job 3: first; second"
    assert exc.problems == ["first", "second"]
    assert isinstance(exc, ValueError)


def test_wall_time_longer_than_the_longest_batch_job() -> None:
    assert resource_problems(job(wall_time_min=60), NODES, max_wall_time_min=60) == []
    assert resource_problems(job(wall_time_min=90), NODES, max_wall_time_min=60) == [
        "wall_time_min=90 is longer than the site's longest batch job (max_wall_time_min=60; "
        "lower --wall-time-min, or raise [scheduler] max_wall_time_min in settings.toml)"
    ]
