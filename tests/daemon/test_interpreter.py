"""How the daemon's process sets up its interpreter for many threads and large batches."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from balsamd.daemon.main import GC_YOUNG_THRESHOLD, SWITCH_INTERVAL_S, tune_interpreter


@pytest.fixture
def interpreter_restored() -> Iterator[None]:
    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*threshold)


def test_threads_back_from_a_call_get_the_interpreter_soon(interpreter_restored: None) -> None:
    tune_interpreter()

    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)


def test_cycles_are_looked_for_after_thousands_of_new_containers_not_hundreds(interpreter_restored: None) -> None:
    older = gc.get_threshold()[1:]

    tune_interpreter()

    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *older)
    assert GC_YOUNG_THRESHOLD >= 10 * 700, "Python's default is 700"
