"""Python app results: a return value or an exception, stored as data, never as a pickle.

A result is msgpack: ``["ok", value]`` or ``["error", type name, message, traceback text]``.
A value is None, bool, int, float, str, bytes, and lists, tuples and dicts with str keys of
values, nested; numpy arrays and scalars of booleans, numbers, strings, bytes and dates too.
Tuples, numpy values and integers beyond 64 bits travel as msgpack extension types (the codes
below); a numpy array as its dtype, shape and raw bytes.  Anything else is refused when the
run ends, and the run fails saying what a result may hold (`SUPPORTED`).

Reading a result only builds those types: nothing named by the bytes is imported or called.
Results cross trust boundaries (a site role writes them in the central database, for the job's
owner to read), so a result that is not well formed, or that an older balsamd wrote as a
pickle, reads as an ``UnreadableResult`` saying why, and is never unpickled.  An exception
comes back as a ``RemoteError`` with its type's name and message, its traceback as a note.
numpy is imported only when an array or a numpy scalar is met.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgspec
from msgspec.msgpack import Ext

from balsamd.arrays import DTYPE, dtype_ok
from balsamd.models import Job
from balsamd.states import FINAL

SUPPORTED = (
    "None, bool, int, float, str, bytes, and lists, tuples and dicts with str keys of these (nested), "
    "numpy arrays and numpy scalars of booleans, numbers, strings, bytes or dates"
)

# extension type codes
TUPLE = 1  # payload: the items, as a msgpack array
ARRAY = 2  # payload: [dtype.str, shape, raw bytes in C order]
SCALAR = 3  # payload: [dtype.str, raw bytes]
BIG_INT = 4  # payload: the integer, big-endian two's complement

_PLAIN = frozenset({type(None), bool, float, str, bytes})
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class Returned(msgspec.Struct, tag="ok", array_like=True):
    value: Any


class Raised(msgspec.Struct, tag="error", array_like=True):
    type_name: str
    message: str
    traceback: str


class RemoteError(Exception):
    """An exception a Python app raised at its site: its type's name and message (the
    exception itself is not recreated here; ``type_name`` says what it was)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message


class ResultNotReady(Exception):
    pass


class UnreadableResult(Exception):
    """Stored bytes that are not a result this balsamd writes; the message says why."""


class UnsupportedResult(TypeError):
    """A return value that a result cannot hold; the message says which part and what can."""


class _Unsupported(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str] = []


_encode = msgspec.msgpack.Encoder().encode


def pack_value(value: Any) -> bytes:
    """The result of a run that returned ``value``; UnsupportedResult when it cannot be one."""
    if value is None:
        return _NONE  # what most runs return: packed once
    try:
        return _encode(Returned(_data(value)))
    except _Unsupported as exc:
        where = "the return value" + "".join(reversed(exc.path))
        raise UnsupportedResult(f"{where} is {exc.what}; {_WHAT_TO_DO}") from None
    except RecursionError:
        raise UnsupportedResult(f"the return value is nested too deeply or contains itself; {_WHAT_TO_DO}") from None


_NONE = _encode(Returned(None))
_WHAT_TO_DO = f"a result may hold {SUPPORTED}: convert the value to those, or write it to a file in the job's workdir"


def pack_error(exc: BaseException) -> bytes:
    """The result of a run that raised ``exc``: its type's name, message and traceback."""
    name = _type_name(type(exc))
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails still leaves its type and traceback
        message = "(its message could not be made)"
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = f"{name}: {message}\n"
    return _encode(Raised(name, message, text))


