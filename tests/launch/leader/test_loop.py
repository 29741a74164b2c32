"""The launcher's loop over a fake source and runner: when its reports go out, and why it stops."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from balsamd.config import LauncherSettings
from balsamd.launch.leader.loop import Launcher
from balsamd.launch.leader.resources import NodeManager
from balsamd.launch.leader.summary import Exit, ExitReason
from balsamd.launch.running.protocol import HostLost
from balsamd.models import JobMode, StateUpdate, UpdateOutcome
from balsamd.states import JobState
from balsamd.store.errors import DiskFull, SessionGone

from .fakes import Runner, Source, job, until


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def launcher(source: Source, runner: Runner, clock: Clock | None = None, **settings: float) -> Launcher:
    return Launcher(
        source, NodeManager(["h"], 4, 0), runner, LauncherSettings(**settings), JobMode.SERIAL,  # type: ignore[arg-type]
        **({"clock": clock, "wall_clock": lambda: 5.0} if clock else {}),  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def stepped() -> Iterator[Callable[..., Launcher]]:
    """A launcher a test steps by hand (its courier's deliveries end a wait, as in run()); its
    courier thread is ended afterwards."""
    made: list[Launcher] = []

    def make(source: Source, runner: Runner, clock: Clock) -> Launcher:
        made.append(launcher(source, runner, clock))
        runner.watch(made[-1].courier.fileno())
        return made[-1]

    yield make
    for each in made:
        each.courier.close()


# ----- reports ------------------------------------------------------------------------------


def test_when_nothing_runs_any_more_the_last_reports_go_out_without_waiting_for_others(
    clock: Clock, stepped: Callable[..., Launcher]
) -> None:
    # the clock never moves: the report delay never passes, only "nothing runs" can send it
    source = Source([job("j1")])
    loop = stepped(source, Runner(), clock)
    until(source.reported.is_set, loop.step, "the last report")
    [[update]] = source.reports
    assert (update.job_id, update.state, update.started_at) == ("j1", JobState.RUN_DONE, 1.0)


def test_reports_wait_for_a_claim_on_its_way_without_the_loop_spinning(
    clock: Clock, stepped: Callable[..., Launcher]
) -> None:
    # the first claim brings two jobs, j1 runs on; the second claim is held until released
    source = Source([job("j0", node_packing_count=2), job("j1", node_packing_count=2)], hold_claims_from=2)
    loop = stepped(source, Runner(endless={"j1"}), clock)
    try:
        until(lambda: "j0" not in loop.running and "j1" in loop.running, loop.step, "j0's end and j1's start")
        clock.now += 1.0  # the reports are long due, and so is the next claim
        loop.step()
        assert loop.claims.out and not loop.reports.out  # the claim went first, the reports wait
        assert loop.wait_time(clock.now) > 0  # and the loop sleeps until it comes back
    finally:
        source.answer.set()
    until(source.reported.is_set, loop.step, "the reports once the claim came back")
    [batch] = source.reports
    assert {(u.job_id, u.state) for u in batch} == {("j1", JobState.RUNNING), ("j0", JobState.RUN_DONE)}


# ----- a full disk --------------------------------------------------------------------------


def test_reports_a_full_store_refuses_are_kept_retried_less_often_and_recorded_once_it_can(
    clock: Clock, stepped: Callable[..., Launcher], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="balsamd")
    source = Source([job("j1"), job("j2")])
    full = source.full = DiskFull(tmp_path / "store.db", noted=True)
    loop = stepped(source, Runner(), clock)
    until(lambda: source.attempts == 1, loop.step, "the first report")
    for _ in range(5):  # the retry is not due: nothing is sent, however often the loop steps
        loop.step()
    assert source.attempts == 1
    for tried in (2, 3, 4):  # each retry waits longer, and each finds the store full
        clock.now = loop.reports.retry_at
        until(lambda tried=tried: source.attempts == tried and not loop.reports.out, loop.step, "a retry")
    source.full = None
    clock.now = loop.reports.retry_at
    until(lambda: not loop.reports.unsent and not loop.reports.out, loop.step, "the reports once the store takes them")
    assert {(u.job_id, u.state) for batch in source.reports for u in batch} == {
        ("j1", JobState.RUN_DONE), ("j2", JobState.RUN_DONE),
    }  # fmt: skip
    said = [r.getMessage() for r in caplog.records if "store" in r.getMessage()]
    assert said == [
        f"the store cannot be written: {full}; finished runs are kept here until it can (2 report(s) wait)",
        "the store can be written again (it was full for 1 s)",
    ]


def test_runs_whose_files_find_no_space_wait_unstarted_and_start_once_space_is_freed(
    clock: Clock, stepped: Callable[..., Launcher], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="balsamd")
    source = Source([job("j1"), job("j2")])
    runner = Runner()
    runner.no_space = "no space left to write w/j1 (filesystem /data: 0 B free of 1.0 GiB)"
    loop = stepped(source, runner, clock)
    until(lambda: runner.refused == 1, loop.step, "the first start")
    for _ in range(5):
        loop.step()
    assert runner.refused == 1 and runner.started == []  # no start is tried before retry_at
    assert [j.id for j in loop.backlog] == ["j1", "j2"] and not loop.running
    clock.now = loop.starts.retry_at
    until(lambda: runner.refused == 2, loop.step, "one start tried again")
    runner.no_space = None
    clock.now = loop.starts.retry_at
    until(lambda: not loop.running and not loop.backlog, loop.step, "both runs")
    assert runner.started == ["j1", "j2"]
    assert [r.getMessage() for r in caplog.records if "runs" in r.getMessage()] == [
        "runs cannot start: no space left to write w/j1 (filesystem /data: 0 B free of 1.0 GiB); 2 job(s) wait, "
        "and starts are tried now and then until space is freed",
        "runs start again (there was no space for them for 3 s)",
    ]


# ----- why it stops -------------------------------------------------------------------------


def test_a_launcher_whose_reports_the_full_store_refuses_stops_idle_only_once_they_are_recorded(
    tmp_path: Path,
) -> None:
    class FullFiveTimes(Source):
        def report(self, updates: list[StateUpdate]) -> UpdateOutcome:
            self.full = DiskFull(tmp_path / "store.db", noted=True) if self.attempts < 5 else None
            return super().report(updates)

    source = FullFiveTimes([job("j1")])
    summary = launcher(source, Runner(), idle_ttl_sec=0.0).run()
    assert summary.exit.reason == ExitReason.IDLE
    assert source.attempts == 6  # retried until recorded, not given up for idleness
    assert [(u.job_id, u.state) for batch in source.reports for u in batch] == [("j1", JobState.RUN_DONE)]


def test_a_launcher_with_nothing_to_do_stops_idle_after_an_empty_claim() -> None:
    source = Source()
    summary = launcher(source, Runner(), idle_ttl_sec=0.0).run()
    assert (summary.exit.reason, summary.exit.detail) == (ExitReason.IDLE, "idle for 0 s")
    assert source.claims and source.closed


def test_a_launcher_whose_every_node_is_lost_stops_for_it() -> None:
    summary = launcher(Source(), Runner(first_events=[HostLost("h")])).run()
    assert (summary.exit.reason, summary.exit.detail) == (ExitReason.NODES_LOST, "every node was lost")


def test_a_launcher_whose_session_is_gone_kills_its_runs_and_says_so() -> None:
    source = Source([job("long")], heartbeat_error=SessionGone("session S expired"))
    runner = Runner(endless={"long"})
    summary = launcher(source, runner, heartbeat_sec=0.01, idle_ttl_sec=60.0).run()
    assert summary.exit.reason == ExitReason.SESSION_LOST
    assert summary.exit.detail == "session lost: session S expired"
    assert (["long"], signal.SIGKILL) in runner.signals
    assert runner.closed


def test_a_drained_launcher_stops_for_the_drains_reason() -> None:
    source = Source([job("long")])
    runner = Runner(endless={"long"})
    loop = launcher(source, runner, timeout_grace_sec=0.0, idle_ttl_sec=60.0)
    loop.begin_drain(Exit(ExitReason.SIGNAL, "received SIGTERM"))
    summary = loop.run()
    assert (summary.exit.reason, summary.exit.detail) == (ExitReason.SIGNAL, "received SIGTERM")
    assert not source.claims  # a drained launcher claims nothing
