"""A day of campaign history for the demo site, so that every report has something to show.

After the demo's real runs, this replays a made-up day through the store's ordinary
operations, each given the moment it happens (``now=``, and the reports' own times): waves of
jobs of three apps submitted over 24 hours, batch jobs that wait in a queue and then hold
nodes for a few hours, runs packed onto those nodes as a launcher would claim them, failures
with their reasons and output, timeouts at a batch job's end (rerun by a later one), and
analysis jobs failed because the simulation they depend on failed.  Nothing runs for real, and
it is the same every time (a seeded random generator).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from balsamd import ids
from balsamd.batchspec import batch_job, batch_spec
from balsamd.config import SchedulerSettings
from balsamd.models import BatchJobState, ClaimLimits, Job, JobMode, JobSpec, StateUpdate
from balsamd.modes import PRIVATE, make_dir, write_file
from balsamd.site import SiteLayout
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.store.queries import claimed_jobs

HOURS = 24
TIMED_OUT = "stopped: the launcher's wall time ran out"  # what a launcher reports then
SEED = 20261207
S = JobState

SIMULATE_APP = "Simulate"
ANALYZE_APP = "Analyze"
SQUARE_APP = "Square"

# (hours after the day began that the batch job was asked for, its nodes, its wall time in minutes)
BATCHES = ((0.3, 2, 150), (3.5, 4, 120), (7.0, 2, 180), (11.0, 4, 150), (14.5, 3, 120), (18.0, 4, 180),
           (21.0, 2, 90))  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    seconds: float
    state: JobState
    return_code: int | None
    reason: str
    output: str


@dataclass
class HistorySummary:
    jobs: int = 0
    runs: int = 0
    failed_runs: int = 0
    batch_jobs: int = 0


def app_sources() -> dict[str, str]:
    """The apps the history's jobs are of (files for SITE/apps), besides the demo's Square."""
    return {
        "simulate.py": _command_app(SIMULATE_APP, "echo simulating step {{ step }}", "step"),
        "analyze.py": _command_app(ANALYZE_APP, "echo analysing step {{ step }}", "step"),
    }


def _command_app(name: str, template: str, param: str) -> str:
    return (
        "from balsamd import ApplicationDefinition\n\n\n"
        f"class {name}(ApplicationDefinition):\n"
        f"    command_template = {template!r}\n"
        f"    parameters = {{{param!r}: {{'required': True}}}}\n"
    )


def outcome(rng: random.Random, job: Job) -> Outcome:
    """How a run of ``job`` goes: its length, and whether and why it fails."""
    if job.app == SIMULATE_APP:
        seconds = rng.lognormvariate(7.2, 0.45)  # about 22 minutes, a few over an hour
        if rng.random() < 0.10:
            log = f"step {job.parameters['step']}: iteration 500, residual 3.2e-02\nERROR: mesh did not converge"
            return Outcome(seconds * 0.4, S.RUN_ERROR, 1, f"exit code 1\n{log}", log)
        return Outcome(seconds, S.RUN_DONE, 0, "", "")
    if job.app == ANALYZE_APP:
        seconds = rng.uniform(60, 420)
        if rng.random() < 0.05:
            log = f"Traceback (most recent call last):\nFileNotFoundError: step{job.parameters['step']}/fields.h5"
            return Outcome(rng.uniform(2, 8), S.RUN_ERROR, 2, f"exit code 2\n{log}", log)
        return Outcome(seconds, S.RUN_DONE, 0, "", "")
    return Outcome(rng.uniform(60, 600), S.RUN_DONE, 0, "", "")


def wave(rng: random.Random, first_step: int) -> list[JobSpec]:
    """What a user submits before a batch job: simulations, an analysis of each (its child),
    independent analyses and small Python jobs (children are added once parents exist)."""
    sims = [
        JobSpec(app=SIMULATE_APP, workdir=f"history/sim{first_step + i:04d}", parameters={"step": first_step + i},
                num_nodes=2 if rng.random() < 0.15 else 1, tags={"campaign": "day1", "kind": "simulation"})
        for i in range(rng.randint(7, 11))
    ]  # fmt: skip
    analyses = [
        JobSpec(app=ANALYZE_APP, workdir=f"history/ana{first_step}-{i:03d}", parameters={"step": first_step},
                node_packing_count=4, tags={"campaign": "day1", "kind": "analysis"})
        for i in range(rng.randint(25, 45))
    ]  # fmt: skip
    squares = [
        JobSpec(app=SQUARE_APP, workdir=f"history/sq{first_step}-{i:03d}", parameters={"x": i},
                node_packing_count=8, tags={"campaign": "day1", "kind": "python"})
        for i in range(rng.randint(60, 120))
    ]  # fmt: skip
    return sims + analyses + squares


def write_history(
    store: Store, layout: SiteLayout, scheduler_settings: SchedulerSettings, now: float
) -> HistorySummary:
    """Replay a day ending at ``now`` into the site's store; returns what it wrote."""
    rng = random.Random(SEED)
    day0 = now - HOURS * 3600
    summary = HistorySummary()
    step = 0
    for n, (asked_h, nodes, wall_min) in enumerate(BATCHES):
        asked = day0 + asked_h * 3600
        specs = wave(rng, step)
        step += len(specs)
        created = store.create_jobs(specs, now=asked - 60)
        sims = [j for j in created if j.app == SIMULATE_APP]
        children = [
            JobSpec(app=ANALYZE_APP, workdir=f"{s.workdir}-analysis", parameters={"step": s.parameters["step"]},
                    parent_ids=[s.id], node_packing_count=4, tags={"campaign": "day1", "kind": "analysis"})
            for s in sims
        ]  # fmt: skip
        created += store.create_jobs(children, now=asked - 30)
        summary.jobs += len(created)
        spec = batch_spec({"num_nodes": nodes, "wall_time_min": wall_min, "job_mode": JobMode.SERIAL},
                          scheduler_settings)  # fmt: skip
        batch = store.create_batch_job(batch_job(ids.new_id(asked), spec), now=asked)
        start = asked + rng.uniform(3, 55) * 60
        end = min(start + wall_min * 60, now - 60)
        store.update_batch_job(batch.id, state=BatchJobState.QUEUED, scheduler_id=f"{4100 + n}")
        store.update_batch_job(batch.id, state=BatchJobState.RUNNING, start_time=start)
        runs, failed = _run_batch(store, layout, rng, batch.id, nodes, start, end)
        store.update_batch_job(batch.id, state=BatchJobState.FINISHED, end_time=end)
        summary.runs += runs
        summary.failed_runs += failed
        summary.batch_jobs += 1
    return summary


