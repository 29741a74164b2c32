"""Times and durations as users type them, and bins a person can read."""

from __future__ import annotations

import datetime

import pytest

from balsamd.reports.chart import bar, can_draw_blocks, duration, sparkline
from balsamd.reports.window import WindowError, align, choose_bin, parse_duration, parse_time, window

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600),
                                               ("1w", 604800), (" 3H ", 10800)])  # fmt: skip
def test_durations_have_a_number_and_a_unit(text, seconds):
    assert parse_duration(text, "--bin") == seconds


@pytest.mark.parametrize("text", ["2", "h", "-1h", "0m", "2 hours", ""])
def test_a_duration_without_a_positive_number_and_a_unit_is_refused_naming_the_field(text):
    with pytest.raises(WindowError, match=r"^--bin: .* is not a duration; give a positive number and a unit"):
        parse_duration(text, "--bin")


def test_a_time_is_now_a_duration_back_from_now_an_iso_time_or_epoch_seconds():
    assert parse_time("now", NOW, "--since") == NOW
    assert parse_time("2h", NOW, "--since") == NOW - 7200
    assert parse_time("1700000000", NOW, "--since") == 1_700_000_000
    assert (
        parse_time("2026-12-07T09:00+00:00", NOW, "--since")
        == datetime.datetime(2026, 12, 7, 9, tzinfo=datetime.UTC).timestamp()
    )
    assert parse_time("2026-12-07T09:00", NOW, "--since") == datetime.datetime(2026, 12, 7, 9).timestamp()
    with pytest.raises(WindowError, match=r"^--until: 'yesterday' is not a time; give an ISO time"):
        parse_time("yesterday", NOW, "--until")


def test_the_window_defaults_to_the_day_before_until_and_must_not_be_empty():
    assert window(None, None, NOW) == (NOW - 86400, NOW)
    assert window("2h", "1h", NOW) == (NOW - 7200, NOW - 3600)
    with pytest.raises(WindowError, match=r"^--since: must be before --until"):
        window("1h", "2h", NOW)


def test_bins_are_readable_widths_giving_at_most_about_48_of_them():
    assert choose_bin(3600) == 120
    assert choose_bin(86400) == 1800
    assert choose_bin(7 * 86400) == 21600
    assert align(1000.0, 300.0) == 900.0


def test_text_charts_use_blocks_where_the_terminal_can_show_them_else_ascii():
    assert can_draw_blocks("utf-8") and not can_draw_blocks("ascii") and not can_draw_blocks(None)
    assert sparkline([0, 1, 2, 4, 8]) == " ▁▂▄█"
    assert sparkline([0, 1, 2, 4, 8], blocks=False) == " .:=@"
    assert sparkline([0, 0]) == "  "
    assert bar(5, 10, width=4) == "██" and bar(5, 10, width=4, blocks=False) == "##"
    assert bar(0.01, 10, width=4) == "▏" and bar(0, 10) == ""


SHOWN = [(None, "-"), (0.0004, "<1ms"), (0.25, "250ms"), (4.25, "4.2s"), (42, "42s"), (750, "12m30s"),
         (11100, "3h05m"), (187200, "2d04h")]  # fmt: skip


@pytest.mark.parametrize(("seconds", "text"), SHOWN)
def test_durations_are_shown_as_a_person_reads_them(seconds, text):
    assert duration(seconds) == text
