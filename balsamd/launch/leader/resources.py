"""The node manager: which runs sit on which nodes, CPUs and GPUs.

Pure bookkeeping in memory, so packing rules are tested without processes.  Single-node jobs
are packed first-fit by CPUs, GPUs and occupancy (1 / node_packing_count); multi-node jobs take
whole idle nodes.  GPUs are shared in fractions: each GPU id has a capacity of 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from balsamd.launch.running.protocol import Placement

# Float slack so that, e.g., three runs of occupancy 1/3 fill a node exactly.
EPS = 1e-9


class Placeable(Protocol):
    """The resource fields of a job (``balsamd.models.Job`` has them all), read only."""

    @property
    def id(self) -> str: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def ranks_per_node(self) -> int: ...
    @property
    def threads_per_rank(self) -> int: ...
    @property
    def threads_per_core(self) -> int: ...
    @property
    def gpus_per_rank(self) -> float: ...
    @property
    def node_packing_count(self) -> int: ...


class Shape(msgspec.Struct, frozen=True):
    """A job's resource fields alone (its id left blank): jobs mostly share a few shapes, so
    whether one fits is decided once per shape."""

    id: str
    num_nodes: int
    ranks_per_node: int
    threads_per_rank: int
    threads_per_core: int
    gpus_per_rank: float
    node_packing_count: int


def shape_of(job: Placeable) -> Shape:
    return Shape("", job.num_nodes, job.ranks_per_node, job.threads_per_rank, job.threads_per_core,
                 job.gpus_per_rank, job.node_packing_count)  # fmt: skip


@dataclass(frozen=True)
class FreeCapacity:
    """What the launcher could still take, in the terms the claimer asks for."""

    idle_nodes: int  # nodes with nothing running: room for multi-node jobs
    aggregate_free: float  # sum over nodes of 1 - occupancy: the claim's max_aggregate_nodes
    max_free_cpus: float  # most CPUs free on any one node


@dataclass
class NodeState:
    """One node's usage; ``gpu_used[i]`` is the share of GPU ``i`` taken, from 0.0 to 1.0."""

    host: str
    cpus: int
    gpus: int
    used_cpus: float = 0.0
    occupancy: float = 0.0
    gpu_used: list[float] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gpu_used = [0.0] * self.gpus

    @property
    def idle(self) -> bool:
        return not self.job_ids

    @property
    def free_gpu_ids(self) -> list[int]:
        return [i for i, used in enumerate(self.gpu_used) if used <= EPS]

    def _clear(self) -> None:
        """Back to exact zeros once empty, so float rounding never outlives the runs."""
        self.used_cpus = 0.0
        self.occupancy = 0.0
        self.gpu_used = [0.0] * self.gpus


@dataclass(frozen=True)
class _Need:
    cpus: float
    gpus: float
    occupancy: float


_COUNTS = (
    "num_nodes",
    "ranks_per_node",
    "threads_per_rank",
    "threads_per_core",
    "node_packing_count",
)


def _need(job: Placeable) -> _Need:
    for name in _COUNTS:
        if getattr(job, name) < 1:
            raise ValueError(f"job {job.id}: {name} must be at least 1, not {getattr(job, name)}")
    if job.gpus_per_rank < 0:
        raise ValueError(f"job {job.id}: gpus_per_rank must be >= 0, not {job.gpus_per_rank}")
    return _Need(
        cpus=job.ranks_per_node * job.threads_per_rank / job.threads_per_core,
        gpus=job.ranks_per_node * job.gpus_per_rank,
        occupancy=1.0 / job.node_packing_count,
    )


def _pick_gpus(gpu_used: list[float], amount: float) -> dict[int, float] | None:
    """GPU shares for ``amount`` GPUs: whole free GPUs plus one partial share, or None.

    The fractional remainder goes to the fullest GPU that still has room, which keeps whole
    GPUs free for runs that need them.
    """
    whole = math.floor(amount + EPS)
    rest = amount - whole
    shares: dict[int, float] = {}
    if rest > EPS:
        room = [(1.0 - used, i) for i, used in enumerate(gpu_used) if 1.0 - used >= rest - EPS]
        if not room:
            return None
        shares[min(room)[1]] = rest
    free = [i for i, used in enumerate(gpu_used) if used <= EPS and i not in shares][:whole]
    if len(free) < whole:
        return None
    shares.update(dict.fromkeys(free, 1.0))
    return shares


def _fit(node: NodeState, need: _Need) -> dict[int, float] | None:
    if node.used_cpus + need.cpus > node.cpus + EPS:
        return None
    if node.occupancy + need.occupancy > 1.0 + EPS:
        return None
    return _pick_gpus(node.gpu_used, need.gpus)


