"""Time windows as users give them: ISO times or durations back from now (``2h``, ``1d``),
and bins a person can read (a minute, five minutes, an hour...)."""

from __future__ import annotations

import datetime
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
DEFAULT_SPAN = "1d"
TARGET_BINS = 48
NICE_BINS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 7 * 86400)


class WindowError(ValueError):
    """A time or duration that cannot be read: the field, and what is wrong and what to give."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail


def parse_duration(text: str, field: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1.5d``, ``1w`` in seconds."""
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise WindowError(field, f"{text!r:.40} is not a duration; give a positive number and a unit, e.g. 30m, 2h, 1d")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_time(text: str, now: float, field: str) -> float:
    """A moment: ``now``, a duration back from now (``2h``: two hours ago), an ISO time
    (``2026-12-07T09:00``, local time unless it names its zone) or epoch seconds."""
    t = text.strip()
    if t.lower() == "now":
        return now
    if _DURATION.match(t):
        return now - parse_duration(t, field)
    try:
        return float(t)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(t)
    except ValueError:
        raise WindowError(
            field,
            f"{text!r:.40} is not a time; give an ISO time (2026-12-07T09:00), a duration back from now (2h, 1d) "
            "or 'now'",
        ) from None
    return moment.timestamp()  # a naive time is local, as a person at the site means it


def window(since: str | None, until: str | None, now: float) -> tuple[float, float]:
    """[since, until) from the user's texts; by default the last day up to now."""
    end = now if until is None else parse_time(until, now, "--until")
    start = end - parse_duration(DEFAULT_SPAN, "--since") if since is None else parse_time(since, now, "--since")
    if start >= end:
        raise WindowError("--since", f"must be before --until (the window is {end - start:g} s long); widen it")
    return start, end


def choose_bin(span_sec: float, target: int = TARGET_BINS) -> float:
    """The smallest readable bin giving at most ``target`` bins over the span."""
    for width in NICE_BINS:
        if span_sec / width <= target:
            return float(width)
    return float(NICE_BINS[-1])


def align(since: float, bin_sec: float) -> float:
    """``since`` moved back to a multiple of the bin (bins start on the hour, the minute...)."""
    if bin_sec >= 86400:
        return since  # days start at local midnight, not UTC's: leave the user's start
    return since - since % bin_sec