def _run_batch(store: Store, layout: SiteLayout, rng: random.Random, batch_id: str, nodes: int, start: float,
               end: float) -> tuple[int, int]:  # fmt: skip
    """Run what a launcher of ``nodes`` nodes would claim from ``start`` to ``end``: claim what
    fits the free share of nodes, report each run as it ends (which frees its children)."""
    session = store.open_session(label="history", batch_job_id=batch_id, host="nid00001", pid=1, now=start)
    running: list[tuple[float, str, Job, Outcome]] = []  # (ends at, job id, job, outcome), a heap
    free, t = float(nodes), start
    runs = failed = 0
    while True:
        limits = ClaimLimits(max_jobs=64, max_nodes_per_job=nodes, max_aggregate_nodes=free,
                             max_wall_time_min=(end - t) / 60)  # fmt: skip
        for job in claimed_jobs(store.claim(session.id, limits, now=t), limits) if free > 1e-9 else []:
            how = outcome(rng, job)
            free -= job.footprint
            heapq.heappush(running, (t + how.seconds, job.id, job, how))
        if not running:
            break
        t, _, job, how = heapq.heappop(running)
        if t >= end:  # the batch job's wall time ran out under it
            how = Outcome(end - (t - how.seconds), S.RUN_TIMEOUT, None, TIMED_OUT, "")
            t = end
        free += job.footprint
        runs += 1
        failed += how.state != S.RUN_DONE
        if how.output:
            _write_output(layout, job, how.output)
        report = StateUpdate(job_id=job.id, state=how.state, ts=t, return_code=how.return_code, reason=how.reason,
                             started_at=t - how.seconds)  # fmt: skip
        outcome_ = store.update_states(session.id, [report], now=t)
        if outcome_.rejected:
            raise RuntimeError(f"the history's report was rejected: {outcome_.rejected}")
        if t >= end:
            break
    for ends_at, _, job, how in running:  # still running when the batch job ended: timed out
        runs += 1
        failed += 1
        started = ends_at - how.seconds
        timeout = StateUpdate(job_id=job.id, state=S.RUN_TIMEOUT, ts=end, started_at=started, reason=TIMED_OUT)
        store.update_states(session.id, [timeout], now=end)
    store.close_session(session.id, now=end)
    return runs, failed


def _write_output(layout: SiteLayout, job: Job, text: str) -> None:
    """The run's output where a launcher leaves it (its workdir under SITE/data, ``job.out``)."""
    from balsamd.launch.running.commands import OUTPUT_FILE

    path = layout.data
    for part in job.workdir.split("/"):
        path = path / part
        make_dir(path, PRIVATE.directory, exist_ok=True)
    write_file(path / OUTPUT_FILE, text + "\n", PRIVATE.file)
