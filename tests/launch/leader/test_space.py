"""No run starts while the disk holding runs' files is full; one is tried now and then."""

from __future__ import annotations

import logging

from balsamd.diskspace import Notice, Say
from balsamd.launch.leader.space import FIRST_RETRY_SEC, MAX_RETRY_SEC, StartHold, starts_line, store_line


def test_starts_are_held_after_one_found_no_space_and_tried_again_less_and_less_often() -> None:
    hold = StartHold()
    assert not hold.holding(100.0)
    assert hold.no_space(100.0) == Say(Notice.FULL, since=100.0, held=0)
    assert hold.holding(100.0) and hold.holding(100.0 + FIRST_RETRY_SEC - 0.01)
    waits, said = [], {}
    for _ in range(8):
        now = hold.retry_at
        assert not hold.holding(now)  # one start may be tried then, and finds no space again
        said[now] = hold.no_space(now)
        waits.append(hold.retry_at - now)
    assert waits == [2.0, 4.0, 8.0, 16.0, MAX_RETRY_SEC, MAX_RETRY_SEC, MAX_RETRY_SEC, MAX_RETRY_SEC]
    assert {at: say for at, say in said.items() if say is not None} == {
        161.0: Say(Notice.STILL_FULL, since=100.0, held=5),  # a minute after the first line
        221.0: Say(Notice.STILL_FULL, since=100.0, held=1),  # and the next minute
    }


def test_a_start_that_goes_through_lets_every_run_start_and_says_so() -> None:
    hold = StartHold()
    hold.no_space(100.0)
    hold.no_space(101.0)
    assert hold.started(103.0) == Say(Notice.SPACE_AGAIN, since=100.0, held=1)
    assert not hold.full and not hold.holding(103.0)
    assert hold.started(104.0) is None
    hold.no_space(200.0)
    assert hold.retry_at == 200.0 + FIRST_RETRY_SEC  # the wait starts over


def test_what_a_launcher_says_while_a_disk_stays_full() -> None:
    still = Say(Notice.STILL_FULL, since=100.0, held=41)
    error = "no space left to write SITE/balsamd.db (filesystem /site: 0 B free of 1.0 TiB): free some space there"
    assert store_line(still, 161.0, error, 3000) == (
        logging.WARNING, f"the store is still full after 61 s: {error}; 3000 report(s) wait (41 more failed call(s))"
    )  # fmt: skip
    assert starts_line(still, 161.0, "no space left to write DATA/w", 12) == (
        logging.WARNING, "runs still cannot start after 61 s: no space left to write DATA/w; 12 job(s) wait"
    )  # fmt: skip
