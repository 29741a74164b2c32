"""Turning records into what the CLI prints: aligned tables or JSON."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from balsamd.models import Event, Job

_encoder = msgspec.json.Encoder()


def job_dict(job: Job) -> dict[str, Any]:
    """A job as JSON-friendly data (its result is shown by balsamd.results.describe_result)."""
    data = msgspec.to_builtins(job)
    data.pop("result", None)
    return data


def print_json(value: Any) -> None:
    sys.stdout.write(_encoder.encode(msgspec.to_builtins(value)).decode() + "\n")


def timestamp(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(widths[i]) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


EVENT_HEAD = ("TIME", "JOB", "FROM", "TO", "REASON")


def event_cells(e: Event, with_job: bool = True) -> list[str]:
    """An event as a table row: its time, job, states, and the last line of its reason."""
    reason = e.reason.strip().splitlines()[-1] if e.reason.strip() else ""
    cells = [timestamp(e.ts), e.from_state or "-", e.to_state, reason]
    if with_job:
        cells.insert(1, e.job_id)
    return cells


def events_table(events: Sequence[Event], with_job: bool) -> str:
    if not events:
        return "no events"
    head = EVENT_HEAD if with_job else tuple(h for h in EVENT_HEAD if h != "JOB")
    return table([event_cells(e, with_job) for e in events], head)
