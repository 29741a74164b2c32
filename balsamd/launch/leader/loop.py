"""The pilot inside a batch job: claim jobs that fit, run them, report, stop in time.

The loop is a sequence of small steps over injected collaborators (job source, node manager,
runner, clock) and small parts, each keeping one kind of state and making its decisions:
``claims`` (when to ask for work, with which request), ``reports`` (which state reports go
out when), ``heartbeat`` (renewing the session, or giving it up), ``lanes`` (short Python runs
queued behind a placement), ``pace`` (how fast runs go), ``space`` (no starts while the
disk holding runs' files is full) and ``stopping`` (the drain, users' kills, idleness).  The
loop itself holds only the jobs: those claimed and waiting (the backlog) and those handed to
the runner.

A full disk stops nothing for good: reports the store cannot take are kept until it can,
runs wait to start until their files find space, and each is said once, then once a minute
(``diskspace.FullWatch``), then when it is over.

Calls on the job source go through a courier thread, so the loop never waits for the store:
state reports are batched, and a claim's jobs are taken in when they arrive.
"""

from __future__ import annotations

import collections
import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

from balsamd.config import LauncherSettings
from balsamd.diskspace import FullWatch, Say
from balsamd.launch.leader.claims import Claims
from balsamd.launch.leader.courier import Call, Courier, Delivery
from balsamd.launch.leader.failures import Failures
from balsamd.launch.leader.heartbeat import Heartbeat
from balsamd.launch.leader.lanes import Lanes
from balsamd.launch.leader.pace import Pace
from balsamd.launch.leader.policy import finished_update
from balsamd.launch.leader.reports import Reports
from balsamd.launch.leader.resources import EPS, NodeManager, shape_of
from balsamd.launch.leader.source import JobSource
from balsamd.launch.leader.space import StartHold, starts_line, store_line
from balsamd.launch.leader.stopping import Drain, Idle, Kills
from balsamd.launch.leader.summary import Exit, ExitReason, Summary
from balsamd.launch.running.protocol import Finished, HandedBack, NoSpace, RunEvent, Runner, RunStarted
from balsamd.models import Job, JobMode
from balsamd.store.errors import DiskFull, SessionGone

log = logging.getLogger("balsamd.launcher")

MAX_WAIT_SEC = 0.5  # longest a step waits for its runner when nothing else is due


