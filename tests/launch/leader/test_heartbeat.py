"""A launcher renews its session every heartbeat_sec, and gives it up before it could expire."""

from __future__ import annotations

import pytest

from balsamd.launch.leader.heartbeat import RETRY_SEC, Heartbeat
from balsamd.store.errors import SessionGone


def test_a_heartbeat_is_due_every_period_and_one_at_a_time() -> None:
    beat = Heartbeat(every_sec=30.0, expiry_sec=300.0, now=100.0)
    assert not beat.due(129.0) and beat.due(130.0)
    assert beat.begin(130.0)
    assert beat.next_at == 160.0
    assert not beat.begin(160.0)  # the last one is still out: skipped, the next scheduled
    assert beat.next_at == 190.0
    beat.answered(sent_at=130.0)
    assert beat.begin(190.0)


def test_a_failed_heartbeat_is_retried_sooner() -> None:
    beat = Heartbeat(every_sec=30.0, expiry_sec=300.0, now=100.0)
    beat.begin(130.0)
    beat.failed(131.0, ConnectionError("daemon away"))
    assert beat.next_at == 131.0 + RETRY_SEC
    assert beat.begin(beat.next_at)


def test_a_session_silent_for_nearly_its_expiry_is_given_up_before_it_expires() -> None:
    beat = Heartbeat(every_sec=30.0, expiry_sec=300.0, now=100.0)
    beat.begin(130.0)
    beat.answered(sent_at=130.0)
    beat.begin(160.0)
    beat.failed(399.0, ConnectionError("daemon away"))  # 269 s silent: one more try fits
    beat.begin(400.0)
    with pytest.raises(SessionGone, match="no heartbeat delivered for 271 s"):
        beat.failed(401.0, ConnectionError("daemon away"))
