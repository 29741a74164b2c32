"""One round: a fresh site and central database, a campaign, faults while it runs, then
convergence and the checks.

The round's clock starts when its daemon first serves.  One loop carries out its agenda in
time order: the faults, the restarts they call for, the waves of remote jobs, and keeping a
batch job on the MPI lane while MPI jobs wait (the elastic queue keeps the serial lane while
serial jobs wait).  While a fault aimed at a kind of launcher is still to fall, the runner
keeps a batch job of that kind too, as a user would ask for one: launchers end when idle, and
a fault must find a target.  One that finds none yet looks again until TARGET_GRACE_SEC past
the window.
"""

from __future__ import annotations

import heapq
import itertools
import shutil
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec

from benchmarks.bench_sync import PostgresServer
from benchmarks.chaos import converge
from benchmarks.chaos.campaign import Lane, Plan, PlanShape, plan
from benchmarks.chaos.central import USER, CentralDatabase
from benchmarks.chaos.checker import Check, Failure, Findings, check
from benchmarks.chaos.faults import Hit, Injector
from benchmarks.chaos.remote import NotYet, RemoteUser
from benchmarks.chaos.schedule import Fault, FaultKind, ScheduleShape, rng_for, schedule
from benchmarks.chaos.site import ChaosSite, Transport, find_mpiexec, settings_for

POLL_SEC = 0.5
LANE_SEC = 1.0
RETRY_SEC = 0.5
TARGET_POLL_SEC = 0.2  # a fault that finds nothing to kill looks again this often
TARGET_GRACE_SEC = 15.0  # ... until this long after the window (a batch job starts in a second or two)
LANE_OF = {FaultKind.SERIAL: Lane.SERIAL, FaultKind.MPI: Lane.MPI}
GIVE_UP_SEC = 60.0  # past the window, a wave or a restart that still fails fails the round


class RoundConfig(msgspec.Struct, frozen=True, kw_only=True):
    seed: int
    number: int
    jobs: int = 2000
    window: float = 30.0
    mean_gap: float = 2.5
    session_expiry: float = 5.0
    converge_timeout: float = 180.0
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    keep: bool = False  # keep the round's files and database even when it passes


class RoundResult(msgspec.Struct, kw_only=True):
    number: int
    seed: int
    jobs: int
    transport: Transport
    hits: list[Hit] = []
    findings: Findings = msgspec.field(default_factory=Findings)
    converge_sec: float | None = None  # from the last fault's restart to settled; None: never
    seconds: float = 0.0
    kept: str = ""  # where its files are, when kept
    error: str = ""  # the round itself broke (not a finding about balsamd)

    @property
    def ok(self) -> bool:
        return not self.error and not self.findings.failures

    def injected(self, kind: FaultKind) -> int:
        return sum(1 for h in self.hits if h.fault.kind == kind and h.target)

    def scheduled(self, kind: FaultKind) -> int:
        return sum(1 for h in self.hits if h.fault.kind == kind)


def transport_for(seed: int, number: int) -> Transport:
    return rng_for(seed, number, "transport").choice(tuple(Transport))


Action = Callable[[float], None]  # called with the round's time


