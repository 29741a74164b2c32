"""``balsamd transfer ls`` through the daemon: on the RPC path (BALSAMD_RPC=1), as on a host
other than the store's, the items come from the daemon."""

from __future__ import annotations

import json
from pathlib import Path

import balsamd
from tests.daemon.conftest import DaemonSite, child_env
from tests.transfers.states import items_in_each_state, stage


def test_transfer_ls_through_the_daemon(site: DaemonSite, tmp_path: Path) -> None:
    stage(site.root, tmp_path / "far")
    with balsamd.connect(site.root) as here:
        here.apps.sync()
        jobs = items_in_each_state(here.store)
    site.start()
    rpc = child_env(BALSAMD_RPC="1")
    listed = json.loads(site.balsamd("transfer", "ls", "--json", env=rpc).stdout)
    # states are left out: the daemon's transfer service may be moving the items meanwhile
    assert [(i["job_id"], i["slot"], i["site"]) for i in listed] == [
        (jobs.done, "input", "daemontest"), (jobs.retrying, "input", "daemontest"),
        (jobs.active, "input", "daemontest"), (jobs.failed, "input", "daemontest"),
        (jobs.failed, "result", "daemontest"),
    ]  # fmt: skip
    counts = json.loads(site.balsamd("transfer", "ls", "--by-state", "--json", env=rpc).stdout)
    assert sum(counts.values()) == 5
