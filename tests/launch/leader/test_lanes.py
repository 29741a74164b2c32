"""Lanes: short Python runs queued behind the run holding a placement take it over in turn;
only jobs of its app and shape join, as deep as there is room."""

from __future__ import annotations

import collections

import pytest

from balsamd.launch.leader.lanes import Lanes
from balsamd.launch.leader.resources import NodeManager
from balsamd.models import Job

from .fakes import Runner, job


class Following(Runner):
    """A runner whose runs may wait behind one another (unless told to refuse)."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.followed: list[tuple[str, list[str]]] = []

    def can_follow(self, job: Job) -> bool:
        return job.app == "a"

    def follow(self, after: str, jobs: list[Job], placement: object) -> bool:  # type: ignore[override]
        if self.refuse:
            return False
        self.followed.append((after, [j.id for j in jobs]))
        return True


@pytest.fixture
def nodes() -> NodeManager:
    return NodeManager(["h"], 4, 0)


def lane_of(nodes: NodeManager, lanes: Lanes, holder: Job) -> None:
    placement = nodes.place(holder)
    assert placement is not None
    lanes.open(holder, placement)


def backlog(*jobs: Job) -> collections.deque[Job]:
    return collections.deque(jobs)


def test_jobs_of_the_same_app_and_shape_join_a_lane_as_deep_as_there_is_room(nodes: NodeManager) -> None:
    lanes, runner = Lanes(nodes), Following()
    lane_of(nodes, lanes, job("h0"))
    waiting = backlog(job("q1"), job("q2"), job("q3"))
    taken = lanes.fill(waiting, runner, room=lambda app: 2)
    assert [j.id for j in taken] == ["q1", "q2"]
    assert runner.followed == [("h0", ["q1", "q2"])]
    assert lanes.queued("h0") == ["q1", "q2"] and [j.id for j in waiting] == ["q3"]


def test_a_job_of_another_shape_or_one_that_cannot_follow_stops_the_filling(nodes: NodeManager) -> None:
    lanes = Lanes(nodes)
    lane_of(nodes, lanes, job("h0"))
    for stranger in (job("wide", threads_per_rank=2), Job(id="cmd", app="b", workdir="w")):
        waiting = backlog(stranger, job("q1"))
        assert lanes.fill(waiting, Following(), room=lambda app: 8) == []
        assert [j.id for j in waiting] == [stranger.id, "q1"]


def test_jobs_a_worker_refuses_go_back_to_the_head_of_the_backlog(nodes: NodeManager) -> None:
    lanes = Lanes(nodes)
    lane_of(nodes, lanes, job("h0"))
    waiting = backlog(job("q1"), job("q2"))
    assert lanes.fill(waiting, Following(refuse=True), room=lambda app: 8) == []
    assert [j.id for j in waiting] == ["q1", "q2"] and lanes.queued("h0") == []


def test_when_the_holder_ends_the_next_job_takes_over_its_placement(nodes: NodeManager) -> None:
    lanes = Lanes(nodes)
    holder = job("h0")
    lane_of(nodes, lanes, holder)
    q1, q2 = job("q1"), job("q2")
    lanes.fill(backlog(q1, q2), Following(), room=lambda app: 8)
    lanes.free(holder)
    moved = lanes.holding("q1")
    assert moved is not None and moved.job_id == "q1"
    assert nodes.placements == {"q1": moved}  # the same charge, not a second one
    lanes.free(q1)
    lanes.free(q2)
    assert nodes.placements == {} and not lanes


def test_a_queued_job_that_ends_before_its_turn_leaves_the_lane(nodes: NodeManager) -> None:
    lanes = Lanes(nodes)
    holder = job("h0")
    lane_of(nodes, lanes, holder)
    q1, q2 = job("q1"), job("q2")
    lanes.fill(backlog(q1, q2), Following(), room=lambda app: 8)
    lanes.free(q1)
    assert lanes.queued("h0") == ["q2"]
    assert list(nodes.placements) == ["h0"]


def test_a_holder_handed_back_closes_its_lane_and_gives_back_its_placement(nodes: NodeManager) -> None:
    lanes = Lanes(nodes)
    holder, q1 = job("h0"), job("q1")
    lane_of(nodes, lanes, holder)
    lanes.fill(backlog(q1), Following(), room=lambda app: 8)
    lanes.hand_back(holder)
    lanes.hand_back(q1)
    assert nodes.placements == {} and not lanes


def test_a_run_outside_any_lane_gives_its_placement_back_when_it_ends(nodes: NodeManager) -> None:
    alone = job("alone")
    assert nodes.place(alone) is not None
    Lanes(nodes).free(alone)
    assert nodes.placements == {}
