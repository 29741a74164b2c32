"""What ``conn.transfers.filter(...)`` means, read once for a site and for the central database:
the same keywords are refused with the same words on either side."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from balsamd.transfers.records import TransferFilter, TransferState
from balsamd.validate import Refused, explained, limit_problem

STATES = ", ".join(TransferState)


def job_refs(job: Any) -> list[Any]:
    """``job=`` as a list: one job (an id, a prefix, a job handed out) or several."""
    return [job] if isinstance(job, str) or not isinstance(job, Iterable) else list(job)


def transfer_filter(
    state: str | Iterable[str] | None = None, job_ids: list[str] | None = None, task: str | None = None,
    direction: str | None = None, location: str | None = None, limit: int | None = None,
) -> TransferFilter:  # fmt: skip
    """The filter these keywords mean (``job_ids``: full ids, each side finds them its way);
    Refused, saying what to give, when one cannot be read."""
    given = [] if state is None else [state] if isinstance(state, str) else list(state)
    unknown = [s for s in given if not isinstance(s, str) or s.lower() not in TransferState.__members__.values()]
    if unknown:
        raise Refused("transfer filter", [f"{unknown[0]!r:.40} is not a transfer item state; use one of {STATES}"])
    if direction is not None and direction not in ("in", "out"):
        raise Refused("transfer filter", [f"direction {direction!r:.40} is neither 'in' nor 'out'; give one of them"])
    problem = limit_problem(limit)
    if problem:
        raise Refused("transfer filter", [problem])
    wanted = {"states": [s.lower() for s in given], "job_ids": job_ids, "task_id": task, "direction": direction,
              "location": location, "limit": limit}  # fmt: skip
    try:
        return msgspec.convert(wanted, TransferFilter)
    except msgspec.ValidationError as exc:
        raise Refused("transfer filter", [explained(str(exc))]) from None


def ordered_counts(found: dict[str, int]) -> dict[str, int]:
    """Counts by state in the order items go through them, the states without items left out."""
    return {str(s): found[str(s)] for s in TransferState if s in found}
