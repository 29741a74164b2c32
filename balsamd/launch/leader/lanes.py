"""Lanes: a placement held by a Python run on a warm worker, and the jobs queued to take it next.

Short Python runs are queued on their worker behind the run holding a placement and take over
that placement in turn (``NodeManager.transfer``): they start back to back, without a launcher
step between.  Jobs join a lane only if they are of its app and shape, as deep as the app's
run time allows (``policy.followers``).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from balsamd.launch.leader.resources import NodeManager, Shape, shape_of
from balsamd.launch.running.protocol import Placement, Runner
from balsamd.models import Job


@dataclass(eq=False)
class Lane:
    placement: Placement
    app: str
    shape: Shape
    queue: collections.deque[Job] = field(default_factory=collections.deque)


class Lanes:
    """Every lane of the launcher, by the job holding its placement and by each queued job."""

    def __init__(self, nodes: NodeManager) -> None:
        self.nodes = nodes
        self._by_holder: dict[str, Lane] = {}
        self._of: dict[str, Lane] = {}  # holders and queued jobs

    def __bool__(self) -> bool:
        return bool(self._by_holder)

    def open(self, job: Job, placement: Placement) -> None:
        """``job`` runs with ``placement`` on a worker that could queue more behind it."""
        lane = Lane(placement, job.app, shape_of(job))
        self._by_holder[job.id] = lane
        self._of[job.id] = lane

    def holding(self, job_id: str) -> Placement | None:
        """The placement ``job_id`` holds in its lane (None when it waits in one, or has none)."""
        lane = self._by_holder.get(job_id)
        return None if lane is None else lane.placement

    def queued(self, job_id: str) -> list[str]:
        """The jobs waiting in the lane ``job_id`` holds, in order."""
        lane = self._by_holder.get(job_id)
        return [] if lane is None else [j.id for j in lane.queue]

    def free(self, job: Job) -> None:
        """A run ended: give back its placement, or pass it to the next job in its lane."""
        job_id = job.id
        lane = self._of.pop(job_id, None)
        if lane is None:
            self.nodes.release(job_id)
            return
        if lane.placement.job_id != job_id:  # not its turn yet: it holds no placement
            with contextlib.suppress(ValueError):
                lane.queue.remove(job)
            return
        del self._by_holder[job_id]
        if lane.queue:
            nxt = lane.queue.popleft()
            lane.placement = self.nodes.transfer(job_id, nxt.id)
            self._by_holder[nxt.id] = lane
        else:
            self.nodes.release(job_id)

    def hand_back(self, job: Job) -> None:
        """A job its runner never started: the lane it held closes (those queued behind it come
        back too), or it leaves the lane it waited in."""
        lane = self._of.pop(job.id, None)
        if lane is not None and lane.placement.job_id == job.id:
            del self._by_holder[job.id]
            self.nodes.release(job.id)
        elif lane is not None:
            lane.queue.remove(job)

    def fill(self, backlog: collections.deque[Job], runner: Runner, room: Callable[[str], int]) -> list[Job]:
        """Queue jobs from the head of ``backlog`` behind runs of the same app and shape, up to
        ``room(app)`` per lane; returns the jobs the runner took."""
        taken: list[Job] = []
        for lane in list(self._by_holder.values()):
            space = room(lane.app) - len(lane.queue)
            batch: list[Job] = []
            while backlog and len(batch) < space:
                job = backlog[0]
                if job.app != lane.app or shape_of(job) != lane.shape or not runner.can_follow(job):
                    break
                batch.append(backlog.popleft())
            if not batch:
                continue
            if not runner.follow(lane.placement.job_id, batch, lane.placement):
                backlog.extendleft(reversed(batch))
                continue
            lane.queue.extend(batch)
            for job in batch:
                self._of[job.id] = lane
            taken += batch
        return taken
