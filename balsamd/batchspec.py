"""A batch-job request written as keyword arguments, read the same way by every API.

The local API, the central one and the CLI take ``num_nodes=..., partitions=[{...}], ...``;
this turns them into a ``BatchSpec`` (the site's default queue and project for those not given)
or a ``Refused`` naming the field.  What the values mean is checked by the store
(``validate.batch_problems``), and first by the central client against the rules the site
published, with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from balsamd.config import SchedulerSettings
from balsamd.explain import a_kind, explain
from balsamd.models import BATCH_SPEC_FIELDS, BatchJob, BatchJobState, BatchSpec, JobMode
from balsamd.validate import Refused, explained

WHERE = "batch job"


def batch_spec(fields: Mapping[str, Any], scheduler: SchedulerSettings) -> BatchSpec:
    """The request these fields make; queue and project not given (None) are the site's defaults."""
    unknown = sorted(str(k) for k in fields if k not in BATCH_SPEC_FIELDS)
    if unknown:
        raise Refused(WHERE, [f"unknown field(s) {unknown}; a batch job takes {sorted(BATCH_SPEC_FIELDS)}"])
    given = {k: v for k, v in fields.items() if v is not None}
    given.setdefault("queue", scheduler.default_queue)
    given.setdefault("project", scheduler.default_project)
    return read_spec(given, WHERE)


def read_spec(raw: Any, where: str) -> BatchSpec:
    """A BatchSpec from plain values (keyword arguments, an intent's JSON), or Refused naming the
    field that is wrong."""
    try:
        return msgspec.convert(raw, BatchSpec)
    except msgspec.ValidationError as exc:
        told = explain(str(exc))
        if told.kind == "enum" and told.path[-1:] == ["job_mode"]:
            problem = f"{told.field}: {told.detail} is not a job mode; use one of {', '.join(JobMode)}"
        else:
            problem = explained(str(exc))
        raise Refused(where, [problem]) from None


def batch_job(batch_id: str, spec: BatchSpec) -> BatchJob:
    return BatchJob(id=batch_id, **msgspec.structs.asdict(spec))


def batch_states(state: Any) -> list[BatchJobState] | None:
    """Batch-job states to filter on: one, a list of them, or None for all."""
    if state is None:
        return None
    given = [state] if isinstance(state, str) else state
    if not isinstance(given, list | tuple | set | frozenset):
        raise Refused("batch job filter", [f"state is a state or a list of them, not {a_kind(state)}"])
    unknown = [s for s in given if s not in {str(s) for s in BatchJobState}]
    if unknown:
        choices = ", ".join(BatchJobState)
        raise Refused("batch job filter", [f"{unknown[0]!r} is not a batch job state; use one of {choices}"])
    return [BatchJobState(s) for s in given]