class NodeManager:
    """Tracks runs on the launcher's nodes; ``place`` reserves, ``release`` gives back."""

    def __init__(self, hosts: Iterable[str], cpus_per_node: int, gpus_per_node: int) -> None:
        hosts = list(hosts)
        if not hosts:
            raise ValueError("a node manager needs at least one host")
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"duplicate hosts in {hosts}")
        if cpus_per_node < 1 or gpus_per_node < 0:
            raise ValueError(
                f"nodes need cpus_per_node >= 1 and gpus_per_node >= 0, not {cpus_per_node} and {gpus_per_node}"
            )
        self.cpus_per_node = cpus_per_node
        self.gpus_per_node = gpus_per_node
        self._nodes = [NodeState(host, cpus_per_node, gpus_per_node) for host in hosts]
        self._by_host = {node.host: node for node in self._nodes}
        self._placed: dict[str, tuple[Placement, dict[str, dict[int, float]]]] = {}
        self._down: list[NodeState] = []

    @property
    def nodes(self) -> tuple[NodeState, ...]:
        """The nodes in host order, for inspection; change them only through this class."""
        return tuple(self._nodes)

    @property
    def placements(self) -> dict[str, Placement]:
        return {job_id: placed for job_id, (placed, _) in self._placed.items()}

    def place(self, job: Placeable) -> Placement | None:
        """Reserve resources for ``job`` now, or return None if they are not free."""
        if job.id in self._placed:
            raise ValueError(f"job {job.id} is already placed")
        need = _need(job)
        if job.num_nodes > 1:
            return self._place_whole_nodes(job, need)
        for node in self._nodes:
            shares = _fit(node, need)
            if shares is not None:
                return self._record(job.id, [node], need.cpus, need.occupancy, [shares])
        return None

    def _place_whole_nodes(self, job: Placeable, need: _Need) -> Placement | None:
        """Multi-node runs own their nodes outright: charged all CPUs, GPUs and occupancy."""
        idle = [node for node in self._nodes if node.idle][: job.num_nodes]
        if len(idle) < job.num_nodes:
            return None
        wanted = _fit(idle[0], need)
        if wanted is None:
            return None
        everything = dict.fromkeys(range(self.gpus_per_node), 1.0)
        return self._record(job.id, idle, float(self.cpus_per_node), 1.0, [everything] * len(idle), sorted(wanted))

    def _record(
        self,
        job_id: str,
        nodes: list[NodeState],
        cpus: float,
        occupancy: float,
        shares: list[dict[int, float]],
        gpu_ids: list[int] | None = None,
    ) -> Placement:
        """Charge each node its share; ``gpu_ids`` overrides the ids the run is bound to."""
        hosts = [node.host for node in nodes]
        placement = Placement(
            job_id=job_id,
            hosts=hosts,
            gpu_ids={
                node.host: sorted(share) if gpu_ids is None else list(gpu_ids)
                for node, share in zip(nodes, shares, strict=True)
            },
            cpus=cpus,
            occupancy=occupancy,
        )
        for node, share in zip(nodes, shares, strict=True):
            node.used_cpus += cpus
            node.occupancy += occupancy
            for gpu, amount in share.items():
                node.gpu_used[gpu] += amount
            node.job_ids.append(job_id)
        self._placed[job_id] = (placement, dict(zip(hosts, shares, strict=True)))
        return placement

    def disable(self, host: str) -> None:
        """Take a node out of service (its worker died): nothing is placed on it again."""
        node = self._by_host.get(host)
        if node is not None and node in self._nodes:
            self._nodes.remove(node)
            self._down.append(node)

    def release(self, job_id: str) -> Placement:
        """Give back exactly what ``place`` reserved for ``job_id``."""
        try:
            placement, shares = self._placed.pop(job_id)
        except KeyError:
            raise KeyError(f"job {job_id} has no placement on this launcher's nodes") from None
        for host in placement.hosts:
            node = self._by_host[host]
            node.job_ids.remove(job_id)
            if node.idle:
                node._clear()
                continue
            node.used_cpus -= placement.cpus
            node.occupancy -= placement.occupancy
            for gpu, amount in shares[host].items():
                node.gpu_used[gpu] -= amount
        return placement

    def transfer(self, from_id: str, to_id: str) -> Placement:
        """Hand ``from_id``'s reservation, unchanged, to ``to_id``: the job that was waiting
        behind it on the same worker and now takes its place."""
        if to_id in self._placed:
            raise ValueError(f"job {to_id} is already placed")
        try:
            placement, shares = self._placed.pop(from_id)
        except KeyError:
            raise KeyError(f"job {from_id} has no placement on this launcher's nodes") from None
        for host in placement.hosts:
            ids = self._by_host[host].job_ids
            ids[ids.index(from_id)] = to_id
        moved = Placement(to_id, placement.hosts, placement.gpu_ids, placement.cpus, placement.occupancy)
        self._placed[to_id] = (moved, shares)
        return moved

    def free_capacity(self) -> FreeCapacity:
        return FreeCapacity(
            idle_nodes=sum(node.idle for node in self._nodes),
            aggregate_free=sum(max(0.0, 1.0 - node.occupancy) for node in self._nodes),
            max_free_cpus=max((max(0.0, node.cpus - node.used_cpus) for node in self._nodes), default=0.0),
        )

    def unfit_reason(self, job: Placeable) -> str | None:
        """Why ``job`` could never run here even on idle nodes, or None if it could."""
        need = _need(job)
        if job.num_nodes > len(self._nodes):
            return f"needs {job.num_nodes} nodes but this launcher has {len(self._nodes)}"
        if need.cpus > self.cpus_per_node + EPS:
            return (
                f"needs {need.cpus:g} CPUs per node (ranks_per_node * threads_per_rank / "
                f"threads_per_core) but nodes have {self.cpus_per_node}"
            )
        if _pick_gpus([0.0] * self.gpus_per_node, need.gpus) is None:
            return (
                f"needs {need.gpus:g} GPUs per node (ranks_per_node * gpus_per_rank) "
                f"but nodes have {self.gpus_per_node}"
            )
        return None

    def can_ever_fit(self, job: Placeable) -> bool:
        return self.unfit_reason(job) is None
