"""What each RPC method does on the daemon: a thin mapping onto the store.

These functions run in worker threads under the store's capacity limiter; the coroutine
methods (status, shutdown) belong to the daemon itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from balsamd.store.store import SiteStore


def store_handlers(store: SiteStore) -> dict[str, Callable[[Any], Any]]:
    return {
        "ping": lambda _a: "pong",
        "open_session": lambda a: store.open_session(
            label=a.label, batch_job_id=a.batch_job_id, host=a.host, pid=a.pid
        ),
        "heartbeat": lambda a: store.heartbeat(a.session_id, a.running),
        "close_session": lambda a: store.close_session(a.session_id),
        "expire_sessions": lambda a: store.expire_sessions(a.expiry_sec),
        "claim": lambda a: store.claim_document(a.session_id, a.limits),
        "report": lambda a: store.update_states(a.session_id, a.updates),
        "release": lambda a: store.release(a.session_id, a.job_ids),
        "create_jobs": lambda a: store.create_jobs(a.jobs),
        "get": lambda a: store.get(a.job_id),
        "resolve_id": lambda a: store.resolve_id(a.text),
        "filter": lambda a: store.filter(a.filter),
        "count": lambda a: store.count(a.filter),
        "counts_by_state": lambda a: store.counts_by_state(a.filter),
        "events": lambda a: store.events(a.job_id, a.after, a.limit),
        "kill": lambda a: store.kill(a.job_ids),
        "retry": lambda a: store.retry(a.job_ids),
        "delete": lambda a: store.delete(a.job_ids),
        "apps": lambda _a: store.apps(),
        "put_apps": lambda a: store.put_apps(a.apps, replace_all=a.replace_all),
        "create_batch_job": lambda a: store.create_batch_job(a.batch),
        "batch_jobs": lambda a: store.batch_jobs(a.states),
        "remove_batch_job": lambda a: store.remove_batch_job(a.batch_id),
    }
