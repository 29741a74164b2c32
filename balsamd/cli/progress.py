"""One progress bar for the commands that take a while: waiting for jobs, creating many, syncing.

It is click's bar, drawn on stderr only when stderr is a terminal: a log file or a pipe gets
nothing from it (the command's own summary line says how it went), and stdout stays the
command's output alone.  Callers set where they are (``show(done, info)``) rather than count
steps, since what they watch may also go back (a retried job is no longer done).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar


class Bar:
    """Where a long operation is: ``show(done, info)``, and ``total`` when it changes."""

    def __init__(self, bar: ProgressBar[str | None]) -> None:
        self._bar = bar
        self.started = time.monotonic()

    def show(self, done: int, info: str = "", total: int | None = None) -> None:
        if total is not None:
            self._bar.length = max(total, 1)
        self._bar.current_item = info
        self._bar.make_step(done - self._bar.pos)  # not update(): it never draws a step back
        self._bar.render_progress()

    @property
    def visible(self) -> bool:
        return not self._bar.hidden


def on_terminal(file: TextIO) -> bool:
    try:
        return file.isatty()
    except ValueError:  # closed
        return False


@contextlib.contextmanager
def progress(total: int, label: str, file: TextIO | None = None) -> Iterator[Bar]:
    """A bar of ``total`` steps labelled ``label``, on ``file`` (stderr) if it is a terminal."""
    out = sys.stderr if file is None else file
    with click.progressbar(
        length=max(total, 1), label=label, file=out, hidden=not on_terminal(out),
        show_pos=True, show_percent=True, show_eta=False, item_show_func=lambda info: info, width=24,
    ) as bar:  # fmt: skip
        yield Bar(bar)


def rate(count: int, seconds: float) -> str:
    """``count`` things in ``seconds`` as a rate a person reads at a glance."""
    per_s = count / seconds if seconds > 0 else 0.0
    return f"{per_s:.0f}/s" if per_s >= 10 else f"{per_s:.1f}/s" if per_s >= 0.1 else f"{per_s * 60:.1f}/min"


def elapsed(seconds: float) -> str:
    """``seconds`` as h:mm:ss."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
