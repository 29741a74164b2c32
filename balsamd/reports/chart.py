"""Charts in plain text: bars and sparklines of unicode blocks, or of ASCII where the
terminal's encoding has no blocks (a batch job's log, an old login node)."""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence

BLOCKS = " ▁▂▃▄▅▆▇█"
ASCII_LEVELS = " .:-=+*#%@"
FULL_BLOCK, PARTIAL = "█", " ▏▎▍▌▋▊▉"


def can_draw_blocks(encoding: str | None) -> bool:
    """Whether text in ``encoding`` can hold the block characters."""
    try:
        (BLOCKS + PARTIAL).encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def sparkline(values: Sequence[float], blocks: bool = True) -> str:
    """One character per value, its height relative to the largest (blank for zero)."""
    levels = BLOCKS if blocks else ASCII_LEVELS
    top = max((v for v in values if math.isfinite(v)), default=0.0)
    if top <= 0:
        return levels[0] * len(values)
    out = []
    for v in values:
        if v <= 0 or not math.isfinite(v):
            out.append(levels[0])
        else:  # any value above zero shows at least the lowest mark
            out.append(levels[max(1, min(len(levels) - 1, round(v / top * (len(levels) - 1))))])
    return "".join(out)


def bar(value: float, top: float, width: int = 30, blocks: bool = True) -> str:
    """A horizontal bar of ``value`` out of ``top`` in ``width`` cells (eighths with blocks)."""
    if top <= 0 or value <= 0 or not math.isfinite(value):
        return ""
    cells = value / top * width
    if not blocks:
        return "#" * max(1, round(cells))
    whole, eighths = int(cells), int((cells - int(cells)) * 8)
    text = FULL_BLOCK * whole + (PARTIAL[eighths] if eighths else "")
    return text or PARTIAL[1]


def clock(ts: float, span_sec: float) -> str:
    """A time as short as the span allows: 14:30 within a day, 12-07 14:30 beyond."""
    moment = datetime.datetime.fromtimestamp(ts)
    return moment.strftime("%H:%M") if span_sec <= 86400 else moment.strftime("%m-%d %H:%M")


def axis(starts: Sequence[float], until: float) -> str:
    """The first and last time under a sparkline of bins starting at ``starts``."""
    if not starts:
        return ""
    left, right = clock(starts[0], until - starts[0]), clock(until, until - starts[0])
    gap = max(1, len(starts) - len(left) - len(right))
    return left + " " * gap + right


def duration(seconds: float | None) -> str:
    """Seconds as a person reads them: 850ms, 42s, 12m30s, 3h05m, 2d04h."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 0.001:
        return "<1ms" if seconds > 0 else "0s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
