"""Which values a job may carry in its parameters and data: plain JSON, as every side keeps it.

A job's values are kept as JSON in the site store, sent as msgpack over the RPC and to warm
workers, and as jsonb to the central database.  What does not survive all three is refused
where the job is checked, naming where in the value it is: a set or an object of a class has
no JSON form (msgspec would quietly write a set as a list, bytes as base64, NaN as null); integers
beyond 64 bits do not fit msgpack; a NUL character fits neither a command line nor PostgreSQL's
text; a lone surrogate is not text at all; and a value nested deeper than any real input
exhausts the recursion of every encoder on the way.  A numpy array is a tagged value of its own
(``balsamd.arrays``), checked to be one.
"""

from __future__ import annotations

import math
from typing import Any

from balsamd.arrays import is_tagged, tagged_problem
from balsamd.explain import a_kind

MAX_DEPTH = 64
MIN_INT, MAX_INT = -(2**63), 2**64 - 1  # what msgpack carries
MAX_SHOWN = 3  # problems named for one value; a request with thousands is told of the first few

_PLAIN = (str, int, float, bool, type(None))
_HINTS = {
    "set": "give a list instead",
    "frozenset": "give a list instead",
    "bytes": "decode it to a string, or pass the data as a file in the job's workdir",
    "bytearray": "decode it to a string, or pass the data as a file in the job's workdir",
}


def text_problem(text: str, what: str) -> str | None:
    """Why ``text`` cannot be kept as text anywhere a job goes (None when it can)."""
    if "\x00" in text:
        return f"{what} contains a NUL character (\\x00), which no command line or database text can hold; remove it"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return f"{what} contains a lone surrogate ({text!r:.60}), which is not text; give valid Unicode"
    return None


def value_problems(value: dict[str, Any], field: str) -> list[str]:
    """Why the dict ``value`` (a job's parameters or data) cannot be kept: at most MAX_SHOWN
    problems, each naming where it is (``parameters['x'][2]``)."""
    problems: list[str] = []
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack and len(problems) < MAX_SHOWN:
        item, where, depth = stack.pop()
        kind = type(item)
        if kind is str:
            problem = text_problem(item, where)
            if problem:
                problems.append(problem)
        elif kind is int:
            if not MIN_INT <= item <= MAX_INT:
                problems.append(f"{where} is an integer beyond 64 bits; pass it as a string")
        elif kind is float:
            if not math.isfinite(item):
                problems.append(f"{where} is {item}, which JSON cannot keep; pass it as a string or None")
        elif kind is list or kind is tuple or kind is dict:
            if depth >= MAX_DEPTH:
                problems.append(f"{where} is nested more than {MAX_DEPTH} levels deep; flatten it or pass it as a file")
                continue
            if kind is dict and is_tagged(item):  # a numpy array (balsamd.arrays): checked whole
                problem = tagged_problem(item, where)
                if problem:
                    problems.append(problem)
            elif kind is dict:
                for key, sub in item.items():
                    if type(key) is not str:
                        problems.append(f"{where} has the key {key!r:.60}: keys must be strings")
                        break
                    label = f"{where}[{key!r:.40}]"
                    problem = text_problem(key, f"the key {label}")
                    if problem:
                        problems.append(problem)
                        break
                    stack.append((sub, label, depth + 1))
            else:
                stack.extend((sub, f"{where}[{n}]", depth + 1) for n, sub in enumerate(item))
        elif not isinstance(item, _PLAIN):
            hint = _HINTS.get(kind.__name__, "use strings, numbers, True, False, None, lists and dicts of them")
            problems.append(f"{where} is {a_kind(item)}, which is not a JSON value; {hint}")
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(f"{where} is {item}, which JSON cannot keep; pass it as a string or None")
    return problems
