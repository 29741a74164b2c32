"""Job ids: unique, time-ordered, strictly increasing within a process."""

from __future__ import annotations

import itertools
import threading
import time

from hypothesis import example, given
from hypothesis import strategies as st

from balsamd import ids

MAX_MS = 2**48 - 1


def test_an_id_is_26_crockford_characters():
    job_id = ids.new_id()
    assert len(job_id) == 26
    assert ids.looks_like_id(job_id)
    assert ids.looks_like_id(job_id.lower())
    assert not ids.looks_like_id(job_id[:-1])
    assert not ids.looks_like_id(job_id[:-1] + "U")


def test_100k_ids_are_unique_and_strictly_increasing():
    made = ids.new_ids(50_000) + [ids.new_id() for _ in range(50_000)]
    assert len(set(made)) == len(made)
    assert all(a < b for a, b in itertools.pairwise(made))


def test_ids_are_strictly_increasing_even_when_the_clock_goes_back():
    made = ids.IdGenerator()
    later = made.new_id(now=time.time() + 1)
    earlier_clock = made.new_id(now=time.time() - 3600)
    assert earlier_clock > later


def test_ids_made_by_many_threads_are_unique_and_increasing_per_thread():
    results: list[list[str]] = []

    def make() -> None:
        results.append([ids.new_id() for _ in range(5_000)])

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for batch in results for i in batch]
    assert len(set(every)) == len(every) == 20_000
    for batch in results:
        assert batch == sorted(batch)


@given(st.integers(0, MAX_MS - 1), st.integers(1, 10**6))
def test_ids_sort_by_creation_time(ms, gap):
    made = ids.IdGenerator()
    first = made.new_id(now=ms / 1000)
    second = made.new_id(now=min(ms + gap, MAX_MS) / 1000)
    assert first < second


@given(st.integers(0, MAX_MS))
@example(8_673_489_910_668)  # ms / 1000 * 1000 rounded to the microsecond is 0.001 short of it
def test_id_time_round_trips_the_millisecond(ms):
    job_id = ids.IdGenerator().new_id(now=ms / 1000)
    assert ids.id_time(job_id) == ms / 1000
    assert ids.id_time(ids.IdGenerator().new_id(now=ids.id_time(job_id))) == ids.id_time(job_id)


def test_id_time_of_a_new_id_is_now_to_the_millisecond():
    before = time.time()
    job_id = ids.new_id()
    after = time.time()
    assert before - 0.001 <= ids.id_time(job_id) <= after
