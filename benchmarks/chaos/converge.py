"""Waiting for a round to settle, and reading what it left for the checker.

A round has converged when every job it made is at the site in a final state and central
holds every job at the version the site has, every event the site has, and no intent the site
has not acknowledged.  A round that does not get there in time fails with a diagnosis: what
is still moving, and where.
"""

from __future__ import annotations

from collections import Counter

import msgspec
import psycopg

from balsamd.states import FINAL
from benchmarks.chaos.central import CentralDatabase
from benchmarks.chaos.checker import Observed
from benchmarks.chaos.markers import read
from benchmarks.chaos.site import ChaosSite


class Progress(msgspec.Struct, kw_only=True):
    jobs: int = 0  # at the site
    final: int = 0
    states: dict[str, int] = {}
    central_behind: int = -1  # jobs central lacks or holds at another version; -1: unreachable
    site_events: int = 0
    central_events: int = -1
    pending_intents: int = -1

    def settled(self, expected: int) -> bool:
        return (
            self.jobs == expected == self.final
            and self.central_behind == 0
            and self.central_events == self.site_events
            and self.pending_intents == 0
        )

    def describe(self) -> str:
        states = ", ".join(f"{s}={n}" for s, n in sorted(self.states.items()))
        return (
            f"site: {self.jobs} jobs ({states}); central: {self.central_behind} jobs behind, "
            f"{self.central_events} of {self.site_events} events, {self.pending_intents} intents unacknowledged"
        )


def progress(site: ChaosSite, central: CentralDatabase) -> Progress:
    store = site.store
    jobs = store.filter()
    out = Progress(jobs=len(jobs), final=sum(1 for j in jobs if j.state in FINAL))
    out.states = dict(Counter(str(j.state) for j in jobs))
    out.site_events = len(store.events())
    try:
        versions = central.versions()
        out.central_behind = sum(1 for j in jobs if versions.get(j.id) != j.version)
        out.central_events = central.event_count(store.store_id())
        out.pending_intents = len(central.pending_intents())
    except psycopg.Error:
        pass
    return out


def observe(site: ChaosSite, central: CentralDatabase, ids: dict[str, str]) -> Observed:
    store = site.store
    return Observed(
        ids=ids,
        site_jobs={j.id: j for j in store.filter()},
        site_events=store.events(),
        central_jobs=central.jobs(),
        central_events=central.events(store.store_id()),
        pending_intents=central.pending_intents(),
        kills=central.kills(),
        markers={key: read(site.markers, key) for key in ids},
    )


def diagnose(site: ChaosSite, last: Progress, examples: int = 5) -> str:
    """What keeps a round from settling: the jobs still moving (with their paths), the batch
    jobs, whether the daemon runs, and the end of its log."""
    store = site.store
    moving = [j for j in store.filter() if j.state not in FINAL][:examples]
    lines = [last.describe()]
    for job in moving:
        path = " ".join(str(e.to_state) for e in store.events(job.id))
        lines.append(f"  job {job.id} {job.tags.get('key')} {job.state} session {job.session_id}: {path}")
    for batch in store.batch_jobs()[-6:]:
        lines.append(f"  batch job {batch.id} {batch.job_mode} {batch.state} {batch.status_info[:80]}")
    pid = site.daemon_pid()
    lines.append(f"daemon: {'pid ' + str(pid) if pid else 'not running'}")
    lines.append("--- end of daemon.log\n" + site.daemon_log())
    return "\n".join(lines)
