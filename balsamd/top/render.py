"""A frame as lines of text: a pure function of the frame and the terminal's width.

Sections come in the order they matter when the terminal is short (the screen shows the
first lines that fit): jobs by state, throughput, the services' lag, batch jobs, failures.
A line wider than the terminal is cut, ending in ``>`` (as ``less -S`` marks it), and whatever
a terminal would act on is shown as ``?``.
"""

from __future__ import annotations

import datetime

from balsamd.render import table
from balsamd.top.frame import BatchLoad, Frame

KEYS = "q quit   / filter (app=NAME KEY=VALUE ...; empty: all jobs)"


def one_line(text: str) -> str:
    """A reason of several lines (an exit code, then the output's tail) on one line of a table."""
    return printable(" | ".join(line.strip() for line in text.strip().splitlines() if line.strip()))


def printable(text: str) -> str:
    """``text`` with what a terminal would act on (escape sequences, tabs, newlines) as ``?``:
    reasons and errors carry what jobs and hooks wrote."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def clip(line: str, width: int) -> str:
    line = printable(line)
    if len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + ">" if width > 0 else ""


def number(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"


def change(n: int) -> str:
    return f"{n:+,}" if n else ""


def ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def _indent(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


def render(frame: Frame, width: int) -> list[str]:
    when = datetime.datetime.fromtimestamp(frame.at).strftime("%Y-%m-%d %H:%M:%S")
    shown = frame.view.describe() or "all jobs"
    lines = [f"balsamd top   site {frame.site}   {when}   {shown}", ""]

    lines.append(f"JOBS  {number(frame.total)}" + ("" if frame.first else "   (change since the last frame)"))
    if frame.states:
        if frame.first:  # nothing to compare with
            lines += _indent(table([(s.state, number(s.count)) for s in frame.states], ("STATE", "JOBS")))
        else:
            counts = [(s.state, number(s.count), change(s.change)) for s in frame.states]
            lines += _indent(table(counts, ("STATE", "JOBS", "CHANGE")))
    else:
        lines.append("  none")

    rates = "   ".join(f"{_span(r.minutes)}: {number(r.finished)} ({r.per_sec:.2f}/s)" for r in frame.throughput)
    lines += ["", f"FINISHED  {rates}"]

    lines += ["", f"DAEMON  {frame.daemon}"]
    for s in frame.services:
        health = "off" if s.healthy is None else "ok" if s.healthy else "FAILING"
        error = f"; {s.last_error}" if s.last_error else ""
        lines.append(f"  {s.name} {health}: {s.lag}{error}")
    waiting = [
        f"{direction}: {number(b.items)} waiting, oldest {ago(frame.at - b.since)}"
        for direction, b in frame.transfers.items()
    ]
    lines.append(f"  transfer items: {'   '.join(waiting) if waiting else 'none waiting'}")

    lines += ["", "BATCH JOBS RUNNING"]
    if frame.batch_jobs:
        lines += _indent(
            table([_batch_row(b) for b in frame.batch_jobs], ("ID", "SCHEDULER", "NODES", "BUSY", "IDLE", "JOBS"))
        )
    else:
        lines.append("  none")

    lines += ["", "FAILURES  (latest first)"]
    if frame.failures:
        failed = [(f.job_id, f.app, f.state, ago(frame.at - f.at), one_line(f.reason)) for f in frame.failures]
        lines += _indent(table(failed, ("JOB", "APP", "STATE", "WHEN", "REASON")))
    else:
        lines.append("  none")
    return [clip(line, width) for line in lines]


def _span(minutes: int) -> str:
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _batch_row(b: BatchLoad) -> tuple[str, ...]:
    if b.num_nodes is None:  # jobs running outside any batch job the store knows running
        return (b.id or "(no batch job)", "-", "-", number(b.busy_nodes), "-", number(b.running_jobs))
    idle = "-" if b.idle_nodes is None else number(b.idle_nodes)
    return (b.id, b.scheduler_id or "-", number(b.num_nodes), number(b.busy_nodes), idle, number(b.running_jobs))
