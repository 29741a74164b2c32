"""The chaos runner's output: a row per round, a summary over all rounds, the failures.

Fault columns show the faults that hit something; ``n/m`` when m were scheduled but only n
found a live target (a launcher kind with no launcher alive at that moment).
"""

from __future__ import annotations

import statistics
from typing import Any

import msgspec

from benchmarks.chaos.checker import Check, Findings
from benchmarks.chaos.rounds import RoundResult
from benchmarks.chaos.schedule import FaultKind

FAULT_HEADERS = {FaultKind.DAEMON: "daemon", FaultKind.SERIAL: "serial", FaultKind.MPI: "mpi",
                 FaultKind.POSTGRES: "postgres"}  # fmt: skip
CHECK_HEADERS = {
    Check.LOST: "lost",
    Check.CONCURRENT: "concurrent",
    Check.AFTER_FINAL: "after final",
    Check.BAD_EVENTS: "dup events",
    Check.CENTRAL: "central diff",
    Check.RESULTS: "bad results",
    Check.OTHER: "other",
}
HEADERS = ("round", "seed", "launchers via", "jobs", *FAULT_HEADERS.values(), "reruns", *CHECK_HEADERS.values(),
           "converge s", "round s", "result")  # fmt: skip
SHOWN_FAILURES = 10  # of each check in each round


def _faults(r: RoundResult, kind: FaultKind) -> str:
    hit, planned = r.injected(kind), r.scheduled(kind)
    return str(hit) if hit == planned else f"{hit}/{planned}"


def _verdict(r: RoundResult) -> str:
    if r.error:
        return "ERROR"
    if r.findings.count(Check.NOT_CONVERGED):
        return "NOT CONVERGED"
    return "ok" if r.ok else "FAIL"


def _count(f: Findings, check: Check) -> str:
    """Failures of a check; beside "after final", the runs begun after a kill that it stopped."""
    if check == Check.AFTER_FINAL and f.stopped_after_kill:
        return f"{f.count(check)} ({f.stopped_after_kill} stopped)"
    return str(f.count(check))


def row(r: RoundResult) -> list[str]:
    f = r.findings
    return [
        str(r.number), str(r.seed), str(r.transport), str(r.jobs), *(_faults(r, k) for k in FAULT_HEADERS),
        f"{f.reruns} ({f.rerun_jobs} jobs)", *(_count(f, c) for c in CHECK_HEADERS),
        "-" if r.converge_sec is None else f"{r.converge_sec:.1f}", f"{r.seconds:.0f}", _verdict(r),
    ]  # fmt: skip


def summary_row(results: list[RoundResult]) -> list[str]:
    settled = [r.converge_sec for r in results if r.converge_sec is not None]
    passed = sum(r.ok for r in results)
    converge = f"{statistics.median(settled):.1f} (max {max(settled):.1f})" if settled else "-"
    total = Findings(failures=[f for r in results for f in r.findings.failures],
                     stopped_after_kill=sum(r.findings.stopped_after_kill for r in results))  # fmt: skip
    return [
        f"all {len(results)}", "", "", str(sum(r.jobs for r in results)),
        *(str(sum(r.injected(k) for r in results)) for k in FAULT_HEADERS),
        str(sum(r.findings.reruns for r in results)),
        *(_count(total, c) for c in CHECK_HEADERS),
        converge, f"{sum(r.seconds for r in results):.0f}", f"{passed}/{len(results)} ok",
    ]  # fmt: skip


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def failures(r: RoundResult) -> str:
    """The round's failures, a few of each check, with where its files were kept."""
    lines = [f"round {r.number} (seed {r.seed}) failed; files kept in {r.kept}"]
    if r.error:
        lines.append(f"  the round itself broke:\n{r.error}")
    for check in Check:
        found = [f for f in r.findings.failures if f.check == check]
        for failure in found[:SHOWN_FAILURES]:
            lines.append(f"  {check}: job {failure.job}: {failure.detail}")
        if len(found) > SHOWN_FAILURES:
            lines.append(f"  {check}: ... and {len(found) - SHOWN_FAILURES} more")
    return "\n".join(lines)


def as_json(results: list[RoundResult]) -> dict[str, Any]:
    return {
        "rounds": [
            {**msgspec.to_builtins(r), "ok": r.ok,
             "injected": {str(k): r.injected(k) for k in FaultKind},
             "scheduled": {str(k): r.scheduled(k) for k in FaultKind},
             "failed_checks": {str(c): r.findings.count(c) for c in Check}}
            for r in results
        ],
        "summary": dict(zip(HEADERS, summary_row(results), strict=True)),
        "ok": all(r.ok for r in results),
    }  # fmt: skip
