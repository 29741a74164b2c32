"""``balsamd top`` on a site whose daemon runs: the frame comes over the daemon's RPC, with the
services as ``balsamd status`` has them (asked without the counts ``status`` makes)."""

from __future__ import annotations

import json
from pathlib import Path

from balsamd.daemon import control
from balsamd.site import find_site
from tests.daemon.conftest import child_env, running


def test_a_frame_over_the_daemons_rpc_shows_its_sync_and_transfer_services(tmp_path: Path) -> None:
    with running(tmp_path) as site:
        site.command_app("Hello", "echo hi")
        site.balsamd("job", "create", "--app", "Hello", "--workdir", "r/1")
        frame = json.loads(site.balsamd("top", "--once", "--json", env=child_env(BALSAMD_RPC="1")).stdout)
        assert frame["daemon"] == "running"
        assert frame["total"] == 1
        assert [(s["name"], s["healthy"]) for s in frame["services"]] == [("sync", None), ("transfers", True)]
        assert frame["services"][1]["lag"] == "0 task(s) running, 0 item(s) to retry"

        services = control.services(find_site(site.root))
        assert [s.name for s in services] == [s["name"] for s in site.status()["services"]]
