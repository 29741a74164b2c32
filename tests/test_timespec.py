"""Times and durations as people type them, parsed in one place for every command."""

from __future__ import annotations

import datetime

import pytest

from balsamd.timespec import TimeSpecError, parse_duration, parse_time

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("2.5", 2.5), ("30s", 30.0), ("30m", 1800.0), ("1.5h", 5400.0), ("2d", 172800.0),
     ("1w", 604800.0), (" 2H ", 7200.0), (".5m", 30.0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5", "5y", "1h30m", "nan", "inf", "m"])
def test_what_is_no_duration_is_refused_showing_the_forms(text: str) -> None:
    with pytest.raises(TimeSpecError) as refused:
        parse_duration(text)
    assert str(refused.value) == (
        f"{text!r} is not a length of time; give seconds (90) or a number with a unit s, m, h, d or w (30m, 1.5h, 2d)"
    )


def test_a_duration_as_a_time_is_that_long_ago() -> None:
    assert parse_time("2h", NOW) == NOW - 7200
    assert parse_time("1d", NOW) == NOW - 86400


def test_iso_times_with_or_without_a_zone() -> None:
    utc = datetime.datetime(2027, 1, 15, 8, 0, tzinfo=datetime.UTC).timestamp()
    assert parse_time("2027-01-15T08:00:00+00:00", NOW) == utc
    assert parse_time("2027-01-15T09:00+01:00", NOW) == utc
    local = datetime.datetime(2027, 1, 15, 8, 0).timestamp()  # no zone: local, as tables print times
    assert parse_time("2027-01-15 08:00", NOW) == local
    assert parse_time("2027-01-15", NOW) == datetime.datetime(2027, 1, 15).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "15", "2027-13-01", ""])
def test_what_is_no_time_is_refused_showing_the_forms(text: str) -> None:
    with pytest.raises(TimeSpecError) as refused:
        parse_time(text, NOW)
    assert str(refused.value).startswith(f"{text!r} is not a time; give an ISO time (2026-12-07")
