"""How runs and the launcher stop: the drain, users' kills and idleness."""

from __future__ import annotations

from balsamd.launch.leader.stopping import Drain, Idle, Kills
from balsamd.launch.leader.summary import Exit, ExitReason

WALL = Exit(ExitReason.WALL_TIME, "wall time is ending")
TERM = Exit(ExitReason.SIGNAL, "received SIGTERM")


def test_a_drain_begins_once_and_keeps_its_first_reason() -> None:
    drain = Drain(grace_sec=5.0)
    assert not drain.draining
    assert drain.begin(WALL, now=100.0)
    assert not drain.begin(TERM, now=101.0)
    assert drain.draining and drain.why == WALL


def test_runs_still_going_get_sigkill_once_the_grace_period_is_over() -> None:
    drain = Drain(grace_sec=5.0)
    assert not drain.kill_due(1000.0)
    drain.begin(WALL, now=100.0)
    assert not drain.kill_due(104.9) and drain.kill_due(105.0)


def test_a_drained_run_says_why_the_launcher_stopped_it_then_what_it_said() -> None:
    drain = Drain(grace_sec=5.0)
    drain.begin(WALL, now=100.0)
    assert drain.stopped("") == "stopped: wall time is ending"
    assert drain.stopped("got TERM\n") == "stopped: wall time is ending\ngot TERM"


def test_a_killed_run_gets_sigkill_after_its_grace_period_if_it_still_runs() -> None:
    kills = Kills(grace_sec=10.0)
    kills.stop(["a", "b"], now=100.0)
    kills.stop(["a"], now=105.0)  # killed again: its first deadline holds
    assert kills.late(109.0, {"a", "b"}) == []
    assert kills.late(110.0, {"a"}) == ["a"]  # b has ended meanwhile


def test_a_killed_runs_end_is_counted_as_killed_once() -> None:
    kills = Kills()
    kills.stop(["a"], now=100.0)
    assert kills.ended("a")
    assert not kills.ended("a")
    assert not kills.ended("never-killed")


def test_a_launcher_is_idle_after_its_idle_time_without_anything_happening() -> None:
    idle = Idle(ttl_sec=2.5, now=100.0)
    assert idle.over(102.0) is None
    idle.busy(101.0)
    assert idle.over(103.0) is None
    assert idle.over(103.5) == Exit(ExitReason.IDLE, "idle for 2.5 s")
