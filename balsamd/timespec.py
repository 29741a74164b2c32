"""Times and durations as people type them: ``2h``, ``30m``, ``1.5d``, or an ISO date and time.

One parser for every command that takes a time (``--since``, ``--until``) or a length of time
(``--timeout``), so they all accept, and refuse, the same text in the same words.  A time
without a zone is local, as the tables print times.
"""

from __future__ import annotations

import datetime
import math
import re

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])", re.IGNORECASE)
TIME_FORMS = "an ISO time (2026-12-07, 2026-12-07T14:30, 2026-12-07 14:30:00+00:00) or a time ago (30m, 2h, 1d)"
DURATION_FORMS = "seconds (90) or a number with a unit s, m, h, d or w (30m, 1.5h, 2d)"


class TimeSpecError(ValueError):
    """Text that is no time or duration; the message shows the forms that are."""


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number of seconds or a number with a unit (``30m``)."""
    given = text.strip()
    try:
        seconds = float(given)
    except ValueError:
        match = _DURATION.fullmatch(given)
        if match is None:
            raise TimeSpecError(f"{text!r:.40} is not a length of time; give {DURATION_FORMS}") from None
        seconds = float(match[1]) * UNITS[match[2].lower()]
    if not math.isfinite(seconds) or seconds < 0:
        raise TimeSpecError(f"{text!r:.40} is not a length of time; give {DURATION_FORMS}")
    return seconds


def parse_time(text: str, now: float) -> float:
    """The moment ``text`` names as a Unix time: an ISO date/time, or a duration before ``now``."""
    given = text.strip()
    if _DURATION.fullmatch(given):
        return now - parse_duration(given)
    try:
        moment = datetime.datetime.fromisoformat(given)
    except ValueError:
        raise TimeSpecError(f"{text!r:.40} is not a time; give {TIME_FORMS}") from None
    return moment.timestamp()  # naive: local time
