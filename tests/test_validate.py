"""What a site accepts, checked before anything is written: jobs (workdir, parameters,
resources) and batch jobs (the site's limits, and fields that go into job scripts)."""

from __future__ import annotations

import msgspec
import pytest

from balsamd.config import NodeSettings, Settings
from balsamd.models import App, AppParameter, BatchJob, Job
from balsamd.validate import (
    JobSpecError,
    SiteRules,
    batch_problems,
    normalize_workdir,
    resolve_parameters,
    resource_problems,
)


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
        (
            "a/b\0",
            "workdir 'a/b\\x00' contains a NUL character (\\x00), which no command line or database text can "
            "hold; remove it",
        ),
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
        "unknown parameter(s) a, z for app sim (it takes: steps, x, y); correct the name or leave it out",
        "missing required parameter x (the input): add -p x=VALUE",
        "missing required parameter y: add -p y=VALUE",
    ]


def test_parameters_of_an_app_that_takes_none() -> None:
    assert resolve_parameters(App(name="noop"), {"a": 1})[1] == [
        "unknown parameter(s) a for app noop (it takes: none); correct the name or leave it out"
    ]


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
        "num_nodes must be a whole number from 1 to 1048576 (got 0); give one in that range",
        "threads_per_core must be a whole number from 1 to 1048576 (got 0); give one in that range",
        "gpus_per_rank must be a finite number, 0 or more (got -1); give one",
        "wall_time_min must be a finite number, 0 or more (got inf); give one",
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


# ----- batch jobs -------------------------------------------------------------------------------


def site(**scheduler: object) -> SiteRules:
    settings = Settings()
    settings.nodes.max_nodes = 4
    settings.scheduler.max_wall_time_min = 120
    settings.scheduler.max_queued = 3
    for key, value in scheduler.items():
        setattr(settings.scheduler, key, value)
    return SiteRules.of(settings)


def request(num_nodes: int = 2, wall_time_min: int = 60, queue: str = "debug", project: str = "p") -> BatchJob:
    return BatchJob(id="b1", num_nodes=num_nodes, wall_time_min=wall_time_min, queue=queue, project=project)


def test_a_batch_request_within_the_limits_has_no_problems():
    assert batch_problems(request(), site(), active=0) == []
    assert batch_problems(request(num_nodes=4, wall_time_min=120), site(), active=2) == []


def test_batch_too_few_nodes():
    assert batch_problems(request(num_nodes=0), site(), 0) == ["--num-nodes must be at least 1 (got 0); give 1 or more"]


def test_batch_more_nodes_than_the_site_allows():
    assert batch_problems(request(num_nodes=5), site(), 0) == [
        "--num-nodes 5 exceeds the site's max_nodes=4 (lower it, or raise [nodes] max_nodes in settings.toml)"
    ]


def test_batch_too_little_wall_time():
    assert batch_problems(request(wall_time_min=0), site(), 0) == [
        "--wall-time-min must be at least 1 (got 0); give 1 or more"
    ]


def test_batch_more_wall_time_than_the_site_allows():
    assert batch_problems(request(wall_time_min=121), site(), 0) == [
        "--wall-time-min 121 exceeds [scheduler] max_wall_time_min=120"
    ]


def test_batch_a_queue_that_is_not_allowed():
    settings = site(allowed_queues=["debug", "prod"])
    assert batch_problems(request(queue="prod"), settings, 0) == []
    assert batch_problems(request(queue="gpu"), settings, 0) == [
        "queue 'gpu' is not allowed here; use one of: debug, prod"
    ]


def test_batch_a_project_that_is_not_allowed():
    settings = site(allowed_projects=["chem"])
    assert batch_problems(request(project="chem"), settings, 0) == []
    assert batch_problems(request(project=""), settings, 0) == ["project '' is not allowed here; use one of: chem"]


def test_batch_max_queued_reached():
    assert batch_problems(request(), site(), active=3) == [
        "3 batch jobs are already pending, queued or running ([scheduler] max_queued=3); "
        "wait for one to finish or remove one with `balsamd queue rm ID`"
    ]


def test_batch_every_problem_is_reported_at_once():
    settings = site(allowed_queues=["debug"], allowed_projects=["chem"])
    problems = batch_problems(request(num_nodes=9, wall_time_min=-1, queue="x", project="y"), settings, 5)
    assert [p.split()[0] for p in problems] == ["--num-nodes", "--wall-time-min", "queue", "project", "5"]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        (
            "id",
            "b1\nrm -rf ~",
            "id 'b1\\nrm -rf ~' must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ),
        (
            "id",
            "../../x",
            "id '../../x' must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ),
        (
            "queue",
            "debug\n#SBATCH --wrap=x",
            "queue 'debug\\n#SBATCH --wrap=x' is not a scheduler's queue name (letters, digits and _.@+:-, one word); "
            "give the scheduler's name for it",
        ),
        (
            "project",
            "p x",
            "project 'p x' is not a scheduler's project name (letters, digits and _.@+:-, one word); "
            "give the scheduler's name for it",
        ),
        (
            "filter_tags",
            {"a=b": "c"},
            "filter tag key 'a=b' must be one word without '=', spaces or control characters; give KEY=VALUE "
            "with a KEY such as experiment or run_1",
        ),
        ("origin", "cron", "origin 'cron' is neither 'user' nor 'elastic'"),
    ],
)
def test_batch_fields_that_go_into_job_scripts_are_one_word_each(field, value, problem):
    batch = msgspec.structs.replace(request(), **{field: value})
    assert batch_problems(batch, site(), 0) == [problem]
