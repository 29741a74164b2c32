"""MPI mode with the real mpiexec over posed nodes: ranks land where the launcher placed them,
and a multi-node run has its nodes to itself."""

from __future__ import annotations

from balsamd.results import value_of

from .conftest import LaunchSite, local_mpi_hosts, timed

RANK_APP = """\
import os

from balsamd import ApplicationDefinition


class Ranks(ApplicationDefinition):
    def run(self, greeting: str) -> dict:
        rank, size = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
        print(f"{greeting} from rank {rank} of {size}", flush=True)
        return {"rank": rank, "size": size, "host": os.environ["PMI_HOSTNAME"]}
"""


def test_two_rank_mpi_job_prints_from_both_posed_nodes_and_finishes(site: LaunchSite, mpiexec: str) -> None:
    site.configure(mpiexec=mpiexec)
    site.command_app("Hello", 'echo "rank $PMI_RANK of $PMI_SIZE on $PMI_HOSTNAME"')
    [job_id] = site.create("Hello", num_nodes=2, ranks_per_node=1)

    summary = site.launch("--job-mode", "mpi", "--nodes", "localhost,127.0.0.1", "--idle-ttl", "0.5")

    assert "1 started, 1 done, 0 errors" in summary
    assert site.job(job_id).state == "JOB_FINISHED"
    lines = sorted(site.output(job_id).splitlines())
    assert lines == ["rank 0 of 2 on localhost", "rank 1 of 2 on 127.0.0.1"]


def test_multi_node_jobs_never_share_a_node_with_another_run(site: LaunchSite, mpiexec: str) -> None:
    hosts = list(local_mpi_hosts(mpiexec))
    assert len(hosts) >= 2, f"mpiexec reaches only {hosts} on this host"
    hosts = hosts[:4] if len(hosts) >= 4 else hosts[:2]
    site.configure(mpiexec=mpiexec, cpus_per_node=2)
    site.command_app("Timed", timed("sleep 0.3"))
    # single-node jobs could pack two to a node; multi-node jobs must get whole idle nodes
    wide = site.create("Timed", count=len(hosts) - 1, num_nodes=2)
    narrow = site.create("Timed", count=len(hosts), node_packing_count=2)

    site.launch("--job-mode", "mpi", "--nodes", ",".join(hosts), "--idle-ttl", "2")

    assert set(site.states(wide + narrow)) == {"JOB_FINISHED"}
    runs = site.runs(wide + narrow)
    assert {r.host for r in runs} <= set(hosts)
    for job_id in wide:
        mine = [r for r in runs if r.job_id == job_id]
        assert sorted(r.rank for r in mine) == [0, 1]
        assert len({r.host for r in mine}) == 2, f"{job_id} ran both ranks on one node: {mine}"
        for own in mine:
            others = [r for r in runs if r.job_id != job_id and r.host == own.host]
            clashes = [r for r in others if r.overlaps(own)]
            assert not clashes, f"{own} shared its node with {clashes}"


def test_multi_rank_python_job_runs_every_rank_and_returns_rank_zeros_value(site: LaunchSite, mpiexec: str) -> None:
    site.configure(mpiexec=mpiexec)
    site.python_app("Ranks", RANK_APP)
    [job_id] = site.create("Ranks", ranks_per_node=2, parameters={"greeting": "hi"})

    site.launch("--job-mode", "mpi", "--nodes", "localhost", "--idle-ttl", "0.5")

    job = site.job(job_id)
    assert job.state == "JOB_FINISHED", job.state_reason
    assert value_of(job) == {"rank": 0, "size": 2, "host": "localhost"}
    assert sorted(site.output(job_id).splitlines()) == ["hi from rank 0 of 2", "hi from rank 1 of 2"]


def test_a_multi_node_job_waiting_for_a_busy_node_runs_once_the_node_frees(site: LaunchSite, mpiexec: str) -> None:
    site.configure(mpiexec=mpiexec)
    site.command_app("Nap", "sleep 0.1")
    [small] = site.create("Nap")
    [wide] = site.create("Nap", num_nodes=2)

    site.launch("--job-mode", "mpi", "--nodes", "localhost,127.0.0.1", "--idle-ttl", "0.3")

    assert site.states([small, wide]) == ["JOB_FINISHED", "JOB_FINISHED"]