class Launcher:
    """One launcher's loop: ``run()`` until it stops, or ``step()`` at a time; nothing starts
    before either is called."""

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
        claim_apps: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.nodes, self.runner, self.settings = source, nodes, runner, settings
        self.mode = job_mode
        self.clock, self.wall_clock = clock, wall_clock
        now = self.start = clock()
        self.deadline = None if wall_time_min is None else now + wall_time_min * 60
        self.courier = Courier()
        self.claims = Claims(job_mode, settings, filter_tags or {}, now, claim_apps)
        self.reports = Reports()
        self.heartbeat = Heartbeat(settings.heartbeat_sec, settings.session_expiry_sec, now)
        self.lanes = Lanes(nodes)
        self.pace = Pace(now)
        self.drain = Drain(settings.timeout_grace_sec)
        self.kills = Kills()
        self.idle = Idle(settings.idle_ttl_sec if idle_ttl is None else idle_ttl, now)
        self.failures = Failures(log)
        self.store_space = FullWatch()  # the store's disk: reports kept while it is full
        self.starts = StartHold()  # the data directory's disk: no starts while it is full
        self.backlog: collections.deque[Job] = collections.deque()  # claimed, not handed to the runner
        self.running: dict[str, Job] = {}  # handed to the runner: started, or queued on a worker
        self.summary = Summary()

    # ----- the loop -------------------------------------------------------------------

    def run(self) -> Summary:
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in previous:
            signal.signal(s, self._on_signal)
        self.runner.watch(self.courier.fileno())
        try:
            while (why := self._stop_reason()) is None:
                self.step()
        except SessionGone as exc:
            log.error("%s; stopping every run now", exc)
            why = Exit(ExitReason.SESSION_LOST, f"session lost: {exc}")
            self.drain.begin(why, self.clock())
            self.runner.signal(list(self.running), signal.SIGKILL)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._shutdown()
        self.summary.exit = why
        self.summary.elapsed = self.clock() - self.start
        return self.summary

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.begin_drain(Exit(ExitReason.SIGNAL, f"received {signal.Signals(signum).name}"))

    def begin_drain(self, why: Exit) -> None:
        """Stop claiming and end every run (SIGTERM, grace period, SIGKILL) as RUN_TIMEOUT."""
        if self.drain.begin(why, self.clock()):
            log.info("draining: %s", why)
            self.runner.signal(list(self.running), signal.SIGTERM)

    def step(self) -> None:
        now = self.clock()
        if self.deadline is not None and now >= self.deadline - self.settings.timeout_grace_sec:
            self.begin_drain(Exit(ExitReason.WALL_TIME, "wall time is ending"))
        events = self.runner.wait(self.wait_time(now))
        now = self.clock()
        self._collect(events, now)
        self._take_deliveries(now)
        now = self.clock()
        late = self.kills.late(now, self.running)
        if late:
            self.runner.signal(late, signal.SIGKILL)
        if not self.drain.draining:
            self._start_backlog(now)
            if self.claims.due(now):
                self._claim(now)
        elif self.drain.kill_due(now):
            self.runner.signal(list(self.running), signal.SIGKILL)
        due = self._reports_due(now)
        if due is not None and now >= due:
            self._send_reports()
        if self.heartbeat.due(now):
            self._heartbeat(now)

    def wait_time(self, now: float) -> float:
        """How long the next step may wait for its runner: not at all while jobs wait that
        could start, else until the next thing due (a heartbeat, reports, a claim), at most
        MAX_WAIT_SEC.  The runner returns sooner for its runs' events and the courier's
        deliveries."""
        startable = self.backlog and not self.drain.draining
        if startable and self.starts.holding(now):
            startable = False
            wake = [self.starts.retry_at]
        else:
            wake = []
        if startable and self.nodes.free_capacity().aggregate_free > EPS:
            return 0.0
        wake += [self.heartbeat.next_at, now + MAX_WAIT_SEC]
        due = self._reports_due(now)
        if due is not None:
            wake.append(due)
        if not self.drain.draining and not self.claims.out:
            wake.append(self.claims.next_at)
        return max(0.0, min(wake) - now)

    def _reports_due(self, now: float) -> float | None:
        return self.reports.due(now, running=bool(self.running), claim_out=self.claims.out)

    def _stop_reason(self) -> Exit | None:
        """Why the loop ends now, or None while it goes on."""
        if self.drain.draining:
            return None if self.running else self.drain.why
        if not self.nodes.nodes and not self.running:
            return Exit(ExitReason.NODES_LOST, "every node was lost")
        if self.running or self.backlog or self.claims.out or not self.claims.empty_since(self.idle.last_busy):
            return None  # not idle until a claim made since the last run came back empty
        if self.reports.unsent or self.reports.out:
            return None  # nor while finished runs wait to be recorded (the store may be full)
        return self.idle.over(self.clock())

    # ----- runs -----------------------------------------------------------------------

    def _collect(self, events: list[RunEvent], now: float) -> None:
        handed_back: list[Job] = []
        ended = False
        for event in events:
            if isinstance(event, Finished):
                ended = self._ended(event, now) or ended
            elif isinstance(event, RunStarted):
                if event.job_id in self.running and self.reports.started(event.job_id, event.ts, now):
                    self.summary.started += 1
            elif isinstance(event, HandedBack):  # a job its runner never started: it waits again
                job = self.running.pop(event.job_id, None)
                if job is not None:
                    self.lanes.hand_back(job)
                    handed_back.append(job)
            elif isinstance(event, NoSpace):  # the same, for lack of space: starts wait for space
                for job_id in event.job_ids:
                    job = self.running.pop(job_id, None)
                    if job is not None:
                        self.lanes.hand_back(job)
                        handed_back.append(job)
                self._no_space(event, now)
            else:
                self.nodes.disable(event.host)
        if ended:
            self._runs_ended(now)
        self.backlog.extendleft(reversed(handed_back))

    def _ended(self, f: Finished, now: float) -> bool:
        """Account for a run's end and queue its report; False for a job it no longer runs."""
        job_id = f.job_id
        job = self.running.pop(job_id, None)
        if job is None:
            return False
        seen, started_at = self.reports.ended(job_id)
        if not seen:  # ended before its start was seen: the end reports both
            self.summary.started += 1
            started_at = self.wall_clock() if f.started_at is None else f.started_at
        self.lanes.free(job)
        short = self.pace.run_ended(job.app, f.elapsed)
        if short is not None:
            self.runner.short_apps_changed(job.app, short)
        if self.kills.ended(job_id):
            self.summary.killed += 1
            return True
        timed_out = f.lost or (f.stopped and self.drain.draining)
        reason = f.reason if f.lost or not timed_out else self.drain.stopped(f.reason)
        update = finished_update(job_id, f.return_code, reason, f.result, timed_out, self.wall_clock())
        update.started_at = started_at
        self.summary.count(update.state)
        self.reports.add(update, now)
        return True

    def _runs_ended(self, now: float) -> None:
        """Capacity (and maybe finished parents) was freed: ask for work again soon."""
        self.claims.runs_ended(now)
        self.idle.busy(now)

    def _start_backlog(self, now: float) -> None:
        if self.starts.holding(now):
            return
        waiting: collections.deque[Job] = collections.deque()
        started = no_space = False
        while self.backlog:
            job = self.backlog.popleft()
            placement = self.nodes.place(job)
            if placement is None:
                waiting.append(job)
                if self.mode == JobMode.SERIAL:
                    break  # serial jobs are alike: if one does not fit, none does
                continue
            self.running[job.id] = job
            failed = self.runner.start(job, placement)
            if isinstance(failed, NoSpace):  # not started: it waits, and so do the others
                del self.running[job.id]
                self.nodes.release(job.id)
                self.backlog.appendleft(job)
                self._no_space(failed, now)
                no_space = True
                break
            started = True
            if failed is not None:
                if self._ended(failed, now):
                    self._runs_ended(now)
            elif self.runner.can_follow(job):
                self.lanes.open(job, placement)
        if started:
            self.idle.busy(now)
            if self.starts.full and not no_space:
                self._say_starts(self.starts.started(now), "")
        waiting.extend(self.backlog)
        self.backlog = waiting
        if self.backlog and self.lanes and not no_space:
            followed = self.lanes.fill(self.backlog, self.runner, self.pace.followers)
            if followed:
                self.idle.busy(now)
                for job in followed:
                    self.running[job.id] = job

    # ----- calls on the job source ----------------------------------------------------

    def _claim(self, now: float) -> None:
        if self.claims.out:
            return
        remaining = None if self.deadline is None else (self.deadline - now) / 60
        free = self.nodes.free_capacity()
        idle = not self.backlog and not self.running
        limits = self.claims.ask(now, free, len(self.backlog), remaining, self.pace.rate(now), idle)
        if limits is None:
            return
        if self.reports.unsent and not self.running:
            self._send_reports()  # finished parents make their children claimable in this very claim
        # while runs go on, the next jobs matter more than recording the last ones
        self.courier.send(Call.CLAIM, limits, lambda: self.source.claim(limits), urgent=bool(self.running))

    def _claimed(self, delivery: Delivery, now: float) -> None:
        if delivery.error is not None:  # the source may be briefly unreachable; runs go on
            full = isinstance(delivery.error, DiskFull)
            if not full:
                self.failures.warn("claim", now, "claim failed (will retry with the same request): %s", delivery.error)
            self.claims.failed(now, store_full=full)
            return
        limits, jobs = delivery.request, delivery.result
        held = {j.id for j in self.backlog} | set(self.running)
        jobs = [j for j in jobs if j.id not in held]
        shapes = [shape_of(j) for j in jobs]
        fits = {shape: self.nodes.can_ever_fit(shape) for shape in set(shapes)}
        unfit = [j.id for j, shape in zip(jobs, shapes, strict=True) if not fits[shape]]
        if unfit:
            log.warning("releasing %d job(s) that can never fit these nodes", len(unfit))
            self.courier.send(Call.RELEASE, unfit, lambda: self.source.release(unfit))
        self.backlog.extend(j for j, shape in zip(jobs, shapes, strict=True) if fits[shape])
        self.claims.answered(limits, len(jobs), now)
        if jobs:
            self.idle.busy(now)
            self._store_written(now)  # binding them was a write
        if not self.drain.draining:
            self._start_backlog(now)

    def _send_reports(self) -> None:
        batch = self.reports.batch()
        self.courier.send(Call.REPORT, batch, lambda: self.source.report(batch))

    def _reported(self, delivery: Delivery, now: float) -> None:
        batch = delivery.request
        if delivery.error is not None:  # kept: they go out again soon
            self.reports.failed(batch, now)
            if not isinstance(delivery.error, DiskFull):
                self.failures.warn(
                    "report", now, "state reports failed (kept, %d waiting to be resent): %s",
                    self.reports.unsent, delivery.error,
                )  # fmt: skip
            return
        self.reports.delivered(batch)
        if delivery.result.applied:
            self._store_written(now)
        for job_id, why in delivery.result.rejected.items():
            log.warning("report for job %s rejected: %s", job_id, why)
            self.summary.rejected[job_id] = why

    def _heartbeat(self, now: float) -> None:
        if not self.heartbeat.begin(now):
            return
        if self.reports.unsent:
            self._send_reports()
        # Only runs whose RUNNING the source has taken: it stops any it does not know as running.
        running = self.reports.confirmed()
        waiting = [j.id for j in self.backlog]
        self.courier.send(Call.HEARTBEAT, now, lambda: self.source.heartbeat(running, waiting))

    def _heartbeat_done(self, delivery: Delivery, now: float) -> None:
        if delivery.error is not None:
            # raises SessionGone before the session could expire and our jobs go to others
            self.heartbeat.failed(now, delivery.error, delivery.request)
            if not isinstance(delivery.error, DiskFull):
                self.failures.warn("heartbeat", now, "heartbeat failed (will retry): %s", delivery.error)
            return
        self.heartbeat.answered(delivery.request)
        self._store_written(now)
        gone = set(delivery.result)
        stop = [job_id for job_id in delivery.result if job_id in self.running]
        if stop:
            log.info("stopping %d run(s) killed by their users", len(stop))
            self.runner.signal(stop, signal.SIGTERM)
            self.kills.stop(stop, now)
        dropped = [j for j in self.backlog if j.id in gone]
        if dropped:  # killed (or taken back) since they were claimed: never started
            log.info("dropping %d claimed job(s) no longer this launcher's", len(dropped))
            self.backlog = collections.deque(j for j in self.backlog if j.id not in gone)

    def _take_deliveries(self, now: float) -> None:
        for delivery in self.courier.collect():
            if isinstance(delivery.error, SessionGone):
                raise delivery.error
            if delivery.kind is Call.REPORT:
                self._reported(delivery, now)
            elif delivery.kind is Call.CLAIM:
                self._claimed(delivery, now)
            elif delivery.kind is Call.HEARTBEAT:
                self._heartbeat_done(delivery, now)
            elif delivery.error is not None and not isinstance(delivery.error, DiskFull):
                log.warning("%s failed: %s", delivery.kind.value, delivery.error)
            if isinstance(delivery.error, DiskFull):  # said once what it has kept
                self._say_store(self.store_space.failed(now), delivery.error)

    # ----- full disks -----------------------------------------------------------------

    def _store_written(self, now: float) -> None:
        if self.store_space.full:
            self._say_store(self.store_space.succeeded(now), None)

    def _say_store(self, say: Say | None, error: DiskFull | None) -> None:
        if say is not None:
            log.log(*store_line(say, self.clock(), error, self.reports.unsent))

    def _no_space(self, event: NoSpace, now: float) -> None:
        """Runs found no space for their files: they wait, and so do all starts for a while."""
        self._say_starts(self.starts.no_space(now), event.reason)

    def _say_starts(self, say: Say | None, reason: str) -> None:
        if say is not None:
            log.log(*starts_line(say, self.clock(), reason, len(self.backlog)))

    # ----- the end --------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Leave nothing behind: report everything, hand back unstarted jobs, end the session."""
        # claims arriving now start nothing, and runs still going are stopped
        self.drain.begin(Exit(ExitReason.DONE, "the launcher is stopping"), self.clock())
        if self.running:
            self.runner.signal(list(self.running), signal.SIGKILL)
            deadline = self.clock() + 10
            while self.running and self.clock() < deadline:
                self._collect(self.runner.wait(0.1), self.clock())
        failures = 0
        while failures < 5:
            waiting = self.reports.unsent
            if waiting:
                self._send_reports()
            self.courier.wait_idle(timeout=60)
            try:
                self._take_deliveries(self.clock())
            except SessionGone:
                break
            if not self.reports.unsent:
                break
            failures += self.reports.unsent >= waiting  # none of them got through
        if self.reports.unsent:
            log.error(
                "%d state report(s) could not be recorded; their jobs run again once this session expires",
                self.reports.unsent,
            )
        self.courier.close()
        try:
            if self.backlog:
                self.source.release([j.id for j in self.backlog])
            self.source.close()
        except Exception as exc:
            log.warning("could not close the session cleanly: %s", exc)
        self.runner.close()
