"""How fast runs go: an app's runs turn short (and back) on their mean run time, and the rate
of ending runs is measured over a window."""

from __future__ import annotations

from balsamd.launch.leader.pace import RATE_WINDOW_SEC, Pace
from balsamd.launch.leader.policy import MAX_FOLLOWERS, QUEUED_WORK_SEC


def test_an_apps_runs_are_said_short_once_when_they_turn_short_and_once_when_they_stop() -> None:
    pace = Pace(now=0.0)
    assert pace.run_ended("a", 0.001) is True
    assert pace.run_ended("a", 0.001) is None  # no change
    assert pace.run_ended("a", None) is None  # unmeasured runs move nothing
    changes = [pace.run_ended("a", 10.0) for _ in range(3)]
    assert changes.count(False) == 1 and set(changes) == {None, False}


def test_long_runs_are_never_said_short() -> None:
    pace = Pace(now=0.0)
    assert pace.run_ended("slow", 5.0) is None
    assert pace.followers("slow") == 0


def test_short_runs_get_followers_and_unknown_apps_none() -> None:
    pace = Pace(now=0.0)
    pace.run_ended("fast", 1e-7)
    assert pace.followers("fast") == MAX_FOLLOWERS
    assert pace.followers("unknown") == 0
    pace.run_ended("quick", QUEUED_WORK_SEC / 4)
    assert pace.followers("quick") == 4


def test_the_rate_of_ending_runs_is_measured_anew_once_a_window_has_passed() -> None:
    pace = Pace(now=100.0)
    for _ in range(50):
        pace.run_ended("a", None)
    assert pace.rate(100.0 + RATE_WINDOW_SEC / 2) == 0.0  # too soon to tell
    assert pace.rate(100.5) == 100.0
    pace.run_ended("a", None)
    assert pace.rate(100.6) == 100.0  # kept until the next window has passed
    assert pace.rate(101.5) == 1.0
