"""The pilot inside a batch job: claim jobs that fit, run them, report, stop in time.

The loop is a sequence of small steps over injected collaborators (job source, node manager,
runner, clock), so each behaviour can be exercised on its own.  Calls on the job source go
through a courier thread, so the loop never waits for the store: state reports are batched
(one call carries every RUNNING / RUN_DONE / RUN_ERROR since the last one went out), and a
claim's jobs are taken in when they arrive.

Short Python runs are queued on their worker behind the run holding a placement (a lane), and
take over that placement in turn: they start back to back, without a launcher step between.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from balsamd.config import LauncherSettings
from balsamd.ids import new_id
from balsamd.launch.leader.courier import Courier, Delivery
from balsamd.launch.leader.policy import claim_limits, finished_update, followers, short_runs, updated_mean
from balsamd.launch.leader.resources import NodeManager
from balsamd.launch.leader.source import JobSource
from balsamd.launch.running.protocol import Finished, HandedBack, HostLost, Placement, RunEvent, Runner, RunStarted
from balsamd.models import Job, JobMode, StateUpdate
from balsamd.states import JobState
from balsamd.store.store import SessionGone

log = logging.getLogger("balsamd.launcher")

FLUSH_SEC = 0.05  # between claims that found fewer jobs than asked; between report retries
REPORT_DELAY_SEC = 0.02  # most a state report waits for others to go out with it
IDLE_CLAIM_SEC = 1.0  # how often an idle launcher asks for work
MAX_WAIT_SEC = 0.5
RATE_WINDOW_SEC = 0.25  # the run rate that sizes serial claims is measured over at least this
MAX_REPORT = 1024  # state reports in one call on the job source
KILL_GRACE_SEC = 10.0  # between SIGTERM and SIGKILL for a job killed by its user
WARN_EVERY_SEC = 10.0  # most frequent warning per kind of job-source failure


class _Shape(msgspec.Struct, frozen=True):
    """The resource fields that decide whether a job can fit (jobs mostly share a few)."""

    id: str
    num_nodes: int
    ranks_per_node: int
    threads_per_rank: int
    threads_per_core: int
    gpus_per_rank: float
    node_packing_count: int


def _shape(job: Job) -> _Shape:
    return _Shape("", job.num_nodes, job.ranks_per_node, job.threads_per_rank, job.threads_per_core,
                  job.gpus_per_rank, job.node_packing_count)  # fmt: skip


@dataclass(eq=False)
class _Lane:
    """A placement held by a Python run on a warm worker, and the jobs queued to take it next."""

    placement: Placement
    app: str
    shape: _Shape
    queue: collections.deque[Job] = field(default_factory=collections.deque)


@dataclass
class Summary:
    started: int = 0
    done: int = 0
    errors: int = 0
    timeouts: int = 0
    killed: int = 0
    elapsed: float = 0.0
    exit_reason: str = ""
    rejected: dict[str, str] = field(default_factory=dict)


class Launcher:
    def __init__(
        self,
        source: JobSource,
        nodes: NodeManager,
        runner: Runner,
        settings: LauncherSettings,
        job_mode: JobMode,
        wall_time_min: float | None = None,
        idle_ttl: float | None = None,
        filter_tags: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.nodes, self.runner, self.settings = source, nodes, runner, settings
        self.mode = job_mode
        self.filter_tags = filter_tags or {}
        self.idle_ttl = settings.idle_ttl_sec if idle_ttl is None else idle_ttl
        self.clock, self.wall_clock = clock, wall_clock
        self.start = clock()
        self.deadline = None if wall_time_min is None else self.start + wall_time_min * 60
        self.backlog: collections.deque[Job] = collections.deque()
        self.running: dict[str, Job] = {}  # handed to the runner, started or queued on a worker
        self.started: set[str] = set()  # of those, the ones whose RUNNING was queued
        self.lanes: dict[str, _Lane] = {}  # by the job holding the lane's placement
        self.lane_of: dict[str, _Lane] = {}  # holders and queued jobs
        self.mean_run: dict[str, float] = {}  # app -> moving mean of its run time
        self.confirmed: set[str] = set()  # of the started, those whose RUNNING the source took
        self.updates: list[StateUpdate] = []
        # RUNNING reports not sent yet: a run that ends before they go out is reported once
        self.starts: dict[str, float] = {}  # job id -> when it started
        self.report_at = 0.0  # the unsent reports go out then (or when there are MAX_REPORT)
        self.courier = Courier()
        self.next_claim = self.start
        self.claim_request = new_id()
        self.last_claim = self.start
        self.more_to_claim = False  # the last claim got all it asked for
        self.runs_ended = 0
        self.run_rate = 0.0  # runs ending per second, over the last RATE_WINDOW_SEC or more
        self.rate_mark = (self.start, 0)  # (when, runs_ended then) that rate is measured from
        self.next_heartbeat = self.start + settings.heartbeat_sec
        self.last_heartbeat_ok = self.start
        self.last_busy = self.start
        self.last_empty_claim = self.start - 1.0
        self.killed: dict[str, float] = {}  # job id -> when to SIGKILL
        self.draining_since: float | None = None
        self.drain_reason = ""
        self.summary = Summary()
        self._warned: dict[str, float] = {}

    # ----- the loop -------------------------------------------------------------------

    def run(self) -> Summary:
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in previous:
            signal.signal(s, self._on_signal)
        self.runner.watch(self.courier.fileno())
        try:
            while not self._finished():
                self.step()
        except SessionGone as exc:
            log.error("%s; stopping every run now", exc)
            self.summary.exit_reason = f"session lost: {exc}"
            self.runner.signal(list(self.running), signal.SIGKILL)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._shutdown()
        self.summary.elapsed = self.clock() - self.start
        return self.summary

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.drain(f"received {signal.Signals(signum).name}")

    def drain(self, reason: str) -> None:
        """Stop claiming and end every run (SIGTERM, grace period, SIGKILL) as RUN_TIMEOUT."""
        if self.draining_since is None:
            log.info("draining: %s", reason)
            self.draining_since = self.clock()
            self.drain_reason = reason
            self.runner.signal(list(self.running), signal.SIGTERM)

    def step(self) -> None:
        now = self.clock()
        if self.deadline is not None and now >= self.deadline - self.settings.timeout_grace_sec:
            self.drain("wall time is ending")
        self._collect(self.runner.wait(self._wait_time(now)))
        self._take_deliveries()
        now = self.clock()
        self._enforce_kills(now)
        if self.draining_since is None:
            self._start_backlog(now)
            if now >= self.next_claim:
                self._claim(now)
        elif now >= self.draining_since + self.settings.timeout_grace_sec:
            self.runner.signal(list(self.running), signal.SIGKILL)
        due = self._report_due(now)
        if due is not None and now >= due:
            self._flush()
        if now >= self.next_heartbeat:
            self._heartbeat(now)

    def _wait_time(self, now: float) -> float:
        if self.backlog and self.draining_since is None and self._could_place():
            return 0.0
        wake = [self.next_heartbeat, now + MAX_WAIT_SEC]  # the courier's deliveries wake it too
        due = self._report_due(now)
        if due is not None:
            wake.append(due)
        if self.draining_since is None and not self.courier.pending("claim"):
            wake.append(self.next_claim)
        return max(0.0, min(wake) - now)

    def _report_due(self, now: float) -> float | None:
        """When the unsent reports go out, or None while they wait for a call to come back.

        While one report is out the next batch grows: batches fit the load.  A claim on its
        way goes first: its reply may want a claim after it, which must not wait 30 ms behind
        a report while workers run dry.  With nothing running, no other report is coming to
        wait for."""
        if not self._unsent() or self.courier.pending("report"):
            return None
        if self._unsent_full():
            return now
        if self.courier.pending("claim"):
            return None
        return self.report_at if self.running else now

    def _could_place(self) -> bool:
        free = self.nodes.free_capacity()
        return free.aggregate_free > 1e-9

    def _finished(self) -> bool:
        if self.draining_since is not None:
            return not self.running
        if not self.nodes.nodes and not self.running:
            self.summary.exit_reason = "every node was lost"
            return True
        if self.running or self.backlog or self.last_empty_claim < self.last_busy or self.courier.pending("claim"):
            return False  # not idle until a claim made since the last run came back empty
        if self.clock() - self.last_busy >= self.idle_ttl:
            self.summary.exit_reason = f"idle for {self.idle_ttl:g} s"
            return True
        return False

    # ----- steps ----------------------------------------------------------------------

    def _collect(self, events: list[RunEvent]) -> None:
        handed_back: list[Job] = []
        for event in events:
            if isinstance(event, RunStarted):
                self._started(event.job_id, event.ts)
            elif isinstance(event, Finished):
                self._ended(event)
            elif isinstance(event, HostLost):
                self.nodes.disable(event.host)
            elif (job := self._hand_back(event)) is not None:
                handed_back.append(job)
        self.backlog.extendleft(reversed(handed_back))

    def _started(self, job_id: str, ts: float) -> None:
        if job_id in self.running and job_id not in self.started:
            self.started.add(job_id)
            self.summary.started += 1
            self._gather()
            self.starts[job_id] = ts

    def _ended(self, f: Finished) -> None:
        job_id = f.job_id
        job = self.running.pop(job_id, None)
        if job is None:
            return
        if job_id in self.started:
            self.started.discard(job_id)
            self.confirmed.discard(job_id)
            started_at = self.starts.pop(job_id, None)  # None: its RUNNING went out already
        else:  # ended before its start was seen: the end reports both
            self.summary.started += 1
            started_at = self.wall_clock() if f.started_at is None else f.started_at
        self._free(job)
        self.runs_ended += 1
        # freed capacity (and maybe finished parents): ask for work again soon
        now = self.clock()
        self.next_claim = min(self.next_claim, now if self.more_to_claim else self.last_claim + FLUSH_SEC)
        self.last_busy = now
        if f.elapsed is not None:
            mean = self.mean_run[job.app] = updated_mean(self.mean_run.get(job.app), f.elapsed)
            self.runner.short_apps_changed(job.app, short_runs(mean))
        if f.job_id in self.killed:
            del self.killed[f.job_id]
            self.summary.killed += 1
            return
        timed_out = f.lost or (f.stopped and self.draining_since is not None)
        reason = f.reason if f.lost or not timed_out else f"stopped: {self.drain_reason}\n{f.reason}".rstrip()
        update = finished_update(job_id, f.return_code, reason, f.result, timed_out, self.wall_clock())
        update.started_at = started_at
        if update.state == JobState.RUN_DONE:
            self.summary.done += 1
        elif update.state == JobState.RUN_TIMEOUT:
            self.summary.timeouts += 1
        else:
            self.summary.errors += 1
        self._queue(update)

    def _free(self, job: Job) -> None:
        """Give back a finished run's placement, or pass it to the next job in its lane."""
        job_id = job.id
        lane = self.lane_of.pop(job_id, None)
        if lane is None:
            self.nodes.release(job_id)
            return
        if lane.placement.job_id != job_id:  # not its turn yet: it holds no placement
            with contextlib.suppress(ValueError):
                lane.queue.remove(job)
            return
        del self.lanes[job_id]
        if lane.queue:
            nxt = lane.queue.popleft()
            lane.placement = self.nodes.transfer(job_id, nxt.id)
            self.lanes[nxt.id] = lane
        else:
            self.nodes.release(job_id)

    def _hand_back(self, event: HandedBack) -> Job | None:
        """A job its runner never started: it waits in the backlog again."""
        job = self.running.pop(event.job_id, None)
        if job is None:
            return None
        lane = self.lane_of.pop(event.job_id, None)
        if lane is not None and lane.placement.job_id == event.job_id:
            del self.lanes[event.job_id]  # those queued behind it come back too
            self.nodes.release(event.job_id)
        elif lane is not None:
            lane.queue.remove(job)
        return job

    def _start_backlog(self, now: float) -> None:
        waiting: collections.deque[Job] = collections.deque()
        while self.backlog:
            job = self.backlog.popleft()
            placement = self.nodes.place(job)
            if placement is None:
                waiting.append(job)
                if self.mode == JobMode.SERIAL:
                    break  # serial jobs are alike: if one does not fit, none does
                continue
            self.last_busy = now
            self.running[job.id] = job
            failed = self.runner.start(job, placement)
            if failed is not None:
                self._ended(failed)
            elif self.runner.can_follow(job):
                lane = _Lane(placement, job.app, _shape(job))
                self.lanes[job.id] = lane
                self.lane_of[job.id] = lane
        waiting.extend(self.backlog)
        self.backlog = waiting
        if self.backlog and self.lanes:
            self._follow_backlog(now)

    def _follow_backlog(self, now: float) -> None:
        """Queue backlog jobs behind running ones of the same app and shape, as deep as the
        app's run time allows."""
        for lane in list(self.lanes.values()):
            room = followers(self.mean_run.get(lane.app)) - len(lane.queue)
            batch: list[Job] = []
            while self.backlog and len(batch) < room:
                job = self.backlog[0]
                if job.app != lane.app or _shape(job) != lane.shape or not self.runner.can_follow(job):
                    break
                batch.append(self.backlog.popleft())
            if not batch:
                continue
            if not self.runner.follow(lane.placement.job_id, batch, lane.placement):
                self.backlog.extendleft(reversed(batch))
                continue
            self.last_busy = now
            lane.queue.extend(batch)
            for job in batch:
                self.running[job.id] = job
                self.lane_of[job.id] = lane

    def _claim(self, now: float) -> None:
        if self.courier.pending("claim"):
            return
        remaining = None if self.deadline is None else (self.deadline - now) / 60
        since, ended = self.rate_mark
        if now - since >= RATE_WINDOW_SEC:
            self.run_rate = (self.runs_ended - ended) / (now - since)
            self.rate_mark = (now, self.runs_ended)
        limits = claim_limits(
            self.mode,
            self.nodes.free_capacity(),
            len(self.backlog),
            remaining,
            self.settings,
            self.filter_tags,
            self.run_rate,
        )
        self.last_claim = now
        if limits is None:
            self.next_claim = now + FLUSH_SEC
            if not self.backlog and not self.running:
                self.last_empty_claim = now  # nothing could be asked for: as good as empty
            return
        if self._unsent() and not self.running:
            self._flush()  # finished parents make their children claimable in this very claim
        limits.request_id = self.claim_request
        # while runs go on, the next jobs matter more than recording the last ones
        self.courier.send("claim", limits, lambda: self.source.claim(limits), urgent=bool(self.running))

    def _claimed(self, delivery: Delivery) -> None:
        now = self.clock()
        if delivery.error is not None:  # the source may be briefly unreachable; runs go on
            self._warn("claim", "claim failed (will retry with the same request): %s", delivery.error)
            self.next_claim = now + IDLE_CLAIM_SEC
            return
        limits, jobs = delivery.request, delivery.result
        self.claim_request = new_id()
        held = {j.id for j in self.backlog} | set(self.running)
        jobs = [j for j in jobs if j.id not in held]
        shapes = [_shape(j) for j in jobs]
        fits = {shape: self.nodes.can_ever_fit(shape) for shape in set(shapes)}
        unfit = [j.id for j, shape in zip(jobs, shapes, strict=True) if not fits[shape]]
        if unfit:
            log.warning("releasing %d job(s) that can never fit these nodes", len(unfit))
            self.courier.send("release", unfit, lambda: self.source.release(unfit))
        self.backlog.extend(j for j, shape in zip(jobs, shapes, strict=True) if fits[shape])
        self.more_to_claim = len(jobs) >= limits.max_jobs
        if not jobs:
            self.next_claim = now + IDLE_CLAIM_SEC
            self.last_empty_claim = now
        elif self.more_to_claim:
            self.next_claim = now  # there may be more: ask again as soon as the backlog runs low
        else:
            self.next_claim = now + FLUSH_SEC
        if jobs:
            self.last_busy = now
        if self.draining_since is None:
            self._start_backlog(now)

    def _queue(self, update: StateUpdate) -> None:
        self._gather()
        self.updates.append(update)

    def _gather(self) -> None:
        """Reports wait up to REPORT_DELAY_SEC for others: one call per run would cost a store
        transaction per run."""
        if not self._unsent():
            self.report_at = max(self.report_at, self.clock() + REPORT_DELAY_SEC)

    def _unsent(self) -> bool:
        return bool(self.updates or self.starts)

    def _unsent_full(self) -> bool:
        return len(self.updates) + len(self.starts) >= MAX_REPORT

    def _flush(self) -> None:
        if self.starts:
            self.updates[:0] = [StateUpdate(job_id=i, state=JobState.RUNNING, ts=ts) for i, ts in self.starts.items()]
            self.starts.clear()
        # bounded, so that a claim never waits long behind a report
        batch, self.updates = self.updates[:MAX_REPORT], self.updates[MAX_REPORT:]
        self.courier.send("report", batch, lambda: self.source.report(batch))

    def _reported(self, delivery: Delivery) -> None:
        batch = delivery.request
        if delivery.error is not None:  # keep them; they go out again soon
            self.updates = batch + self.updates
            self.report_at = self.clock() + FLUSH_SEC
            self._warn(
                "report", "state reports failed (kept, %d waiting to be resent): %s", len(self.updates), delivery.error
            )
            return
        for u in batch:
            if u.state == JobState.RUNNING and u.job_id in self.started:
                self.confirmed.add(u.job_id)
        for job_id, why in delivery.result.rejected.items():
            log.warning("report for job %s rejected: %s", job_id, why)
            self.summary.rejected[job_id] = why

    def _take_deliveries(self) -> None:
        for delivery in self.courier.collect():
            if isinstance(delivery.error, SessionGone):
                raise delivery.error
            if delivery.kind == "report":
                self._reported(delivery)
            elif delivery.kind == "claim":
                self._claimed(delivery)
            elif delivery.kind == "heartbeat":
                self._heartbeat_done(delivery)
            elif delivery.error is not None:
                log.warning("%s failed: %s", delivery.kind, delivery.error)

    def _warn(self, what: str, message: str, *args: object) -> None:
        """Log a failure of the job source at most every WARN_EVERY_SEC per kind: while the
        daemon restarts, reports are retried every step and would flood the log."""
        now = self.clock()
        if now - self._warned.get(what, -WARN_EVERY_SEC) >= WARN_EVERY_SEC:
            self._warned[what] = now
            log.warning(message, *args)

    def _heartbeat(self, now: float) -> None:
        self.next_heartbeat = now + self.settings.heartbeat_sec
        if self.courier.pending("heartbeat"):
            return
        if self._unsent():
            self._flush()
        # Only runs whose RUNNING the source has taken: it stops any it does not know as running.
        running = list(self.confirmed)
        self.courier.send("heartbeat", now, lambda: self.source.heartbeat(running))

    def _heartbeat_done(self, delivery: Delivery) -> None:
        sent = delivery.request
        now = self.clock()
        if delivery.error is not None:
            # Past the expiry our jobs are handed to other launchers: to never run a job
            # twice at once, stop ours before that happens.
            if now - self.last_heartbeat_ok > self.settings.session_expiry_sec - self.settings.heartbeat_sec:
                silent = now - self.last_heartbeat_ok
                raise SessionGone(f"no heartbeat delivered for {silent:.0f} s") from delivery.error
            self._warn("heartbeat", "heartbeat failed (will retry): %s", delivery.error)
            self.next_heartbeat = min(self.next_heartbeat, now + min(self.settings.heartbeat_sec, 5.0))
            return
        self.last_heartbeat_ok = sent
        stop = [job_id for job_id in delivery.result if job_id in self.running]
        if stop:
            log.info("stopping %d run(s) killed by their users", len(stop))
            self.runner.signal(stop, signal.SIGTERM)
            for job_id in stop:
                self.killed.setdefault(job_id, now + KILL_GRACE_SEC)

    def _enforce_kills(self, now: float) -> None:
        late = [j for j, at in self.killed.items() if at <= now and j in self.running]
        if late:
            self.runner.signal(late, signal.SIGKILL)

    def _shutdown(self) -> None:
        """Leave nothing behind: report everything, hand back unstarted jobs, end the session."""
        self.draining_since = self.draining_since or self.clock()  # claims arriving now start nothing
        if self.running:
            self.runner.signal(list(self.running), signal.SIGKILL)
            deadline = self.clock() + 10
            while self.running and self.clock() < deadline:
                self._collect(self.runner.wait(0.1))
        failures = 0
        while failures < 5:
            waiting = len(self.updates) + len(self.starts)
            if waiting:
                self._flush()
            self.courier.wait_idle(timeout=60)
            try:
                self._take_deliveries()
            except SessionGone:
                break
            if not self._unsent():
                break
            failures += len(self.updates) + len(self.starts) >= waiting  # none of them got through
        self.courier.close()
        try:
            if self.backlog:
                self.source.release([j.id for j in self.backlog])
            self.source.close()
        except Exception as exc:
            log.warning("could not close the session cleanly: %s", exc)
        self.runner.close()
        if not self.summary.exit_reason:
            self.summary.exit_reason = self.drain_reason or "done"
