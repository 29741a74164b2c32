"""A launcher renews its session every heartbeat_sec, and gives it up before it could expire."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsamd.launch.leader.heartbeat import RETRY_SEC, Heartbeat
from balsamd.store.errors import DiskFull, SessionGone


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
    beat.failed(131.0, ConnectionError("daemon away"), sent_at=130.0)
    assert beat.next_at == 131.0 + RETRY_SEC
    assert beat.begin(beat.next_at)


def test_a_session_silent_for_nearly_its_expiry_is_given_up_before_it_expires() -> None:
    beat = Heartbeat(every_sec=30.0, expiry_sec=300.0, now=100.0)
    beat.begin(130.0)
    beat.answered(sent_at=130.0)
    beat.begin(160.0)
    beat.failed(399.0, ConnectionError("daemon away"), sent_at=160.0)  # 269 s silent: one more try fits
    beat.begin(400.0)
    with pytest.raises(SessionGone, match="no heartbeat delivered for 271 s"):
        beat.failed(401.0, ConnectionError("daemon away"), sent_at=400.0)


def test_a_heartbeat_the_store_noted_it_could_not_record_counts_as_heard(tmp_path: Path) -> None:
    """While the store's disk is full no session expires (the store noted when): the launcher
    keeps its runs going however long it lasts."""
    beat = Heartbeat(every_sec=30.0, expiry_sec=300.0, now=100.0)
    for sent_at in range(130, 3000, 30):
        beat.begin(float(sent_at))
        beat.failed(sent_at + 0.5, DiskFull(tmp_path / "store.db", noted=True), sent_at=float(sent_at))
    beat.begin(3010.0)
    with pytest.raises(SessionGone, match="no heartbeat delivered for 281 s"):
        beat.failed(3261.0, DiskFull(tmp_path / "store.db", noted=False), sent_at=3010.0)
