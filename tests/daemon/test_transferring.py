"""The daemon's transfer service on file:// locations: inputs are staged in before a job runs
and outputs staged out after, in batches; failures are retried then fail only their job; a
retry transfers again; a task recorded before a restart is resumed, not started anew."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from balsamd.transfers.records import TransferFilter, TransferState
from tests.daemon.conftest import DaemonSite

CHECKSUM_APP = """\
command_template = "sha256sum in.dat"
transfers = {
    "input": {"direction": "in", "local_path": "in.dat", "required": True},
    "digest": {"direction": "out", "local_path": "job.out"},
}
"""


def with_location(site: DaemonSite, far: Path, **transfers: object) -> None:
    """Name ``far`` as location "far" and set keys of [transfers]."""
    settings = site.root / "settings.toml"
    text = settings.read_text().replace("[transfers.locations]\n", f'[transfers.locations]\nfar = "file://{far}"\n')
    settings.write_text(text)
    site.configure({f"transfers.{k}": v for k, v in transfers.items()})


def inputs(far: Path, n: int) -> dict[int, str]:
    """Write far/in/N.dat for N < n; returns each one's SHA-256."""
    (far / "in").mkdir(parents=True)
    sums = {}
    for i in range(n):
        data = f"input {i}\n".encode() * (i + 1)
        (far / "in" / f"{i}.dat").write_bytes(data)
        sums[i] = hashlib.sha256(data).hexdigest()
    return sums


def test_inputs_are_staged_in_the_run_reads_them_and_outputs_are_staged_out(site: DaemonSite, tmp_path: Path) -> None:
    far = tmp_path / "far"
    sums = inputs(far, 6)
    with_location(site, far, transfer_batch_size=4)
    site.app("Checksum", CHECKSUM_APP)
    site.start()
    jobs = site.create_each("Checksum", [
        {"transfers": {"input": f"far:/in/{i}.dat", "digest": f"far:/out/{i}.sha"}} for i in range(6)
    ])  # fmt: skip
    for job_id in jobs:
        site.wait_state(job_id, "PREPROCESSED")
    site.finish(site.start_launcher("--job-mode", "serial", "--idle-ttl", "0.5"))
    for i, job_id in enumerate(jobs):
        site.wait_state(job_id, "JOB_FINISHED")
        assert site.path(job_id) == ["READY", "STAGED_IN", "PREPROCESSED", "RUNNING", "RUN_DONE", "POSTPROCESSED",
                                     "STAGED_OUT", "JOB_FINISHED"]  # fmt: skip
        assert (far / "out" / f"{i}.sha").read_text().split()[0] == sums[i]
    with site.store() as store:
        items = store.transfers()
    assert {i.state for i in items} == {TransferState.DONE}
    assert len({i.task_id for i in items if i.direction == "in"}) == 2, "6 inputs in batches of 4: two tasks"
    detail = next(s for s in site.status()["services"] if s["name"] == "transfers")["detail"]
    assert detail["items_done"] == 12 and detail["tasks_running"] == 0


def test_a_missing_input_is_retried_then_fails_only_its_job_and_a_retry_stages_it_in(
    site: DaemonSite, tmp_path: Path
) -> None:
    far = tmp_path / "far"
    inputs(far, 2)
    with_location(site, far, max_attempts=2, retry_backoff_s=0.2)
    site.app("Checksum", CHECKSUM_APP)
    site.start()
    good, missing = site.create_each("Checksum", [{"transfers": {"input": f"far:/in/{i}.dat"}} for i in (0, 7)])
    site.wait_state(good, "PREPROCESSED")
    failed = site.wait_state(missing, "FAILED")
    assert failed.state_reason.startswith("stage-in of input (far:/in/7.dat) failed after 2 tries: ")
    assert "No such file or directory" in failed.state_reason
    (far / "in" / "7.dat").write_text("late\n")
    site.balsamd("job", "retry", missing)
    site.wait_state(missing, "PREPROCESSED")
    assert site.path(missing)[-4:] == ["FAILED", "READY", "STAGED_IN", "PREPROCESSED"]


def test_a_task_recorded_before_a_restart_is_resumed_under_its_own_id(site: DaemonSite, tmp_path: Path) -> None:
    far = tmp_path / "far"
    inputs(far, 3)
    with_location(site, far)
    site.app("Checksum", CHECKSUM_APP)
    site.start()
    site.stop()
    jobs = site.create_each("Checksum", [{"transfers": {"input": f"far:/in/{i}.dat"}} for i in range(3)])
    with site.store() as store:  # what a daemon killed while the task ran leaves behind
        work = store.transfer_work(10)
        store.start_transfer_task("left-by-the-last-daemon", "in", "far", [w.id for w in work])
    site.start()
    for job_id in jobs:
        site.wait_state(job_id, "PREPROCESSED")
    with site.store() as store:
        assert {i.task_id for i in store.transfers()} == {"left-by-the-last-daemon"}
        assert store.transfer_tasks() == []
    assert "resuming transfer task left-by-the-last-daemon (3 item(s), in far)" in site.daemon_log()


def test_a_job_killed_while_its_items_wait_is_never_staged(site: DaemonSite, tmp_path: Path) -> None:
    far = tmp_path / "far"
    inputs(far, 1)
    with_location(site, far)
    site.app("Checksum", CHECKSUM_APP)
    [job] = site.create_each("Checksum", [{"transfers": {"input": "far:/in/0.dat"}}])
    site.balsamd("job", "kill", job)
    site.start()
    time.sleep(1.0)  # several steps of the service
    with site.store() as store:
        assert [i.state for i in store.transfers(TransferFilter(job_ids=[job]))] == [TransferState.CANCELLED]
    assert not (site.root / "data" / site.job(job).workdir / "in.dat").exists()


def test_an_item_escaping_its_location_through_a_symlink_fails_its_job(site: DaemonSite, tmp_path: Path) -> None:
    far, secret = tmp_path / "far", tmp_path / "owner-secret"
    far.mkdir()
    secret.write_text("the owner's other file\n")
    (far / "link").symlink_to(secret)
    with_location(site, far, max_attempts=1)
    site.app("Checksum", CHECKSUM_APP)
    site.start()
    [job] = site.create_each("Checksum", [{"transfers": {"input": "far:/link"}}])
    failed = site.wait_state(job, "FAILED")
    assert "far:/link" in failed.state_reason
    assert not (site.root / "data" / failed.workdir / "in.dat").exists()
