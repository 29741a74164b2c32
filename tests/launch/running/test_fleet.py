"""Serial mode across nodes: a worker per node, started through the MPI launcher."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import balsamd
from balsamd.launch.running.fleet import is_local, remote_hosts
from balsamd.models import JobMode
from balsamd.site import init_site
from tests.daemon.conftest import wait_until

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def need_mpiexec() -> str:
    if MPIEXEC:
        return MPIEXEC
    if os.environ.get("CI") == "true":
        pytest.fail("mpiexec (from the mpich wheel) is missing in CI; run scripts/bootstrap.sh")
    pytest.skip("no mpiexec next to this Python; install the mpich wheel")


def make_site(tmp_path: Path, node_workers: str = "all") -> Path:
    layout = init_site(tmp_path / "site")
    text = layout.settings.read_text()
    text = text.replace('node_workers = "auto"', f'node_workers = "{node_workers}"')
    text = text.replace('mpiexec = "mpiexec"', f'mpiexec = "{need_mpiexec()}"')
    text = text.replace("cpus_per_node = ", "cpus_per_node = 4  # ", 1)
    layout.settings.write_text(text)
    (layout.apps / "apps.py").write_text(
        "import os, socket\n"
        "from balsamd import ApplicationDefinition\n\n"
        "class Where(ApplicationDefinition):\n"
        "    command_template = 'echo worker=$PPID; sleep {{ secs }}'\n\n"
        "class Pid(ApplicationDefinition):\n"
        "    def run(self):\n"
        "        return os.getppid()\n"
    )
    return layout.root


def launch(site: Path, nodes: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "balsamd", "--site", str(site), "launcher", "--job-mode", "serial",
         "--idle-ttl", "1", "--nodes", nodes, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def node_worker_pids(site_path: Path) -> list[str]:
    """Python processes serving as node workers (not the mpiexec processes that started them)."""
    found = subprocess.run(
        ["pgrep", "-f", f"balsamd.launch.running.nodeworker {site_path}"], capture_output=True, text=True
    ).stdout.split()
    return [pid for pid in found if Path(f"/proc/{pid}/comm").read_text().startswith("python")]


def test_local_and_posed_hosts_need_no_worker_but_real_remote_hosts_do():
    assert is_local("localhost")
    assert is_local("127.0.0.1")
    assert is_local("vm1", this_host="vm1.cluster")
    assert is_local("no-such-node-posed-for-tests.invalid")
    assert not is_local("192.0.2.7")  # a real, non-local address
    assert remote_hosts(["localhost", "192.0.2.7"], JobMode.SERIAL, "auto") == ["192.0.2.7"]
    assert remote_hosts(["localhost", "127.0.0.1"], JobMode.SERIAL, "all") == ["localhost", "127.0.0.1"]
    assert remote_hosts(["192.0.2.7"], JobMode.SERIAL, "none") == []
    assert remote_hosts(["192.0.2.7"], JobMode.MPI, "all") == []


def test_serial_jobs_run_in_one_worker_per_node(tmp_path):
    site_path = make_site(tmp_path)
    with balsamd.connect(site_path) as site:
        site.jobs.bulk_create({"app": "Where", "workdir": f"w/{i}", "parameters": {"secs": 0.3}} for i in range(8))
        site.jobs.bulk_create({"app": "Pid", "workdir": f"p/{i}"} for i in range(4))
        proc = launch(site_path, "localhost,127.0.0.1")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert site.jobs.counts_by_state() == {"JOB_FINISHED": 12}
        shells = {(site_path / "data" / f"w/{i}" / "job.out").read_text().strip() for i in range(8)}
        # every command ran as a child of one of exactly two node workers
        assert len(shells) == 2
        py_parents = {balsamd.results.value_of(j.record) for j in site.jobs.filter(app="Pid")}
        assert len(py_parents) <= 2  # warm Python workers belong to the node workers
        assert os.getpid() not in py_parents


def test_a_dead_node_worker_loses_its_runs_to_timeout_and_the_node_is_not_used_again(tmp_path):
    site_path = make_site(tmp_path)
    with balsamd.connect(site_path) as site:
        jobs = site.jobs.bulk_create(
            {
                "app": "Where",
                "workdir": f"w/{i}",
                "parameters": {"secs": 30 if i < 4 else 0.1},
                "node_packing_count": 2,
            }
            for i in range(6)
        )
        proc = launch(site_path, "localhost,127.0.0.1")
        wait_until(lambda: site.jobs.count(state="RUNNING") >= 4, "four runs are going on the two nodes")
        workers = node_worker_pids(site_path)
        assert len(workers) == 2
        os.kill(int(workers[0]), signal.SIGKILL)
        wait_until(
            lambda: site.jobs.count(state="RUN_TIMEOUT") + site.jobs.count(state="RESTART_READY") > 0,
            "the lost runs are reported",
        )
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        timeouts = [e for j in jobs for e in site.store.events(j.id) if e.to_state == "RUN_TIMEOUT"]
        assert any("exited" in e.reason for e in timeouts)
        for j in jobs:
            assert [e.to_state for e in site.store.events(j.id)].count("RUN_TIMEOUT") <= 1
