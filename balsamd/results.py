"""Python app results: how a return value or an exception is stored and given back.

A result is pickled as ``("ok", value)`` or ``("error", exception, traceback_text)``.  The
exception is re-raised by ``job.result()`` with the remote traceback attached; when it cannot
be unpickled (its class is not importable here) a RemoteError carries its text instead.
"""

from __future__ import annotations

import pickle
import time
import traceback
from collections.abc import Callable
from typing import Any

from balsamd.models import Job
from balsamd.states import FINAL


class RemoteError(Exception):
    """An exception raised by a Python app on the site (its class is not available here)."""


class ResultNotReady(Exception):
    pass


def pack_value(value: Any) -> bytes:
    if value is None:
        return _NONE  # what most runs return: packed once
    try:
        return pickle.dumps(("ok", value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return pack_error(TypeError(f"the return value could not be pickled: {exc}"))


_NONE = pickle.dumps(("ok", None), protocol=pickle.HIGHEST_PROTOCOL)


def pack_error(exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception(exc))
    try:
        return pickle.dumps(("error", exc, text), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return pickle.dumps(("error", RemoteError(f"{type(exc).__name__}: {exc}"), text))


def unpack(blob: bytes) -> tuple[str, Any, str]:
    """(kind, value-or-exception, traceback text)."""
    try:
        data = pickle.loads(blob)
    except Exception as exc:
        return "error", RemoteError(f"the stored result cannot be read here: {exc}"), ""
    if data[0] == "ok":
        return "ok", data[1], ""
    return "error", data[1], data[2]


def value_of(job: Job) -> Any:
    """The return value, or raise the remote exception (with its traceback as a note)."""
    if job.result is None:
        raise ResultNotReady(f"job {job.id} has no result yet (state {job.state})")
    kind, value, text = unpack(job.result)
    if kind == "ok":
        return value
    if text:
        value.add_note(f"raised on the site in job {job.id}:\n{text}")
    raise value


def await_value(fetch: Callable[[], Job], timeout: float | None, poll: float) -> Any:
    """``value_of`` the job ``fetch`` returns, waiting up to ``timeout`` seconds for it to have a
    result or reach a final state (no waiting without a timeout)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    job = fetch()
    while job.result is None and job.state not in FINAL:
        if deadline is None or time.monotonic() >= deadline:
            break
        time.sleep(poll)
        job = fetch()
    return value_of(job)


def describe_result(job: Job) -> str | None:
    """A one-look summary for `job show`: the value's repr or the exception's traceback."""
    if job.result is None:
        return None
    kind, value, text = unpack(job.result)
    if kind == "ok":
        return repr(value)
    return text.rstrip() or f"{type(value).__name__}: {value}"
