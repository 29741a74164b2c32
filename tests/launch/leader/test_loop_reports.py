"""When a launcher's state reports go out: batched while runs go on, at once when none do."""

from __future__ import annotations

import threading
import time

from balsamd.config import LauncherSettings
from balsamd.launch.leader.loop import Launcher
from balsamd.launch.leader.resources import NodeManager
from balsamd.launch.running.protocol import Finished, Placement, RunEvent, RunStarted
from balsamd.models import ClaimLimits, Job, JobMode, StateUpdate
from balsamd.states import JobState
from balsamd.store.store import UpdateOutcome


class OneBatchSource:
    """Hands out ``jobs`` once; records each report with the launcher's clock when it came."""

    session_id = "S"

    def __init__(self, jobs: list[Job], clock) -> None:
        self.jobs, self.clock = jobs, clock
        self.reports: list[tuple[float, list[StateUpdate]]] = []

    def claim(self, limits: ClaimLimits) -> list[Job]:
        jobs, self.jobs = self.jobs, []
        return jobs

    def report(self, updates: list[StateUpdate]) -> UpdateOutcome:
        self.reports.append((self.clock(), updates))
        return UpdateOutcome(applied=[u.job_id for u in updates])

    def heartbeat(self, running: list[str]) -> list[str]:
        return []

    def release(self, job_ids: list[str]) -> None:
        pass

    def close(self) -> None:
        pass


class InstantRunner:
    """Every run it starts has started and ended by the next wait."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []

    def start(self, job: Job, placement: Placement) -> None:
        self.events += [RunStarted(job.id, 1.0), Finished(job.id, 0, "", elapsed=0.001)]

    def wait(self, timeout: float) -> list[RunEvent]:
        events, self.events = self.events, []
        return events

    def can_follow(self, job: Job) -> bool:
        return False

    def short_apps_changed(self, app: str, short: bool) -> None:
        pass

    def signal(self, job_ids: list[str], sig: int) -> None:
        pass

    def close(self) -> None:
        pass


def test_when_nothing_runs_any_more_the_last_reports_go_out_without_waiting_for_others() -> None:
    frozen = 100.0  # the report delay never passes: only "nothing runs" can send the report
    source = OneBatchSource([Job(id="j1", app="a", workdir="w")], lambda: frozen)
    launcher = Launcher(
        source, NodeManager(["h"], 4, 0), InstantRunner(), LauncherSettings(), JobMode.SERIAL,  # type: ignore[arg-type]
        clock=lambda: frozen, wall_clock=lambda: 5.0,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not source.reports:
            assert time.monotonic() < deadline, "the last report never went out"
            launcher.step()
            launcher.courier.wait_idle(timeout=1)
    finally:
        launcher.courier.close()
    [(_, [update])] = source.reports
    assert (update.job_id, update.state, update.started_at) == ("j1", JobState.RUN_DONE, 1.0)


class HeldClaimSource(OneBatchSource):
    """Its claims come back only when the test lets them."""

    def __init__(self, jobs: list[Job], clock) -> None:
        super().__init__(jobs, clock)
        self.answer = threading.Event()

    def claim(self, limits: ClaimLimits) -> list[Job]:
        self.answer.wait(20)
        return super().claim(limits)


def test_reports_wait_for_a_claim_on_its_way_without_the_loop_spinning() -> None:
    now = [100.0]
    source = HeldClaimSource([], lambda: now[0])
    launcher = Launcher(
        source, NodeManager(["h"], 4, 0), InstantRunner(), LauncherSettings(), JobMode.SERIAL,  # type: ignore[arg-type]
        clock=lambda: now[0], wall_clock=lambda: 5.0,
    )  # fmt: skip
    try:
        launcher.running["j1"] = Job(id="j1", app="a", workdir="w")  # a run goes on
        launcher._queue(StateUpdate(job_id="j0", state=JobState.RUN_DONE, ts=1.0))
        launcher._claim(now[0])
        now[0] += 1.0  # the report is long due
        assert launcher.courier.pending("claim")
        assert launcher._report_due(now[0]) is None  # the claim goes first
        assert launcher._wait_time(now[0]) > 0  # and the loop sleeps until it comes back
        launcher.step()
        assert not source.reports
        source.answer.set()
        launcher.courier.wait_idle(timeout=20)
        launcher.step()
        launcher.courier.wait_idle(timeout=20)
        assert [u.job_id for _, batch in source.reports for u in batch] == ["j0"]
    finally:
        source.answer.set()
        launcher.courier.close()
