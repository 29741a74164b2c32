"""numpy arrays in a job's parameters: a tagged JSON value, never a pickle.

A job's parameters are JSON wherever they are kept (the site store, the RPC, the central
database), so an array travels as ``{"$ndarray": {"dtype": "<f8", "shape": [3], "base64": ...}}``:
its dtype (one of the allow-list below, the same as for results), its shape and its bytes in C
order.  The API encodes arrays when a job is requested; the store checks the tagged form like
any value (``tagged_problem``, through ``jsonvalues``), and a Python app's ``run()`` receives
the array again (``decode``).  A command app never receives one.  numpy scalars are plain
numbers and text by then (``.item()``).  Reading builds only an array of an allowed dtype from
bytes of exactly its size: nothing named by the value is imported or called.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import sys
from typing import Any

TAG = "$ndarray"
NUMPY_KINDS = frozenset("biufcmMUS")  # no objects, no structured or void dtypes
# what dtype.str gives for those kinds: a byte order, a kind, a size, maybe a time unit
DTYPE = re.compile(r"[<>|=]([biufcmMUS])([0-9]{1,6})(\[[0-9]{0,4}[a-zA-Z]{1,2}\])?")
MAX_DIMS = 32  # numpy's own limit is 64; no job's input has more


def dtype_ok(dtype: Any) -> bool:
    """A numpy dtype a parameter or a result may hold."""
    return dtype.kind in NUMPY_KINDS and not dtype.hasobject and dtype.fields is None and dtype.itemsize > 0


class ArrayError(ValueError):
    """A value that cannot travel as a parameter; the message says where and why."""


def encode(value: Any, where: str = "parameters") -> Any:
    """``value`` with every numpy array as its tagged JSON form and every numpy scalar as the
    plain value it holds; the value itself when numpy was never imported (nothing holds one)."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return value
    return _encode(value, where, numpy)


def _encode(value: Any, where: str, numpy: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _encode(v, f"{where}[{k!r:.40}]", numpy) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_encode(v, f"{where}[{n}]", numpy) for n, v in enumerate(value)]
    if kind is numpy.ndarray:  # not a subclass: a masked array would lose its mask
        if not dtype_ok(value.dtype):
            raise ArrayError(
                f"{where} is a numpy array of dtype {value.dtype}, which a job cannot carry; "
                "give numbers, booleans, text, bytes or dates (no objects or structured dtypes)"
            )
        data = base64.b64encode(numpy.ascontiguousarray(value).tobytes()).decode("ascii")
        return {TAG: {"dtype": value.dtype.str, "shape": list(value.shape), "base64": data}}
    if isinstance(value, numpy.generic) and dtype_ok(value.dtype):
        return value.item()
    return value


def is_tagged(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and TAG in value


def itemsize(dtype_text: str) -> int | None:
    """Bytes per item of an allowed dtype, from its text alone; None when it is not allowed."""
    match = DTYPE.fullmatch(dtype_text)
    if match is None:
        return None
    size = int(match.group(2))
    return size * 4 if match.group(1) == "U" else size


def tagged_problem(value: dict[str, Any], where: str) -> str | None:
    """Why a tagged array cannot be read back as one (None when it can); numpy is not needed."""
    body = value[TAG]
    fix = f"give a numpy array and let balsamd encode it, or a dict without the key {TAG!r}"
    if type(body) is not dict or set(body) != {"dtype", "shape", "base64"}:
        return f"{where} is not an array: {TAG} must hold exactly dtype, shape and base64; {fix}"
    dtype, shape, data = body["dtype"], body["shape"], body["base64"]
    size = itemsize(dtype) if type(dtype) is str else None
    if not size:
        return f"{where} has the dtype {dtype!r:.40}, which a job cannot carry; {fix}"
    if type(shape) is not list or len(shape) > MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
        return f"{where} has the shape {shape!r:.60}: a list of at most {MAX_DIMS} whole numbers, 0 or more; {fix}"
    if type(data) is not str:
        return f"{where}'s base64 is not text; {fix}"
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return f"{where}'s base64 is not base64; {fix}"
    needed = math.prod(shape) * size
    if len(raw) != needed:
        return f"{where} holds {len(raw)} bytes, and a {dtype} array of shape {shape} needs {needed}; {fix}"
    return None


def holds_array(value: Any) -> bool:
    if is_tagged(value):
        return True
    if type(value) is dict:
        return any(holds_array(v) for v in value.values())
    if type(value) is list:
        return any(holds_array(v) for v in value)
    return False


def decode(value: Any) -> Any:
    """``value`` with every tagged array made a numpy array again (checked first: the store
    checked it too, but a value may come from anywhere); ArrayError saying why it cannot."""
    return _decode(value, "parameters")


def _decode(value: Any, where: str) -> Any:
    kind = type(value)
    if kind is dict:
        if is_tagged(value):
            return _array(value, where)
        return {k: _decode(v, f"{where}[{k!r:.40}]") for k, v in value.items()}
    if kind is list:
        return [_decode(v, f"{where}[{n}]") for n, v in enumerate(value)]
    return value


def _array(value: dict[str, Any], where: str) -> Any:
    problem = tagged_problem(value, where)
    if problem:
        raise ArrayError(problem)
    try:
        import numpy
    except ImportError:
        raise ArrayError(f"{where} is a numpy array and numpy is not installed here (pip install numpy)") from None
    body = value[TAG]
    dtype = numpy.dtype(body["dtype"])
    if not dtype_ok(dtype):
        raise ArrayError(f"{where} has the dtype {body['dtype']!r}, which a job cannot carry")
    raw = bytearray(base64.b64decode(body["base64"]))  # writable, as the caller's array was
    if not raw:
        return numpy.zeros(body["shape"], dtype)
    return numpy.frombuffer(raw, dtype).reshape(body["shape"])
