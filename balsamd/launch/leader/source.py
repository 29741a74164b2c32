"""Where a launcher gets jobs and sends state reports: an interface and the store behind it.

The launcher only sees :class:`JobSource`.  On the daemon's host it is the store itself; on
other hosts the daemon's RPC (both transports of the store contract).  Either way a source
holds one session.
"""

from __future__ import annotations

import os
import socket
from typing import Protocol

from balsamd.models import ClaimLimits, Job, StateUpdate, UpdateOutcome
from balsamd.store.contract import Store
from balsamd.store.queries import claimed_jobs


class JobSource(Protocol):
    session_id: str

    def heartbeat(self, running: list[str], waiting: list[str]) -> list[str]:
        """Renew the session; returns the running job ids the launcher must stop and the
        waiting (claimed, unstarted) ones it must not start."""

    def claim(self, limits: ClaimLimits) -> list[Job]: ...

    def report(self, updates: list[StateUpdate]) -> UpdateOutcome: ...

    def release(self, job_ids: list[str]) -> None:
        """Hand back claimed jobs that were not started."""

    def close(self) -> None: ...


class StoreSource:
    """A session on the site store, opened on construction."""

    def __init__(
        self,
        store: Store,
        expiry_sec: float | None,
        label: str = "launcher",
        batch_job_id: str | None = None,
    ) -> None:
        self.store = store
        self.expiry_sec = expiry_sec
        session = store.open_session(label=label, batch_job_id=batch_job_id, host=socket.gethostname(), pid=os.getpid())
        self.session_id = session.id

    def heartbeat(self, running: list[str], waiting: list[str]) -> list[str]:
        # Without a daemon nobody else recovers the jobs of dead launchers: every launcher on
        # the store does it (the store makes it happen exactly once).
        if self.expiry_sec is not None:
            self.store.expire_sessions(self.expiry_sec)
        return self.store.heartbeat(self.session_id, running, waiting)

    def claim(self, limits: ClaimLimits) -> list[Job]:
        return claimed_jobs(self.store.claim(self.session_id, limits), limits)

    def report(self, updates: list[StateUpdate]) -> UpdateOutcome:
        return self.store.update_states(self.session_id, updates)

    def release(self, job_ids: list[str]) -> None:
        self.store.release(self.session_id, job_ids)

    def close(self) -> None:
        self.store.close_session(self.session_id)
