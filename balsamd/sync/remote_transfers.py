"""Transfer items from anywhere that reaches the central database: ``conn.transfers``.

Each site pushes its jobs' items as its transfer service moves them (``sync.engine``); a user
sees those of the jobs they own, by row-level security (``sync.schema``), and only reads them:
the site moves them, and a retry of the job tries them again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from balsamd.transfers.filters import job_refs, ordered_counts, transfer_filter
from balsamd.transfers.records import ITEM_COLUMNS, TransferFilter, TransferItem

if TYPE_CHECKING:
    from balsamd.sync.remote import CentralConnection

_NAMES = (*ITEM_COLUMNS, "workdir", "owner", "site")
_SELECT = ", ".join([*(f"t.{c}" for c in ITEM_COLUMNS), "j.workdir", "j.owner", "t.site"])
_FROM = "FROM balsamd.transfer_items t JOIN balsamd.jobs j ON j.id = t.job_id"


def _where(site: str | None, f: TransferFilter) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    wanted = {"t.site": site, "t.task_id": f.task_id, "t.direction": f.direction, "t.location": f.location}
    for column, value in wanted.items():
        if value is not None:
            parts.append(f"{column} = %s")
            params.append(value)
    if f.states:
        parts.append("t.state = ANY(%s)")
        params.append([str(s) for s in f.states])
    if f.job_ids is not None:
        parts.append("t.job_id = ANY(%s)")
        params.append(f.job_ids)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


class RemoteTransfers:
    def __init__(self, conn: CentralConnection) -> None:
        self._conn = conn

    def filter(self, *, site: str | None = None, state: str | Iterable[str] | None = None, job: Any = None,
               task: str | None = None, direction: str | None = None, location: str | None = None,
               limit: int | None = None) -> list[TransferItem]:  # fmt: skip
        """Items of the jobs you own at every site (or ``site``), in a state (or one of several),
        of a job (its id, a job, or a list of them), of a task, going one way, to or from one
        location; oldest first."""
        job_ids = None if job is None else [self._job_id(j) for j in job_refs(job)]
        f = transfer_filter(state, job_ids, task, direction, location, limit)
        where, params = _where(site, f)
        query = f"SELECT {_SELECT} {_FROM}{where} ORDER BY t.job_id, t.id"
        if f.limit is not None:
            query += " LIMIT %s"
            params.append(f.limit)
        rows = self._conn.execute(query, params)
        return [msgspec.convert(dict(zip(_NAMES, r, strict=True)), TransferItem) for r in rows]

    def counts(self, *, site: str | None = None) -> dict[str, int]:
        """Items of the jobs you own (at ``site``) by state."""
        where, params = (" WHERE site = %s", [site]) if site is not None else ("", [])
        rows = self._conn.execute(f"SELECT state, count(*) FROM balsamd.transfer_items{where} GROUP BY state", params)
        return ordered_counts(dict(rows))

    def _job_id(self, job: Any) -> str:
        """A job's id, or the id given once central shows that job to you (an error says it does not)."""
        return str(job.id) if not isinstance(job, str) else self._conn.jobs.get(job).id
