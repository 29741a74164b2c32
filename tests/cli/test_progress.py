"""The progress bar: drawn on a terminal, silent on anything else."""

from __future__ import annotations

import io
import os
import select
import time

from balsamd.cli.progress import elapsed, progress, rate


def test_a_bar_is_drawn_on_a_terminal_where_it_stands() -> None:
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal, progress(200, "checking", file=terminal) as bar:
        assert bar.visible
        bar.show(50, "1 bad")
        drawn = read_until(leader, "1 bad")
        assert "checking" in drawn and "50/200" in drawn
        bar.show(40, "2 bad", total=80)  # what it watches may go back, and grow or shrink
        drawn = read_until(leader, "2 bad")
        assert "40/80" in drawn and "50%" in drawn
    os.close(leader)


def read_until(leader: int, text: str, timeout: float = 10.0) -> str:
    """What the terminal received up to and with ``text`` (a draw may arrive in several reads)."""
    received = ""
    deadline = time.monotonic() + timeout
    while text not in received:
        ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the terminal never received {text!r}; it got {received!r}"
        received += os.read(leader, 65536).decode()
    return received


def test_nothing_is_drawn_on_a_file_or_a_pipe() -> None:
    log = io.StringIO()
    with progress(10, "checking", file=log) as bar:
        assert not bar.visible
        bar.show(10, "done")
    assert log.getvalue() == ""


def test_rates_and_times_read_at_a_glance() -> None:
    assert [rate(1500, 10.0), rate(25, 10.0), rate(1, 600.0), rate(5, 0.0)] == ["150/s", "2.5/s", "0.1/min", "0.0/min"]
    assert [elapsed(0.4), elapsed(61.0), elapsed(3725.9)] == ["0:00:00", "0:01:01", "1:02:05"]
