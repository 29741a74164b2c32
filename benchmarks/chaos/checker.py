"""The checks of a round, a pure function of what the round planned and what it left behind.

- Every job reached the state planned for it (a failing branch FAILED, its descendants FAILED
  saying which parent, a job its user killed KILLED unless the kill found it finished), and one
  that finished had a complete run (every rank ended).
- No job ran twice at once: no run found its job's lock held, and no two completed runs of the
  same rank overlap.
- No job ran after the store recorded the run that ended it (its RUN_DONE, or its RUN_ERROR),
  and no job whose parent failed ran at all.  A kill must prevent a run or stop it: a launcher
  that claimed a job before its kill learns of the kill at its next heartbeat, and a run it
  started in between must be stopped, never reach its end (such runs are counted).
- The site's events of each job are a path through the transition table, with no (state, time)
  twice; central holds exactly the site's events, each once.
- Python jobs' results decode to the values planned, at the site and in central.
- Central agrees with the site on every field of every job, holds no job the site does not,
  and every intent was acknowledged.

Runs beyond a job's first are reruns, legitimate after a lost run (a launcher killed mid-run):
they are counted, not failed.
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter, defaultdict
from typing import Any

import msgspec

from balsamd.models import Event, Job
from balsamd.results import RemoteError, ResultNotReady, UnreadableResult, value_of
from balsamd.states import JobState, is_allowed
from benchmarks.chaos.campaign import PYTHON_APP, Planned
from benchmarks.chaos.markers import Markers, Run

S = JobState
EventRow = tuple[int, str, str | None, str, float, str]  # id, job, from, to, ts, reason


class Check(enum.StrEnum):
    LOST = "lost"
    CONCURRENT = "ran twice concurrently"
    AFTER_FINAL = "ran after final"
    BAD_EVENTS = "duplicate or impossible events"
    CENTRAL = "central disagreements"
    RESULTS = "wrong results"
    OTHER = "unexpected jobs or markers"
    NOT_CONVERGED = "not converged"


class Failure(msgspec.Struct, kw_only=True):
    check: Check
    job: str  # the job's key (its id when the round never planned it)
    detail: str


class Observed(msgspec.Struct, kw_only=True):
    """What a round left behind, read once it converged (or gave up)."""

    ids: dict[str, str]  # planned key -> job id
    site_jobs: dict[str, Job]  # by id
    site_events: list[Event]
    central_jobs: dict[str, Job]  # by id, owned by "" when the site's role owns it
    central_events: list[EventRow]
    pending_intents: list[tuple[str, str, str]]
    kills: dict[str, JobState]  # job id -> where its kill intent left it, as the site acknowledged
    markers: dict[str, Markers]  # by key


class Findings(msgspec.Struct, kw_only=True):
    failures: list[Failure] = []
    runs: int = 0
    reruns: int = 0  # runs beyond each job's first (rank 0)
    rerun_jobs: int = 0
    stopped_after_kill: int = 0  # runs begun after their job's kill, then stopped by it

    def count(self, check: Check) -> int:
        return sum(1 for f in self.failures if f.check == check)


def check(planned: list[Planned], seen: Observed) -> Findings:
    out = Findings()
    events_by_job: dict[str, list[Event]] = defaultdict(list)
    for event in seen.site_events:
        events_by_job[event.job_id].append(event)
    key_of = {job_id: key for key, job_id in seen.ids.items()}
    for job in planned:
        out.failures += _check_job(job, seen, events_by_job, out)
    for job_id in sorted(set(seen.site_jobs) - set(key_of)):
        out.failures.append(Failure(check=Check.OTHER, job=job_id, detail="a job at the site the round never made"))
    for key, found in sorted(seen.markers.items()):
        for line in found.unreadable:
            out.failures.append(Failure(check=Check.OTHER, job=key, detail=f"unreadable marker line {line!r}"))
    out.failures += _check_central(seen, key_of)
    return out


def _check_job(job: Planned, seen: Observed, events_by_job: dict[str, list[Event]], out: Findings) -> list[Failure]:
    def fail(what: Check, detail: str) -> Failure:
        return Failure(check=what, job=job.key, detail=detail)

    job_id = seen.ids.get(job.key)
    if job_id is None:
        return [fail(Check.LOST, "never created")]
    record = seen.site_jobs.get(job_id)
    if record is None:
        return [fail(Check.LOST, f"job {job_id} is not at the site")]
    runs = seen.markers.get(job.key, Markers()).runs
    firsts = [r for r in runs if r.rank == 0]
    out.runs += len(firsts)
    if len(firsts) > 1:
        out.reruns += len(firsts) - 1
        out.rerun_jobs += 1
    found = []
    events = events_by_job.get(job_id, [])
    expect = job.expect
    if job.killable and seen.kills.get(job_id) == S.KILLED:
        expect = S.KILLED
    if job.killable and job_id not in seen.kills:  # how it should end is not known
        found.append(fail(Check.LOST, "the site never acknowledged its kill"))
    elif record.state != expect or not record.state_reason.startswith(job.reason):
        now = f"{record.state} ({record.state_reason})" if record.state_reason else str(record.state)
        planned = f"{expect} with a reason beginning {job.reason!r}" if job.reason else str(expect)
        found.append(fail(Check.LOST, f"{now}, planned {planned}; path {_path(events)}"))
    elif expect == S.JOB_FINISHED and not _complete(runs, job.ranks):
        found.append(fail(Check.LOST, f"JOB_FINISHED without a complete run of its {job.ranks} rank(s): {runs}"))
    found += [fail(Check.CONCURRENT, detail) for detail in _concurrent(runs)]
    late, stopped = _after_final(job, expect, runs, events)
    out.stopped_after_kill += stopped
    found += [fail(Check.AFTER_FINAL, detail) for detail in late]
    found += [fail(Check.BAD_EVENTS, detail) for detail in event_problems(record, events)]
    if job.app == PYTHON_APP and record.state == S.JOB_FINISHED:
        for where, rec in (("site", record), ("central", seen.central_jobs.get(job_id))):
            problem = _result_problem(rec, job.result)
            if problem:
                found.append(fail(Check.RESULTS, f"{where}: {problem}"))
    return found


def _path(events: list[Event]) -> str:
    return " ".join(str(e.to_state) for e in events)


def _complete(runs: list[Run], ranks: int) -> bool:
    return all(any(r.rank == rank and r.ended is not None for r in runs) for rank in range(ranks))


def _concurrent(runs: list[Run]) -> list[str]:
    found = [f"run of rank {r.rank} (pid {r.pid} on {r.host}) found its lock held by another run" for r in runs
             if not r.exclusive]  # fmt: skip
    done = sorted((r for r in runs if r.ended is not None), key=lambda r: (r.rank, r.started))
    for a, b in itertools.pairwise(done):
        assert a.ended is not None
        if a.rank == b.rank and b.started < a.ended and (a.host, a.pid) != (b.host, b.pid):
            found.append(f"rank {a.rank}: pid {a.pid} ran {a.started:.3f}-{a.ended:.3f}, "
                         f"pid {b.pid} started {b.started:.3f}")  # fmt: skip
    return found


def _after_final(job: Planned, expect: JobState, runs: list[Run], events: list[Event]) -> tuple[list[str], int]:
    """Runs that began after the run the store recorded as the job's last, or began after its
    kill and were not stopped (they reached their end), or ran at all when a parent failed;
    and how many runs began after the kill and were stopped."""
    if job.reason:
        return [f"ran (pid {r.pid} at {r.started:.3f}) although a parent failed" for r in runs], 0
    ending = {S.JOB_FINISHED: S.RUN_DONE, S.FAILED: S.RUN_ERROR, S.KILLED: S.KILLED}.get(expect)
    ends = [e.ts for e in events if e.to_state == ending]
    if not ends:
        return [], 0
    last = max(ends)
    late = [r for r in runs if r.started > last]
    stopped = sum(1 for r in late if r.ended is None) if expect == S.KILLED else 0
    ran = "and ran to its end " if expect == S.KILLED else ""
    return [f"rank {r.rank} started at {r.started:.3f} (pid {r.pid}) {ran}after its {ending} at {last:.3f}"
            for r in late if expect != S.KILLED or r.ended is not None], stopped  # fmt: skip


def event_problems(job: Job, events: list[Event]) -> list[str]:
    """Why a job's events are not one path through the transition table ending in its state."""
    problems = []
    state: JobState = S.CREATED
    seen: Counter[tuple[JobState, float]] = Counter()
    for e in events:
        if e.from_state != state or not is_allowed(state, e.to_state):
            problems.append(f"event {e.id} goes {e.from_state} -> {e.to_state} after {state}")
        seen[e.to_state, e.ts] += 1
        state = e.to_state
    problems += [f"{n} events to {s} at {ts:.6f}" for (s, ts), n in seen.items() if n > 1]
    if events and state != job.state:
        problems.append(f"events end in {state}, the job is {job.state}")
    return problems


