"""Globally unique, time-ordered identifiers.

Job ids travel between sites and the central database, so they must never collide and should
sort by creation time.  An id is 26 Crockford base32 characters: 48 bits of milliseconds since
the epoch, then 80 bits that are random per millisecond and incremented within it, so ids made
by one process are strictly increasing and ids from different hosts collide with probability
about 2**-80 per millisecond.
"""

from __future__ import annotations

import math
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}


def _encode(value: int) -> str:
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


class IdGenerator:
    """Increasing ids; new_id/new_ids share one per process, a fresh one can make ids for times before theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new_id(self, now: float | None = None) -> str:
        return self.new_ids(1, now)[0]

    def new_ids(self, count: int, now: float | None = None) -> list[str]:
        """``count`` fresh ids, increasing, from one lock acquisition (bulk creation is hot)."""
        ms = time.time_ns() // 1_000_000 if now is None else _millisecond(now)
        with self._lock:
            if ms <= self._last_ms:
                ms, rand = self._last_ms, self._last_rand
            else:
                rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
            ids = []
            for _ in range(count):
                rand += 1
                if rand >= 1 << 80:
                    ms, rand = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
                ids.append(_encode((ms << 80) | rand))
            self._last_ms, self._last_rand = ms, rand
        return ids


def _millisecond(now: float) -> int:
    """The millisecond ``now`` falls in, as id_time gives it back: the last ``ms`` with ms / 1000 <= now."""
    # the product is rounded, so its floor may be one off either way (ms / 1000 * 1000 may come
    # out just below ms, and rounding to the microsecond is too coarse for times centuries ahead)
    ms = math.floor(now * 1000)
    if (ms + 1) / 1000 <= now:
        return ms + 1
    return ms - 1 if ms / 1000 > now else ms


_process = IdGenerator()


def new_id(now: float | None = None) -> str:
    return _process.new_id(now)


def new_ids(count: int, now: float | None = None) -> list[str]:
    return _process.new_ids(count, now)


def id_time(job_id: str) -> float:
    """Creation time (epoch seconds) encoded in an id."""
    value = 0
    for c in job_id.upper():
        value = (value << 5) | _DECODE[c]
    return (value >> 80) / 1000.0


def looks_like_id(text: str) -> bool:
    return len(text) == 26 and all(c in _DECODE for c in text.upper())
