"""A small DAG campaign whose data lives on another host, reached by rsync over ssh.

The "remote" host is the private sshd on 127.0.0.1 (``ssh_host``).  Inputs are staged in from
it in one batch, a launcher runs the jobs, their outputs are staged back out; a fan-in job runs
only after its parents' outputs arrived.  One job names an input that does not exist: exactly
that job fails, with rsync's own message as its reason.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

from balsamd.states import JobState
from balsamd.transfers.records import TransferState
from tests.daemon.conftest import new_site, wait_until
from tests.transfers.conftest import SshHost

S = JobState
DIGEST_APP = """\
command_template = "sha256sum in.dat"
transfers = {
    "input": {"direction": "in", "local_path": "in.dat", "required": True},
    "digest": {"direction": "out", "local_path": "job.out"},
}
"""


def test_a_dag_campaign_stages_in_and_out_over_rsync_and_a_missing_file_fails_only_its_job(
    tmp_path: Path, ssh_host: SshHost
) -> None:
    remote = tmp_path / "remote"
    (remote / "in").mkdir(parents=True)
    sums = {}
    for i in range(5):
        data = f"sample {i}\n".encode() * (100 * (i + 1))
        (remote / "in" / f"{i}.dat").write_bytes(data)
        sums[i] = hashlib.sha256(data).hexdigest()
    ssh = list(ssh_host.ssh_command)
    del ssh[ssh.index("-p") : ssh.index("-p") + 2]  # the location carries the port
    url = f"rsync://{ssh_host.user}@127.0.0.1:{ssh_host.port}{remote}"
    with new_site(
        tmp_path, {"transfers.ssh": ssh, "transfers.max_attempts": 2, "transfers.retry_backoff_s": 0.2}
    ) as site:
        settings = site.root / "settings.toml"
        settings.write_text(
            settings.read_text().replace("[transfers.locations]\n", f'[transfers.locations]\ndtn = "{url}"\n')
        )
        site.app("Digest", DIGEST_APP)
        site.start()

        def item(i: int) -> dict[str, object]:
            return {"transfers": {"input": f"dtn:/in/{i}.dat", "digest": f"dtn:/out/{i}.sha"}}

        fan = site.create_each("Digest", [item(i) for i in range(4)])
        [join] = site.create_each("Digest", [{**item(4), "parent_ids": fan}])
        [missing] = site.create_each("Digest", [{"transfers": {"input": "dtn:/in/absent.dat"}}])

        proc = site.start_launcher("--job-mode", "serial", "--idle-ttl", "600")
        everything = [*fan, join]
        wait_until(lambda: all(j.state == S.JOB_FINISHED for j in site.jobs(everything)), "the campaign finished",
                   timeout=90)  # fmt: skip
        failed = site.wait_state(missing, "FAILED")
        proc.send_signal(signal.SIGTERM)
        site.finish(proc)

        for i in range(5):
            assert (remote / "out" / f"{i}.sha").read_text().split()[0] == sums[i]
        assert failed.state_reason.startswith("stage-in of input (dtn:/in/absent.dat) failed after 2 tries: rsync: ")
        assert f'"{remote}/in/absent.dat" failed: No such file or directory' in failed.state_reason
        assert site.path(missing) == ["READY", "FAILED"], "it never ran"
        events = {j: site.events(j) for j in everything}
        join_ran = next(e.id for e in events[join] if e.to_state == S.RUNNING)
        for parent in fan:
            staged_out = next(e.id for e in events[parent] if e.to_state == S.STAGED_OUT)
            assert join_ran > staged_out, "the fan-in ran before a parent's output was sent"
        with site.store() as store:
            items = store.transfers()
        inbound = [i for i in items if i.direction == "in" and i.job_id != missing]
        assert {i.state for i in inbound} == {TransferState.DONE}
        assert len({i.task_id for i in inbound if i.job_id in fan}) == 1, "the fan's inputs went in one rsync"