def _result_problem(job: Job | None, expected: Any) -> str:
    if job is None:
        return "no such job"
    try:
        value = value_of(job)
    except (RemoteError, ResultNotReady, UnreadableResult) as exc:
        return f"result does not read: {type(exc).__name__}: {exc}"
    return "" if value == expected else f"result {value!r}, planned {expected!r}"


def _check_central(seen: Observed, key_of: dict[str, str]) -> list[Failure]:
    out = []
    for job_id, site_job in sorted(seen.site_jobs.items()):
        key = key_of.get(job_id, job_id)
        central_job = seen.central_jobs.get(job_id)
        if central_job is None:
            out.append(Failure(check=Check.CENTRAL, job=key, detail=f"job {job_id} is not in central"))
        elif central_job != site_job:
            differ = [f for f in Job.__struct_fields__ if getattr(central_job, f) != getattr(site_job, f)]
            detail = ", ".join(
                f"{f}: site {getattr(site_job, f)!r}, central {getattr(central_job, f)!r}" for f in differ
            )
            out.append(Failure(check=Check.CENTRAL, job=key, detail=detail))
    for job_id in sorted(set(seen.central_jobs) - set(seen.site_jobs)):
        out.append(Failure(check=Check.CENTRAL, job=key_of.get(job_id, job_id), detail="in central, not at the site"))
    site_events = {_row(e) for e in seen.site_events}
    central_events = Counter(seen.central_events)
    by_job: dict[str, list[str]] = defaultdict(list)
    for row in sorted(site_events - set(central_events)):
        by_job[row[1]].append(f"event {row[0]} ({row[3]}) missing in central")
    for row in sorted(set(central_events) - site_events):
        by_job[row[1]].append(f"event {row[0]} ({row[3]}) in central, not at the site")
    for job_id, details in sorted(by_job.items()):
        out.append(Failure(check=Check.CENTRAL, job=key_of.get(job_id, job_id), detail="; ".join(details)))
    twice = Counter((row[1], row[3], row[4]) for row in seen.central_events)
    for (job_id, state, ts), n in sorted(twice.items()):
        if n > 1:
            detail = f"central holds {n} events to {state} at {ts:.6f}"
            out.append(Failure(check=Check.BAD_EVENTS, job=key_of.get(job_id, job_id), detail=detail))
    for intent_id, kind, job_id in seen.pending_intents:
        detail = f"{kind} intent {intent_id} never acknowledged"
        out.append(Failure(check=Check.CENTRAL, job=key_of.get(job_id, job_id), detail=detail))
    return out


def _row(e: Event) -> EventRow:
    return (e.id, e.job_id, None if e.from_state is None else str(e.from_state), str(e.to_state), e.ts, e.reason)
