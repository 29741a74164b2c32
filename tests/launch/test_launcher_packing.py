"""Serial mode packs single-rank runs onto posed nodes within their limits: occupancy
(node_packing_count), CPUs (threads_per_rank) and GPUs (gpus_per_rank, shared in fractions).

The launcher runs in this process so that the node each run was placed on is known; the runs
themselves are real processes that record when they ran and what they were bound to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from balsamd.launch.running.protocol import Placement

from .conftest import InProcessRun, LaunchSite, Run, max_overlap, records, timed

HOSTS = ["n1", "n2"]


def runs_by_host(site: LaunchSite, job_ids: list[str], outcome: InProcessRun) -> dict[str, list[Run]]:
    placed = outcome.nodes.placement_of()
    by_host: dict[str, list[Run]] = defaultdict(list)
    for run in site.runs(job_ids):
        by_host[placed[run.job_id].hosts[0]].append(run)
    return by_host


def most_held_on_one_node(outcome: InProcessRun) -> int:
    return max(
        max(sum(1 for p in held if p.hosts == [host]) for host in HOSTS) for held in outcome.nodes.held_together()
    )


def test_serial_runs_on_a_node_never_exceed_node_packing_count(
    site: LaunchSite, run_in_process: Callable[..., InProcessRun]
) -> None:
    site.configure(cpus_per_node=64)
    site.command_app("Timed", timed("sleep 0.3"))
    job_ids = site.create("Timed", count=12, node_packing_count=3)

    outcome = run_in_process(site, HOSTS)

    assert outcome.summary.done == 12
    assert set(site.states(job_ids)) == {"JOB_FINISHED"}
    by_host = runs_by_host(site, job_ids, outcome)
    assert sorted(by_host) == HOSTS
    for host, runs in by_host.items():
        assert max_overlap(runs) <= 3, f"more than 3 runs at once on {host}: {runs}"
    # the limit is reached, not just respected by running one at a time
    assert most_held_on_one_node(outcome) == 3


def test_serial_runs_on_a_node_never_exceed_its_cpus(
    site: LaunchSite, run_in_process: Callable[..., InProcessRun]
) -> None:
    site.configure(cpus_per_node=4)
    site.command_app("Threads", timed('echo "@omp $BALSAMD_JOB_ID $OMP_NUM_THREADS"; sleep 0.3'))
    # packing would allow 8 per node; 2 threads per rank on 4 CPUs allow 2
    job_ids = site.create("Threads", count=8, threads_per_rank=2, node_packing_count=8)

    outcome = run_in_process(site, HOSTS)

    assert set(site.states(job_ids)) == {"JOB_FINISHED"}
    omp = {job_id: n for job_id, n in (r for i in job_ids for r in records(site.output(i), "omp"))}
    assert omp == dict.fromkeys(job_ids, "2")
    for host, runs in runs_by_host(site, job_ids, outcome).items():
        assert max_overlap(runs) <= 2, f"more than 4 CPUs in use on {host}: {runs}"
    assert most_held_on_one_node(outcome) == 2


def test_gpu_runs_are_bound_to_gpus_never_shared_beyond_capacity(
    site: LaunchSite, run_in_process: Callable[..., InProcessRun]
) -> None:
    site.configure(cpus_per_node=16, gpus_per_node=4)
    site.command_app("Gpu", timed('echo "@gpu $BALSAMD_JOB_ID ${CUDA_VISIBLE_DEVICES:-none}"; sleep 0.3'))
    # 6 whole GPUs + 12 halves = 12 GPUs of demand for 8 GPUs on two nodes
    whole = site.create("Gpu", count=6, gpus_per_rank=1.0, node_packing_count=16)
    halves = site.create("Gpu", count=12, gpus_per_rank=0.5, node_packing_count=16)
    share = {**dict.fromkeys(whole, 1.0), **dict.fromkeys(halves, 0.5)}

    outcome = run_in_process(site, HOSTS)

    assert set(site.states(whole + halves)) == {"JOB_FINISHED"}
    placed = outcome.nodes.placement_of()
    seen = {job_id: gpu for job_id, gpu in (r for i in share for r in records(site.output(i), "gpu"))}
    for job_id, gpu in seen.items():
        assert gpu.isdigit() and 0 <= int(gpu) < 4, f"{job_id} saw CUDA_VISIBLE_DEVICES={gpu}"
        assert [int(gpu)] == placed[job_id].gpu_ids[placed[job_id].hosts[0]]
    # at every run's start, the runs then running on its node and GPU use at most that GPU
    runs = {r.job_id: r for r in site.runs(list(share))}
    for job_id, run in runs.items():
        host = placed[job_id].hosts[0]
        users = [
            other for other, r in runs.items()
            if placed[other].hosts[0] == host and seen[other] == seen[job_id] and r.start <= run.start < r.end
        ]  # fmt: skip
        assert sum(share[u] for u in users) <= 1.0, f"GPU {seen[job_id]} of {host} over-shared by {users}"
    # a whole GPU is never shared; halves share a GPU two by two
    for held in outcome.nodes.held_together():
        holders: dict[tuple[str, int], list[str]] = defaultdict(list)
        for p in held:
            for gpu in p.gpu_ids[p.hosts[0]]:
                holders[p.hosts[0], gpu].append(p.job_id)
        for users in holders.values():
            assert sum(share[u] for u in users) <= 1.0
    assert any(_two_halves_on_one_gpu(held, halves) for held in outcome.nodes.held_together())


def _two_halves_on_one_gpu(held: list[Placement], halves: list[str]) -> bool:
    keys = [(p.hosts[0], tuple(p.gpu_ids[p.hosts[0]])) for p in held if p.job_id in halves]
    return any(keys.count(k) == 2 for k in keys)
