"""The pilot inside a batch job: claim jobs that fit, run them, report, stop in time.

The loop is a sequence of small steps over injected collaborators (job source, node manager,
runner, clock), so each behaviour can be exercised on its own.  State reports are batched:
one round trip carries every RUNNING / RUN_DONE / RUN_ERROR since the last one.
"""

from __future__ import annotations

import collections
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from balsamd.config import LauncherSettings
from balsamd.ids import new_id
from balsamd.launch.policy import claim_limits, finished_update
from balsamd.launch.resources import NodeManager
from balsamd.launch.runner import Finished, Runner
from balsamd.launch.source import JobSource
from balsamd.models import Job, JobMode, StateUpdate
from balsamd.states import JobState
from balsamd.store.store import SessionGone

log = logging.getLogger("balsamd.launcher")

FLUSH_SEC = 0.05  # most a state report waits before it is sent
IDLE_CLAIM_SEC = 1.0  # how often an idle launcher asks for work
MAX_WAIT_SEC = 0.5
KILL_GRACE_SEC = 10.0  # between SIGTERM and SIGKILL for a job killed by its user
WARN_EVERY_SEC = 10.0  # most frequent warning per kind of job-source failure


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
        self.running: dict[str, Job] = {}
        self.updates: list[StateUpdate] = []
        self.oldest_update = 0.0
        self.next_claim = self.start
        self.claim_request = new_id()
        self.last_claim = self.start
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
        now = self.clock()
        self._enforce_kills(now)
        if self.draining_since is None:
            self._start_backlog(now)
            if now >= self.next_claim:
                self._claim(now)
                self._start_backlog(now)
        elif now >= self.draining_since + self.settings.timeout_grace_sec:
            self.runner.signal(list(self.running), signal.SIGKILL)
        if self.updates and (now - self.oldest_update >= FLUSH_SEC or len(self.updates) >= 1000):
            self._flush()
        if now >= self.next_heartbeat:
            self._heartbeat(now)

    def _wait_time(self, now: float) -> float:
        if self.backlog and self.draining_since is None and self._could_place():
            return 0.0
        wake = [self.next_heartbeat, now + MAX_WAIT_SEC]
        if self.updates:
            wake.append(self.oldest_update + FLUSH_SEC)
        if self.draining_since is None:
            wake.append(self.next_claim)
        return max(0.0, min(wake) - now)

    def _could_place(self) -> bool:
        free = self.nodes.free_capacity()
        return free.aggregate_free > 1e-9

    def _finished(self) -> bool:
        if self.draining_since is not None:
            return not self.running
        if not self.nodes.nodes and not self.running:
            self.summary.exit_reason = "every node was lost"
            return True
        if self.running or self.backlog or self.last_empty_claim < self.last_busy:
            return False  # not idle until a claim made since the last run came back empty
        if self.clock() - self.last_busy >= self.idle_ttl:
            self.summary.exit_reason = f"idle for {self.idle_ttl:g} s"
            return True
        return False

    # ----- steps ----------------------------------------------------------------------

    def _collect(self, finished: list[Finished]) -> None:
        ts = self.wall_clock()
        for host in getattr(self.runner, "lost_hosts", ()):
            self.nodes.disable(host)
        if finished:
            # freed capacity (and maybe finished parents): ask for work again soon
            self.next_claim = min(self.next_claim, self.last_claim + FLUSH_SEC)
        for f in finished:
            self.running.pop(f.job_id, None)
            self.nodes.release(f.job_id)
            self.last_busy = self.clock()
            if f.job_id in self.killed:
                del self.killed[f.job_id]
                self.summary.killed += 1
                continue
            timed_out = f.lost or (f.stopped and self.draining_since is not None)
            reason = f.reason if f.lost or not timed_out else f"stopped: {self.drain_reason}\n{f.reason}".rstrip()
            update = finished_update(f.job_id, f.return_code, reason, f.result, timed_out, ts)
            if update.state == JobState.RUN_DONE:
                self.summary.done += 1
            elif update.state == JobState.RUN_TIMEOUT:
                self.summary.timeouts += 1
            else:
                self.summary.errors += 1
            self._queue(update)

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
            self._queue(StateUpdate(job_id=job.id, state=JobState.RUNNING, ts=self.wall_clock()))
            failed = self.runner.start(job, placement)
            self.summary.started += 1
            self.last_busy = now
            if failed is None:
                self.running[job.id] = job
            else:
                self.nodes.release(job.id)
                self._collect_failed(failed)
        waiting.extend(self.backlog)
        self.backlog = waiting

    def _collect_failed(self, failed: Finished) -> None:
        self.summary.errors += 1
        self._queue(finished_update(failed.job_id, None, failed.reason, None, False, self.wall_clock()))

    def _claim(self, now: float) -> None:
        remaining = None if self.deadline is None else (self.deadline - now) / 60
        limits = claim_limits(
            self.mode,
            self.nodes.free_capacity(),
            len(self.backlog),
            remaining,
            self.settings,
            self.filter_tags,
        )
        self.last_claim = now
        if limits is None:
            self.next_claim = now + FLUSH_SEC
            if not self.backlog and not self.running:
                self.last_empty_claim = now  # nothing could be asked for: as good as empty
            return
        if self.updates:
            self._flush()  # finished parents make their children claimable in the same round
        limits.request_id = self.claim_request
        try:
            jobs = self.source.claim(limits)
        except SessionGone:
            raise
        except Exception as exc:  # the source may be briefly unreachable; runs go on
            self._warn("claim", "claim failed (will retry with the same request): %s", exc)
            self.next_claim = now + IDLE_CLAIM_SEC
            return
        self.claim_request = new_id()
        held = {j.id for j in self.backlog} | set(self.running)
        jobs = [j for j in jobs if j.id not in held]
        fits = {shape: self.nodes.can_ever_fit(shape) for shape in {_shape(j) for j in jobs}}
        unfit = [j for j in jobs if not fits[_shape(j)]]
        if unfit:
            log.warning("releasing %d job(s) that can never fit these nodes", len(unfit))
            self.source.release([j.id for j in unfit])
        self.backlog.extend(j for j in jobs if fits[_shape(j)])
        self.next_claim = now + (FLUSH_SEC if jobs else IDLE_CLAIM_SEC)
        if jobs:
            self.last_busy = now
        else:
            self.last_empty_claim = now

    def _queue(self, update: StateUpdate) -> None:
        if not self.updates:
            self.oldest_update = self.clock()
        self.updates.append(update)

    def _flush(self) -> None:
        batch, self.updates = self.updates, []
        try:
            outcome = self.source.report(batch)
        except SessionGone:
            raise
        except Exception as exc:  # keep them; they go out with the next flush
            self._warn("report", "state reports failed (kept, %d waiting to be resent): %s", len(self.updates), exc)
            self.updates = batch + self.updates
            self.oldest_update = self.clock()
            return
        for job_id, why in outcome.rejected.items():
            log.warning("report for job %s rejected: %s", job_id, why)
            self.summary.rejected[job_id] = why

    def _warn(self, what: str, message: str, *args: object) -> None:
        """Log a failure of the job source at most every WARN_EVERY_SEC per kind: while the
        daemon restarts, reports are retried every step and would flood the log."""
        now = self.clock()
        if now - self._warned.get(what, -WARN_EVERY_SEC) >= WARN_EVERY_SEC:
            self._warned[what] = now
            log.warning(message, *args)

    def _heartbeat(self, now: float) -> None:
        self.next_heartbeat = now + self.settings.heartbeat_sec
        if self.updates:
            # the daemon must know a run started before it is asked which runs to stop
            self._flush()
            if self.updates:
                return
        try:
            stop = self.source.heartbeat(list(self.running))
        except SessionGone:
            raise
        except Exception as exc:
            # Past the expiry our jobs are handed to other launchers: to never run a job
            # twice at once, stop ours before that happens.
            if now - self.last_heartbeat_ok > self.settings.session_expiry_sec - self.settings.heartbeat_sec:
                raise SessionGone(f"no heartbeat delivered for {now - self.last_heartbeat_ok:.0f} s") from exc
            self._warn("heartbeat", "heartbeat failed (will retry): %s", exc)
            self.next_heartbeat = now + min(self.settings.heartbeat_sec, 5.0)
            return
        self.last_heartbeat_ok = now
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
        if self.running:
            self.runner.signal(list(self.running), signal.SIGKILL)
            self.draining_since = self.draining_since or self.clock()
            deadline = self.clock() + 10
            while self.running and self.clock() < deadline:
                self._collect(self.runner.wait(0.1))
        for _ in range(5):
            if not self.updates:
                break
            try:
                self._flush()
            except SessionGone:
                break
        try:
            if self.backlog:
                self.source.release([j.id for j in self.backlog])
            self.source.close()
        except Exception as exc:
            log.warning("could not close the session cleanly: %s", exc)
        self.runner.close()
        if not self.summary.exit_reason:
            self.summary.exit_reason = self.drain_reason or "done"


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
