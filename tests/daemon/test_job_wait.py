"""``balsamd job wait`` over the daemon's RPC (as on a login node other than the daemon's),
while the daemon's elastic queue has real launchers run the jobs."""

from __future__ import annotations

from pathlib import Path

from tests.daemon.conftest import ELASTIC_SETTINGS, child_env, new_site

FAILED_EXIT = 4


def test_wait_over_the_rpc_ends_when_the_launchers_ran_every_job(tmp_path: Path) -> None:
    with new_site(tmp_path, {**ELASTIC_SETTINGS, "nodes.cpus_per_node": 2}) as site:
        site.command_app("Ok", "true")
        site.command_app("Bad", "false")
        site.start()
        ok = site.create("Ok", 3, tags={"run": "1"})
        [bad] = site.create("Bad", 1, tags={"run": "1"})
        [other] = site.create("Ok", 1, tags={"run": "2"})
        rpc = child_env(BALSAMD_RPC="1")
        waited = site.balsamd("job", "wait", "--tag", "run=1", "--timeout", "120", code=FAILED_EXIT, env=rpc)
        lines = waited.stdout.splitlines()
        assert lines[0].startswith("4 job(s): 3 finished, 1 failed, 0 killed, 0 not ended (0:0")
        assert lines[1].startswith(f"  FAILED {bad}: ")
        assert {str(j.state) for j in site.jobs(ok)} == {"JOB_FINISHED"}
        assert site.balsamd("job", "wait", other, "--timeout", "120", env=rpc).stdout.startswith("1 job(s): 1 finished")
