"""The courier makes the launcher's calls on its job source from a thread, in order."""

from __future__ import annotations

import select
import threading
import time

import pytest

from balsamd.launch.leader.courier import Courier


@pytest.fixture
def courier():
    c = Courier()
    yield c
    c.close()


def test_calls_run_in_the_order_they_were_handed_over(courier: Courier) -> None:
    seen: list[int] = []
    for i in range(20):
        courier.send("report", i, lambda i=i: seen.append(i) or i * 10)
    assert courier.wait_idle(timeout=5)
    done = courier.collect()
    assert seen == list(range(20))
    assert [(d.kind, d.request, d.result, d.error) for d in done] == [("report", i, i * 10, None) for i in range(20)]


def test_a_failing_call_is_delivered_with_its_error_and_the_next_calls_still_run(courier: Courier) -> None:
    def fail() -> None:
        raise ConnectionError("daemon away")

    courier.send("claim", "first", fail)
    courier.send("claim", "second", lambda: "ok")
    assert courier.wait_idle(timeout=5)
    first, second = courier.collect()
    assert isinstance(first.error, ConnectionError) and first.result is None
    assert (second.result, second.error) == ("ok", None)


def test_calls_count_as_pending_until_collected_by_kind(courier: Courier) -> None:
    release = threading.Event()
    courier.send("claim", None, release.wait)
    courier.send("report", None, lambda: None)
    assert (courier.pending("claim"), courier.pending("report"), courier.pending()) == (1, 1, 2)
    release.set()
    assert courier.wait_idle(timeout=5)
    assert courier.pending() == 2  # finished, not yet collected
    courier.collect()
    assert courier.pending() == 0


def test_its_fd_becomes_readable_when_a_call_finishes(courier: Courier) -> None:
    courier.send("heartbeat", None, lambda: time.sleep(0.05))
    ready, _, _ = select.select([courier.fileno()], [], [], 5)
    assert ready == [courier.fileno()]
    assert [d.kind for d in courier.collect()] == ["heartbeat"]
    ready, _, _ = select.select([courier.fileno()], [], [], 0)
    assert ready == []


def test_a_courier_never_used_has_no_thread_and_closes_at_once() -> None:
    c = Courier()
    assert c.pending() == 0
    c.close()
