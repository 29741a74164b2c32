"""A batch-job request checked against the site's limits: every problem, each saying what to change."""

from __future__ import annotations

from balsamd.config import Settings
from balsamd.models import BatchJob
from balsamd.sched.limits import batch_problems


def site(**scheduler: object) -> Settings:
    settings = Settings()
    settings.nodes.max_nodes = 4
    settings.scheduler.max_wall_time_min = 120
    settings.scheduler.max_queued = 3
    for key, value in scheduler.items():
        setattr(settings.scheduler, key, value)
    return settings


def request(num_nodes: int = 2, wall_time_min: int = 60, queue: str = "debug", project: str = "p") -> BatchJob:
    return BatchJob(id="b1", num_nodes=num_nodes, wall_time_min=wall_time_min, queue=queue, project=project)


def test_a_request_within_the_limits_has_no_problems():
    assert batch_problems(request(), site(), active=0) == []
    assert batch_problems(request(num_nodes=4, wall_time_min=120), site(), active=2) == []


def test_too_few_nodes():
    assert batch_problems(request(num_nodes=0), site(), 0) == ["--num-nodes must be at least 1 (got 0)"]


def test_more_nodes_than_the_site_allows():
    assert batch_problems(request(num_nodes=5), site(), 0) == [
        "--num-nodes 5 exceeds the site's max_nodes=4 (lower it, or raise [nodes] max_nodes in settings.toml)"
    ]


def test_too_little_wall_time():
    assert batch_problems(request(wall_time_min=0), site(), 0) == ["--wall-time-min must be at least 1 (got 0)"]


def test_more_wall_time_than_the_site_allows():
    assert batch_problems(request(wall_time_min=121), site(), 0) == [
        "--wall-time-min 121 exceeds [scheduler] max_wall_time_min=120"
    ]


def test_a_queue_that_is_not_allowed():
    settings = site(allowed_queues=["debug", "prod"])
    assert batch_problems(request(queue="prod"), settings, 0) == []
    assert batch_problems(request(queue="gpu"), settings, 0) == [
        "queue 'gpu' is not allowed here; use one of: debug, prod"
    ]


def test_a_project_that_is_not_allowed():
    settings = site(allowed_projects=["chem"])
    assert batch_problems(request(project="chem"), settings, 0) == []
    assert batch_problems(request(project=""), settings, 0) == ["project '' is not allowed here; use one of: chem"]


def test_max_queued_reached():
    assert batch_problems(request(), site(), active=3) == [
        "3 batch jobs are already pending, queued or running ([scheduler] max_queued=3); "
        "wait for one to finish or remove one with `balsamd queue rm ID`"
    ]


def test_every_problem_is_reported_at_once():
    settings = site(allowed_queues=["debug"], allowed_projects=["chem"])
    problems = batch_problems(request(num_nodes=9, wall_time_min=-1, queue="x", project="y"), settings, 5)
    assert [p.split()[0] for p in problems] == ["--num-nodes", "--wall-time-min", "queue", "project", "5"]
