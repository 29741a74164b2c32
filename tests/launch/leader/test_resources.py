"""The node manager: packing rules for runs on the launcher's nodes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from balsamd.launch.leader.resources import EPS, FreeCapacity, NodeManager
from balsamd.models import Job

_ids = itertools.count()


def job(job_id: str | None = None, **resources: float) -> Job:
    job_id = job_id or f"j{next(_ids)}"
    return Job(id=job_id, app="app", workdir="w", **resources)  # type: ignore[arg-type]


def manager(hosts: int = 2, cpus: int = 8, gpus: int = 0) -> NodeManager:
    return NodeManager([f"h{i}" for i in range(1, hosts + 1)], cpus, gpus)


def placed(nm: NodeManager, j: Job) -> list[str]:
    placement = nm.place(j)
    assert placement is not None, f"{j.id} did not fit"
    return placement.hosts


# --- single-node packing ----------------------------------------------------------------------


def test_single_node_jobs_are_packed_first_fit_in_host_order() -> None:
    nm = manager(hosts=2, cpus=4)
    hosts = [placed(nm, job(node_packing_count=4)) for _ in range(5)]
    assert hosts == [["h1"], ["h1"], ["h1"], ["h1"], ["h2"]]


def test_cpus_needed_are_ranks_times_threads_per_rank_over_threads_per_core() -> None:
    nm = manager(hosts=2, cpus=4)
    a = nm.place(job(ranks_per_node=2, threads_per_rank=4, threads_per_core=2, node_packing_count=2))
    assert a is not None and a.cpus == 4.0
    assert placed(nm, job(node_packing_count=2)) == ["h2"]


def test_fractional_cpu_needs_fill_a_node_exactly() -> None:
    nm = manager(hosts=2, cpus=1)
    hosts = [placed(nm, job(threads_per_core=3, node_packing_count=3)) for _ in range(4)]
    assert hosts == [["h1"], ["h1"], ["h1"], ["h2"]]


def test_occupancy_limits_a_node_to_node_packing_count_runs() -> None:
    nm = manager(hosts=2, cpus=64)
    hosts = [placed(nm, job(node_packing_count=2)) for _ in range(4)]
    assert hosts == [["h1"], ["h1"], ["h2"], ["h2"]]
    assert nm.place(job(node_packing_count=2)) is None


def test_a_job_with_packing_count_one_has_its_node_to_itself() -> None:
    nm = manager(hosts=1, cpus=64)
    placed(nm, job())
    assert nm.place(job(node_packing_count=64)) is None


def test_runs_with_different_packing_counts_share_a_node_by_occupancy() -> None:
    nm = manager(hosts=1, cpus=64)
    placed(nm, job(node_packing_count=2))
    placed(nm, job(node_packing_count=4))
    placed(nm, job(node_packing_count=4))
    assert nm.place(job(node_packing_count=64)) is None
    assert nm.nodes[0].occupancy == pytest.approx(1.0)


def test_a_job_that_fits_nowhere_now_is_not_placed() -> None:
    nm = manager(hosts=1, cpus=4)
    placed(nm, job(ranks_per_node=3, node_packing_count=2))
    assert nm.place(job(ranks_per_node=2, node_packing_count=2)) is None
    assert nm.can_ever_fit(job(ranks_per_node=2, node_packing_count=2))


# --- GPUs -------------------------------------------------------------------------------------


def test_whole_gpus_are_given_lowest_free_ids_first() -> None:
    nm = manager(hosts=1, cpus=8, gpus=4)
    a = nm.place(job(ranks_per_node=2, gpus_per_rank=1, node_packing_count=4))
    b = nm.place(job(ranks_per_node=2, gpus_per_rank=1, node_packing_count=4))
    assert a is not None and b is not None
    assert a.gpu_ids == {"h1": [0, 1]}
    assert b.gpu_ids == {"h1": [2, 3]}
    assert nm.place(job(gpus_per_rank=1, node_packing_count=4)) is None


def test_half_a_gpu_per_rank_lets_two_runs_share_one_gpu_id() -> None:
    nm = manager(hosts=1, cpus=8, gpus=2)
    runs = [nm.place(job(gpus_per_rank=0.5, node_packing_count=8)) for _ in range(3)]
    assert [run.gpu_ids["h1"] for run in runs if run] == [[0], [0], [1]]


def test_two_ranks_at_half_a_gpu_share_one_gpu_id() -> None:
    nm = manager(hosts=1, cpus=8, gpus=2)
    run = nm.place(job(ranks_per_node=2, gpus_per_rank=0.5, node_packing_count=2))
    assert run is not None and run.gpu_ids == {"h1": [0]}
    assert nm.nodes[0].free_gpu_ids == [1]


def test_a_fractional_remainder_goes_to_the_fullest_gpu_with_room() -> None:
    nm = manager(hosts=1, cpus=8, gpus=3)
    first = nm.place(job(gpus_per_rank=1.5, node_packing_count=8))
    assert first is not None and first.gpu_ids == {"h1": [0, 1]}
    second = nm.place(job(gpus_per_rank=0.5, node_packing_count=8))
    assert second is not None and second.gpu_ids == {"h1": [0]}
    assert nm.nodes[0].free_gpu_ids == [2]


def test_a_job_without_enough_gpu_capacity_waits_even_with_cpus_free() -> None:
    nm = manager(hosts=1, cpus=64, gpus=1)
    placed(nm, job(gpus_per_rank=0.75, node_packing_count=4))
    assert nm.place(job(gpus_per_rank=0.5, node_packing_count=4)) is None
    assert placed(nm, job(gpus_per_rank=0.25, node_packing_count=4)) == ["h1"]


def test_cpu_only_runs_get_no_gpu_ids() -> None:
    nm = manager(hosts=1, cpus=8, gpus=4)
    run = nm.place(job(node_packing_count=2))
    assert run is not None and run.gpu_ids == {"h1": []}


# --- multi-node jobs --------------------------------------------------------------------------


def test_multi_node_jobs_take_whole_idle_nodes() -> None:
    nm = manager(hosts=3, cpus=8, gpus=2)
    placed(nm, job(node_packing_count=8))
    assert placed(nm, job(num_nodes=2)) == ["h2", "h3"]
    for node in nm.nodes[1:]:
        assert node.used_cpus == 8 and node.occupancy == 1.0 and node.gpu_used == [1.0, 1.0]


def test_multi_node_jobs_wait_for_idle_nodes_even_if_capacity_is_free() -> None:
    nm = manager(hosts=2, cpus=64)
    placed(nm, job(node_packing_count=64))
    assert nm.place(job(num_nodes=2, node_packing_count=64)) is None


def test_nothing_is_packed_beside_a_multi_node_job() -> None:
    nm = manager(hosts=2, cpus=64, gpus=4)
    placed(nm, job(num_nodes=2, ranks_per_node=1))
    assert nm.place(job(node_packing_count=64)) is None


def test_multi_node_jobs_are_bound_to_the_gpus_they_ask_for_on_each_host() -> None:
    nm = manager(hosts=2, cpus=8, gpus=4)
    run = nm.place(job(num_nodes=2, ranks_per_node=2, gpus_per_rank=1))
    assert run is not None and run.gpu_ids == {"h1": [0, 1], "h2": [0, 1]}


# --- release ----------------------------------------------------------------------------------


def test_release_gives_back_exactly_what_was_taken() -> None:
    nm = manager(hosts=1, cpus=8, gpus=2)
    keep = nm.place(job(ranks_per_node=3, gpus_per_rank=0.25, node_packing_count=4))
    gone = nm.place(job(ranks_per_node=2, gpus_per_rank=0.5, node_packing_count=4))
    assert keep is not None and gone is not None
    assert nm.release(gone.job_id) == gone
    node = nm.nodes[0]
    assert node.used_cpus == 3 and node.occupancy == 0.25
    assert node.gpu_used == [0.75, 0.0] and node.job_ids == [keep.job_id]


def test_releasing_the_last_run_leaves_a_node_exactly_empty() -> None:
    nm = manager(hosts=1, cpus=10, gpus=1)
    runs = [nm.place(job(threads_per_core=3, gpus_per_rank=0.1, node_packing_count=10)) for _ in "abc"]
    for run in runs:
        assert run is not None
        nm.release(run.job_id)
    node = nm.nodes[0]
    assert (node.used_cpus, node.occupancy, node.gpu_used, node.job_ids) == (0.0, 0.0, [0.0], [])


def test_releasing_an_unknown_job_is_an_error_naming_it() -> None:
    with pytest.raises(KeyError, match="job nope has no placement"):
        manager().release("nope")


def test_placing_a_job_twice_is_an_error() -> None:
    nm = manager()
    twice = job(node_packing_count=2)
    nm.place(twice)
    with pytest.raises(ValueError, match=f"job {twice.id} is already placed"):
        nm.place(twice)


def test_placements_list_the_runs_in_progress() -> None:
    nm = manager()
    a, b = job(node_packing_count=2), job(node_packing_count=2)
    nm.place(a)
    nm.place(b)
    nm.release(a.id)
    assert list(nm.placements) == [b.id]


# --- transfer ---------------------------------------------------------------------------------


def test_transfer_hands_a_placement_unchanged_to_the_job_queued_behind_it() -> None:
    nm = manager(hosts=1, cpus=4, gpus=2)
    first = nm.place(job("first", gpus_per_rank=0.5, node_packing_count=4))
    assert first is not None
    before = (nm.nodes[0].used_cpus, nm.nodes[0].occupancy, list(nm.nodes[0].gpu_used))
    moved = nm.transfer("first", "next")
    assert (moved.job_id, moved.hosts, moved.gpu_ids) == ("next", first.hosts, first.gpu_ids)
    assert (nm.nodes[0].used_cpus, nm.nodes[0].occupancy, nm.nodes[0].gpu_used) == before
    assert nm.nodes[0].job_ids == ["next"] and list(nm.placements) == ["next"]
    nm.release("next")
    assert (nm.nodes[0].used_cpus, nm.nodes[0].occupancy, nm.nodes[0].job_ids) == (0.0, 0.0, [])


def test_transfer_from_an_unplaced_job_or_to_a_placed_one_is_an_error() -> None:
    nm = manager()
    nm.place(job("a", node_packing_count=2))
    nm.place(job("b", node_packing_count=2))
    with pytest.raises(KeyError, match="job nope has no placement"):
        nm.transfer("nope", "c")
    with pytest.raises(ValueError, match="job b is already placed"):
        nm.transfer("a", "b")


# --- what the claimer asks ----------------------------------------------------------------------


def test_free_capacity_counts_idle_nodes_aggregate_room_and_largest_cpu_gap() -> None:
    nm = manager(hosts=3, cpus=8)
    assert nm.free_capacity() == FreeCapacity(idle_nodes=3, aggregate_free=3.0, max_free_cpus=8)
    placed(nm, job(ranks_per_node=6, node_packing_count=4))
    placed(nm, job(ranks_per_node=2, node_packing_count=4))
    placed(nm, job(num_nodes=2))
    assert nm.free_capacity() == FreeCapacity(idle_nodes=0, aggregate_free=0.5, max_free_cpus=0)


def test_can_ever_fit_judges_against_idle_nodes() -> None:
    nm = manager(hosts=2, cpus=8, gpus=2)
    placed(nm, job(num_nodes=2))
    assert nm.can_ever_fit(job(num_nodes=2, ranks_per_node=8, gpus_per_rank=0.25))


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        ({"num_nodes": 3}, "needs 3 nodes but this launcher has 2"),
        ({"ranks_per_node": 9}, "needs 9 CPUs per node"),
        ({"ranks_per_node": 3, "threads_per_rank": 6, "threads_per_core": 2}, "needs 9 CPUs"),
        ({"ranks_per_node": 5, "gpus_per_rank": 0.5}, "needs 2.5 GPUs per node"),
        ({"gpus_per_rank": 3}, "but nodes have 2"),
    ],
)
def test_jobs_that_can_never_fit_say_why(resources: dict[str, float], reason: str) -> None:
    nm = manager(hosts=2, cpus=8, gpus=2)
    never = job(**resources)
    assert not nm.can_ever_fit(never)
    assert reason in (nm.unfit_reason(never) or "")
    assert nm.place(never) is None


@pytest.mark.parametrize(
    "resources",
    [
        {"num_nodes": 0},
        {"ranks_per_node": 0},
        {"threads_per_rank": 0},
        {"threads_per_core": 0},
        {"node_packing_count": 0},
        {"gpus_per_rank": -1},
    ],
)
def test_nonsense_resource_requests_are_errors(resources: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(resources))):
        manager().place(job(**resources))


@pytest.mark.parametrize(
    ("hosts", "cpus", "gpus", "message"),
    [
        ([], 8, 0, "at least one host"),
        (["a", "a"], 8, 0, "duplicate hosts"),
        (["a"], 0, 0, "cpus_per_node >= 1"),
        (["a"], 8, -1, "gpus_per_node >= 0"),
    ],
)
def test_a_node_manager_needs_a_sensible_shape(hosts: list[str], cpus: int, gpus: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NodeManager(hosts, cpus, gpus)


# --- properties -------------------------------------------------------------------------------

job_resources = st.fixed_dictionaries(
    {
        "num_nodes": st.integers(1, 3),
        "ranks_per_node": st.integers(1, 4),
        "threads_per_rank": st.integers(1, 4),
        "threads_per_core": st.integers(1, 2),
        "gpus_per_rank": st.sampled_from([0.0, 0.1, 0.25, 0.3, 0.5, 1.0, 1.5, 2.0]),
        "node_packing_count": st.integers(1, 5),
    }
)


class RandomPlaceAndRelease(RuleBasedStateMachine):
    """Any sequence of places and releases keeps every node within its capacity."""

    nm: NodeManager
    initial: FreeCapacity

    @initialize(hosts=st.integers(1, 4), cpus=st.integers(1, 8), gpus=st.integers(0, 4))
    def start(self, hosts: int, cpus: int, gpus: int) -> None:
        self.nm = manager(hosts=hosts, cpus=cpus, gpus=gpus)
        self.initial = self.nm.free_capacity()
        self.running: dict[str, Job] = {}
        self.submitted = 0

    @rule(resources=job_resources)
    def place(self, resources: dict[str, float]) -> None:
        self.submitted += 1
        j = job(f"run{self.submitted}", **resources)
        placement = self.nm.place(j)
        if placement is not None:
            assert self.nm.can_ever_fit(j)
            assert len(placement.hosts) == j.num_nodes
            self.running[j.id] = j

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(list(self.running)))
        self.nm.release(job_id)
        del self.running[job_id]

    @rule()
    def release_everything_restores_the_initial_capacity(self) -> None:
        for job_id in list(self.running):
            self.nm.release(job_id)
        self.running.clear()
        assert self.nm.free_capacity() == self.initial
        for node in self.nm.nodes:
            assert node.used_cpus == 0.0 and node.occupancy == 0.0 and node.job_ids == []
            assert node.gpu_used == [0.0] * node.gpus

    @invariant()
    def no_node_exceeds_its_cpus_gpus_or_occupancy(self) -> None:
        for node in self.nm.nodes:
            assert -EPS <= node.used_cpus <= node.cpus + EPS
            assert -EPS <= node.occupancy <= 1.0 + EPS
            assert all(-EPS <= used <= 1.0 + EPS for used in node.gpu_used)

    @invariant()
    def multi_node_runs_share_their_nodes_with_nothing(self) -> None:
        by_host = {node.host: node for node in self.nm.nodes}
        for placement in self.nm.placements.values():
            if len(placement.hosts) > 1:
                for host in placement.hosts:
                    assert by_host[host].job_ids == [placement.job_id]

    @invariant()
    def each_node_is_charged_the_sum_of_its_runs(self) -> None:
        placements = self.nm.placements
        assert set(placements) == set(self.running)
        for node in self.nm.nodes:
            mine = [placements[job_id] for job_id in node.job_ids]
            assert node.used_cpus == pytest.approx(sum(p.cpus for p in mine), abs=1e-6)
            assert node.occupancy == pytest.approx(sum(p.occupancy for p in mine), abs=1e-6)
            for p in mine:
                assert all(node.gpu_used[gpu] > EPS for gpu in p.gpu_ids[node.host])

    def teardown(self) -> None:
        if hasattr(self, "nm"):
            self.release_everything_restores_the_initial_capacity()


# The explain phase traces every line on Python 3.11 and would outlast the per-test timeout.
property_settings = settings(
    max_examples=300,
    database=None,
    deadline=None,
    phases=[phase for phase in Phase if phase is not Phase.explain],
)

TestRandomPlaceAndRelease = RandomPlaceAndRelease.TestCase
TestRandomPlaceAndRelease.settings = settings(property_settings, stateful_step_count=40)


@property_settings
@given(
    resources=job_resources,
    hosts=st.integers(1, 4),
    cpus=st.integers(1, 8),
    gpus=st.integers(0, 4),
)
def test_a_job_can_ever_fit_exactly_when_it_fits_on_idle_nodes(
    resources: dict[str, float], hosts: int, cpus: int, gpus: int
) -> None:
    j = job(**resources)
    nm = manager(hosts=hosts, cpus=cpus, gpus=gpus)
    assert nm.can_ever_fit(j) == (nm.place(j) is not None)