class Agenda:
    """Actions in time order (seconds after the round's start).  Background actions (which
    schedule themselves again) do not keep the agenda going: it is done when only they are left."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, bool, Action]] = []
        self._order = itertools.count()
        self.left = 0  # foreground actions not yet done

    def at(self, when: float, action: Action, background: bool = False) -> None:
        heapq.heappush(self._heap, (when, next(self._order), background, action))
        self.left += not background

    def run_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, background, action = heapq.heappop(self._heap)
            self.left -= not background
            action(now)


class Round:
    def __init__(self, server: PostgresServer, parent: Path, cfg: RoundConfig) -> None:
        self.cfg = cfg
        self.server = server
        self.base = parent / f"round-{cfg.number:03d}"
        name = f"chaos{cfg.number}"
        self.central = CentralDatabase(server, f"chaos_{cfg.seed}_{cfg.number}", name)
        self.transport = transport_for(cfg.seed, cfg.number)
        self.site = ChaosSite(self.base, name, self.central.dsn(self.central.site_role), self.transport)
        self.plan: Plan = plan(cfg.seed, cfg.number, PlanShape(jobs=cfg.jobs, window=cfg.window,
                                                               long_nap=cfg.session_expiry + 2))  # fmt: skip
        self.faults = schedule(cfg.seed, cfg.number, ScheduleShape(window=cfg.window, mean_gap=cfg.mean_gap,
                                                                   kinds=cfg.kinds))  # fmt: skip
        self.ids: dict[str, str] = {}
        self.result = RoundResult(
            number=cfg.number, seed=cfg.seed, jobs=len(self.plan.jobs()), transport=self.transport
        )
        self.problems: list[str] = []  # what the round could not do (a wave never made, a restart that failed)
        self.aimed: Counter[Lane] = Counter()  # faults at each lane's launchers still to fall

    def run(self) -> RoundResult:
        began = time.monotonic()
        try:
            self._setup()
            quiet_at = self._campaign()
            self._settle(quiet_at)
        except Exception:
            self.result.error = traceback.format_exc()
        finally:
            self.result.seconds = round(time.monotonic() - began, 1)
            self._teardown()
        return self.result

    def _setup(self) -> None:
        self.base.mkdir(parents=True)
        self.server.start()
        self.central.create()
        self.site.init(settings_for(self.cfg.session_expiry, find_mpiexec()))
        self.ids.update(self.site.create(self.plan.site))
        self.site.start_daemon()

    def _campaign(self) -> float:
        """Carry out the agenda; returns when (round time) its last action was done."""
        start = time.monotonic()
        injector = Injector(self.site, self.server)
        remote = RemoteUser(self.central.dsn(USER), self.site.name)
        agenda = Agenda()

        def fault(f: Fault) -> Action:
            def fire(now: float) -> None:
                hit = injector.fire(f, now)
                if not hit.target and now + TARGET_POLL_SEC < self.cfg.window + TARGET_GRACE_SEC:
                    agenda.at(now + TARGET_POLL_SEC, fire)  # nothing of its kind alive yet
                    return
                self.result.hits.append(hit)
                if f.kind in LANE_OF:
                    self.aimed[LANE_OF[f.kind]] -= 1
                if hit.target and f.kind in (FaultKind.DAEMON, FaultKind.POSTGRES):
                    agenda.at(now + f.down_for, restart(f.kind, now))

            return fire

        def restart(kind: FaultKind, since: float) -> Action:
            def again(now: float) -> None:
                why = injector.restart(kind)
                if why:
                    if now - since > GIVE_UP_SEC:
                        raise RuntimeError(f"{kind} did not start again for {now - since:.0f} s: {why}")
                    agenda.at(now + RETRY_SEC, again)

            return again

        def wave(number: int) -> Action:
            def create(now: float) -> None:
                w = self.plan.waves[number]
                try:
                    self.ids.update(remote.create(number, w))
                    if any(k not in self.ids for k in w.kills):  # the wave before is still to come
                        raise NotYet(f"the jobs it kills ({', '.join(w.kills)}) are not created yet")
                    remote.kill([self.ids[k] for k in w.kills])
                except NotYet as exc:
                    if now > self.cfg.window + GIVE_UP_SEC:
                        self.problems.append(f"wave {number} was never created: {exc}")
                    else:
                        agenda.at(now + RETRY_SEC, create)

            return create

        def lane(now: float) -> None:
            self._keep_lanes()
            agenda.at(now + LANE_SEC, lane, background=True)

        for f in self.faults:
            agenda.at(f.at, fault(f))
            if f.kind in LANE_OF:
                self.aimed[LANE_OF[f.kind]] += 1
        for number, w in enumerate(self.plan.waves):
            agenda.at(w.at, wave(number))
        agenda.at(0.0, lane, background=True)
        while agenda.left:
            agenda.run_due(time.monotonic() - start)
            time.sleep(0.02)
        return time.monotonic()

    def _keep_lanes(self) -> None:
        for lane in Lane:
            wanted = self.aimed[lane] > 0 or (lane == Lane.MPI and self.site.unfinished(Lane.MPI))
            if wanted and not self.site.batch_jobs_active(lane):
                self.site.submit_batch_job(lane)

    def _settle(self, quiet_at: float) -> None:
        deadline = quiet_at + self.cfg.converge_timeout
        expected = len(self.plan.jobs())
        last = converge.Progress()
        while time.monotonic() < deadline:
            self._keep_lanes()
            last = converge.progress(self.site, self.central)
            if last.settled(expected):
                self.result.converge_sec = round(time.monotonic() - quiet_at, 1)
                break
            time.sleep(POLL_SEC)
        findings: Findings = check(self.plan.jobs(), converge.observe(self.site, self.central, self.ids))
        if self.result.converge_sec is None:
            diagnosis = converge.diagnose(self.site, last)
            detail = f"not settled {self.cfg.converge_timeout:g} s after the faults:\n{diagnosis}"
            findings.failures.insert(0, Failure(check=Check.NOT_CONVERGED, job="-", detail=detail))
        for problem in self.problems:
            findings.failures.append(Failure(check=Check.LOST, job="-", detail=problem))
        self.result.findings = findings

    def _teardown(self) -> None:
        try:
            self.site.stop()
        finally:
            if self.result.ok and not self.cfg.keep:
                self.central.drop()
                shutil.rmtree(self.base, ignore_errors=True)
            else:
                self.result.kept = f"{self.base} (database {self.central.name})"
