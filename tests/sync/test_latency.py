"""A job created through the central database becomes claimable at its site within moments
while the daemon runs: the site LISTENs for intents and syncs on NOTIFY, not on its period."""

from __future__ import annotations

import time

from tests.daemon.conftest import wait_until

from .conftest import Central, SyncSite

PERIOD = 30.0
WITHIN = 2.0  # seconds; the sync period is fifteen times longer


def listening(site: SyncSite) -> bool:
    status = site.status(code=None)
    [sync] = [s for s in status["services"] if s["name"] == "sync"]
    return bool(sync["detail"].get("listening")) and sync["last_tick"] is not None


def claimable_after(site: SyncSite, job_id: str) -> float:
    """Seconds until the job is PREPROCESSED in the site store (fails after WITHIN)."""
    started = time.monotonic()
    deadline = started + WITHIN
    while True:
        with site.store() as store:
            found = store.filter()
        if any(j.id == job_id and j.state == "PREPROCESSED" for j in found):
            return time.monotonic() - started
        assert time.monotonic() < deadline, (
            f"job {job_id} was not claimable at the site {WITHIN:g} s after its remote creation "
            f"(sync period {PERIOD:g} s)\n{site.daemon_log()}"
        )
        time.sleep(0.01)


def test_remote_create_is_claimable_well_within_the_sync_period(central: Central, make_site) -> None:
    site = make_site("alpha", {"sync.period_sec": PERIOD})
    central.add_user("alice")
    site.start()
    wait_until(lambda: listening(site), "the daemon's sync service ran a round and listens")
    latencies = []
    with central.remote("alice") as conn:
        for x in range(3):
            job = conn.jobs.create("alpha", "Square", f"sq/{x}", parameters={"x": x})
            latencies.append(claimable_after(site, job.id))
    print(f"remote create -> claimable: {', '.join(f'{s:.3f}' for s in latencies)} s (period {PERIOD:g} s)")
    assert max(latencies) < WITHIN
