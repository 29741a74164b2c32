"""A job created through the central database becomes claimable at its site while the daemon
runs, without waiting for the sync period: the site LISTENs for intents and syncs on NOTIFY.

The period is an hour, so a job that arrives at all within the test's wait came through a round
woken early; the sync service's status counts the rounds a NOTIFY woke, and that count rises.
"""

from __future__ import annotations

import time
from typing import Any

from tests.daemon.conftest import WAIT_TIMEOUT, wait_until

from .conftest import Central, SyncSite

PERIOD = 3600.0


def sync_service(site: SyncSite) -> dict[str, Any]:
    status = site.status(code=None)
    [sync] = [s for s in status["services"] if s["name"] == "sync"]
    return sync


def listening(site: SyncSite) -> bool:
    sync = sync_service(site)
    return bool(sync["detail"].get("listening")) and sync["last_tick"] is not None


def rounds_on_notify(site: SyncSite) -> int:
    return sync_service(site)["detail"]["rounds_on_notify"]


def claimable(site: SyncSite, job_id: str) -> bool:
    with site.store() as store:
        return any(j.id == job_id and j.state == "PREPROCESSED" for j in store.filter())


def wait_claimable_on_notify(site: SyncSite, job_id: str, woken: int) -> None:
    """Until the job is PREPROCESSED in the site store and more than ``woken`` rounds began on a NOTIFY."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not (claimable(site, job_id) and rounds_on_notify(site) > woken):
        assert time.monotonic() < deadline, (
            f"job {job_id} was not claimable at the site through a round woken by NOTIFY "
            f"{WAIT_TIMEOUT:g} s after its remote creation (sync period {PERIOD:g} s)\n{site.daemon_log()}"
        )
        time.sleep(0.02)


def test_remote_create_is_claimable_through_notify_not_the_sync_period(central: Central, make_site) -> None:
    site = make_site("alpha", {"sync.period_sec": PERIOD})
    central.add_user("alice")
    site.start()
    wait_until(lambda: listening(site), "the daemon's sync service ran a round and listens")
    with central.remote("alice") as conn:
        for x in range(3):
            woken = rounds_on_notify(site)
            job = conn.jobs.create("Square", f"sq/{x}", site="alpha", parameters={"x": x})
            wait_claimable_on_notify(site, job.id, woken)