def _data(value: Any) -> Any:
    """``value`` as msgpack holds it; _Unsupported naming the first part that it cannot."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is int:
        if _INT_MIN <= value <= _INT_MAX:
            return value
        return Ext(BIG_INT, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))
    if kind is list or kind is tuple:
        try:
            items = [_data(v) for v in value]
        except _Unsupported as exc:
            exc.path.append(f"[{_first_refused(enumerate(value))}]")
            raise
        return items if kind is list else Ext(TUPLE, _encode(items))
    if kind is dict:
        for key in value:
            if type(key) is not str:
                raise _Unsupported(f"a dict with the key {key!r} ({_type_name(type(key))}); dict keys must be str")
        try:
            return {k: _data(v) for k, v in value.items()}
        except _Unsupported as exc:
            exc.path.append(f"[{_first_refused(value.items())!r}]")
            raise
    numpy = sys.modules.get("numpy")  # a value holding numpy's types was made with numpy imported
    if numpy is not None:
        if kind is numpy.ndarray:  # not a subclass: a masked array would lose its mask
            _check_dtype(value.dtype)
            return Ext(ARRAY, _encode((value.dtype.str, list(value.shape), value.tobytes())))
        if isinstance(value, numpy.generic):
            _check_dtype(value.dtype)
            return Ext(SCALAR, _encode((value.dtype.str, value.tobytes())))
    raise _Unsupported(f"of type {_type_name(kind)}")


def _type_name(kind: type) -> str:
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _check_dtype(dtype: Any) -> None:
    if not dtype_ok(dtype):
        raise _Unsupported(f"numpy data of dtype {dtype} (objects, structured and empty dtypes are not supported)")


def _first_refused(pairs: Any) -> Any:
    """The key of the first (key, item) whose item cannot be data (only on the way to an error)."""
    return next(key for key, item in pairs if not _holds(item))


def _holds(item: Any) -> bool:
    try:
        _data(item)
    except _Unsupported:
        return False
    return True


# ----- reading ----------------------------------------------------------------------------


class _Malformed(Exception):
    pass


def _ext(code: int, data: memoryview) -> Any:
    if code == TUPLE:
        items = _decode_any(data)
        if type(items) is not list:
            raise _Malformed("a tuple that does not hold a list of items")
        return tuple(items)
    if code == BIG_INT:
        return int.from_bytes(data, "big", signed=True)
    if code == ARRAY:
        dtype_text, shape, raw = _decode_array(data)
        return _numpy_value(dtype_text, shape, raw)
    if code == SCALAR:
        dtype_text, raw = _decode_scalar(data)
        return _numpy_value(dtype_text, None, raw)
    raise _Malformed(f"an unknown extension type {code}")


_decode_any = msgspec.msgpack.Decoder(ext_hook=_ext).decode
# the raw bytes as views into the result: a large array is copied once, into its own buffer
_decode_array = msgspec.msgpack.Decoder(tuple[str, list[int], memoryview]).decode
_decode_scalar = msgspec.msgpack.Decoder(tuple[str, memoryview]).decode
_decode_result = msgspec.msgpack.Decoder(Returned | Raised, ext_hook=_ext).decode


def _numpy_value(dtype_text: str, shape: list[int] | None, raw: memoryview) -> Any:
    """An array (a scalar when ``shape`` is None) from its dtype and bytes, checked first."""
    if not DTYPE.fullmatch(dtype_text):
        raise _Malformed(f"a numpy value of the unsupported dtype {dtype_text!r}")
    try:
        import numpy
    except ImportError:
        raise _Malformed("it holds numpy data and numpy is not installed here (pip install numpy)") from None
    try:
        dtype = numpy.dtype(dtype_text)
    except (TypeError, ValueError):
        raise _Malformed(f"a numpy value of the unknown dtype {dtype_text!r}") from None
    if not dtype_ok(dtype):
        raise _Malformed(f"a numpy value of the unsupported dtype {dtype_text!r}")
    if shape is None:
        if len(raw) != dtype.itemsize:
            raise _Malformed(f"a numpy {dtype} scalar of {len(raw)} bytes")
        return numpy.frombuffer(raw, dtype)[0]  # a scalar is a copy
    if any(n < 0 for n in shape):
        raise _Malformed(f"a numpy array of shape {shape}")
    size = math.prod(shape) * dtype.itemsize
    if size != len(raw):
        raise _Malformed(f"a numpy {dtype} array of shape {shape} in {len(raw)} bytes (it needs {size})")
    if not raw:
        return numpy.zeros(shape, dtype)
    return numpy.frombuffer(bytearray(raw), dtype).reshape(shape)  # a writable copy, as returned


def unpack(blob: bytes) -> Returned | Raised:
    """What a stored result says; UnreadableResult (never anything else) when it is not one."""
    if blob[:1] == b"\x80":  # a pickle's first byte: how balsamd stored results before
        raise UnreadableResult(
            "it was written by an older balsamd as a pickle, which is never unpickled (unpickling can run "
            "any code); run the job again to get its result"
        )
    try:
        return _decode_result(blob)
    except _Malformed as exc:
        raise UnreadableResult(f"it holds {exc}") from None
    except RecursionError:
        raise UnreadableResult("it is nested too deeply") from None
    except Exception as exc:  # whatever the bytes are, reading them says so and nothing else
        raise UnreadableResult(f"it is not a balsamd result ({type(exc).__name__}: {exc})") from None


def _read(job: Job) -> Returned | Raised:
    assert job.result is not None
    try:
        return unpack(job.result)
    except UnreadableResult as exc:
        raise UnreadableResult(f"the result of job {job.id} cannot be read: {exc}") from None


def value_of(job: Job) -> Any:
    """The return value; RemoteError for an exception the run raised (its traceback as a
    note), UnreadableResult for bytes that are not a result."""
    if job.result is None:
        raise ResultNotReady(f"job {job.id} has no result yet (state {job.state})")
    result = _read(job)
    if isinstance(result, Returned):
        return result.value
    error = RemoteError(result.type_name, result.message)
    if result.traceback:
        error.add_note(f"raised at the site in job {job.id}:\n{result.traceback}")
    raise error


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
    """A one-look summary for `job show`: the value's repr, the exception's traceback, or why
    the stored bytes cannot be read."""
    if job.result is None:
        return None
    try:
        result = _read(job)
    except UnreadableResult as exc:
        return str(exc)
    if isinstance(result, Returned):
        return repr(result.value)
    return result.traceback.rstrip() or f"{result.type_name}: {result.message}"


def error_text(blob: bytes) -> str:
    """The traceback (else type and message) a failed run's result holds, for its state's reason."""
    try:
        result = unpack(blob)
    except UnreadableResult as exc:
        return f"its result cannot be read: {exc}"
    if isinstance(result, Raised):
        return result.traceback or f"{result.type_name}: {result.message}"
    return ""
