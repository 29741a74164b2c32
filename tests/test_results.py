"""Results are data: values and exceptions round trip, nothing else is written, and reading
bytes that are not a result (a pickle, a bogus extension, truncated bytes) is a clear error
that runs nothing."""

from __future__ import annotations

import math
import os
import pickle
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest

from balsamd.models import Job
from balsamd.results import (
    ARRAY,
    SCALAR,
    TUPLE,
    RemoteError,
    Returned,
    UnreadableResult,
    UnsupportedResult,
    describe_result,
    pack_error,
    pack_value,
    unpack,
    value_of,
)
from balsamd.states import JobState


def job_with(result: bytes) -> Job:
    return Job(id="J1", app="a", workdir="w", state=JobState.JOB_FINISHED, result=result)


def round_trip(value: object) -> object:
    return value_of(job_with(pack_value(value)))


PLAIN = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**200), 3**100, 1.5, -0.0, math.inf,
    "", "é ✓", b"", b"\x00\xff", [], (), {}, [1, "a", None], (1,), ("a", b"b", 2.5),
    {"a": 1, "b": [1, (2, 3), {"c": (None,)}], "d": {"e": {"f": b"g"}}},
    [[[[[]]]]], ([], {}, ()), {"": ""},
]  # fmt: skip


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_and_nested_containers_come_back_equal_and_of_the_same_types(value: object) -> None:
    back = round_trip(value)
    assert back == value
    assert repr(back) == repr(value)  # tuples stay tuples, ints of any size stay ints


def test_nan_comes_back_as_nan() -> None:
    assert math.isnan(round_trip(float("nan")))  # type: ignore[arg-type]


ARRAYS = [
    np.arange(12, dtype=np.int64).reshape(3, 4),
    np.arange(6, dtype=">i4").reshape(2, 3).T,  # big-endian, not contiguous
    np.linspace(0, 1, 7, dtype=np.float32),
    np.array([1 + 2j, -3j], dtype=np.complex128),
    np.array([[True, False]], dtype=bool),
    np.array(["ab", "c", ""]),
    np.array([b"xy", b""]),
    np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"),
    np.array([5, -1], dtype="timedelta64[s]"),
    np.zeros((0, 3), dtype=np.uint8),
    np.array(3.5),  # no dimensions
    np.ones((2, 1, 3, 1), dtype=np.float16),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{list(a.shape)}")
def test_numpy_arrays_come_back_with_their_dtype_shape_and_values(array: np.ndarray) -> None:
    back = round_trip({"a": array, "in": [array]})
    assert isinstance(back, dict)
    for got in (back["a"], back["in"][0]):
        assert isinstance(got, np.ndarray)
        assert (got.dtype, got.shape) == (array.dtype, array.shape)
        np.testing.assert_array_equal(got, array)
        assert got.flags.writeable


def test_numpy_scalars_come_back_as_numpy_scalars() -> None:
    for scalar in (np.float64(2.5), np.int8(-3), np.bool_(True), np.complex64(1j), np.str_("hé")):
        back = round_trip(scalar)
        assert type(back) is type(scalar) and back == scalar


class Custom(Exception):
    pass


def test_an_exception_comes_back_as_a_remote_error_with_its_name_message_and_traceback() -> None:
    def fail() -> None:
        raise Custom("it broke")

    try:
        fail()
    except Custom as exc:
        blob = pack_error(exc)
    with pytest.raises(RemoteError) as raised:
        value_of(job_with(blob))
    error = raised.value
    assert error.type_name == "tests.test_results.Custom"
    assert error.message == "it broke"
    assert str(error) == f"{error.type_name}: it broke"
    [note] = error.__notes__
    assert note.startswith("raised at the site in job J1:\nTraceback (most recent call last):")
    assert 'raise Custom("it broke")' in note
    assert describe_result(job_with(blob)).startswith("Traceback")  # type: ignore[union-attr]

    bare = value_of_error(pack_error(KeyError("k")))
    assert (bare.type_name, bare.message, str(bare)) == ("KeyError", "'k'", "KeyError: 'k'")


def value_of_error(blob: bytes) -> RemoteError:
    with pytest.raises(RemoteError) as raised:
        value_of(job_with(blob))
    return raised.value


class Point:
    pass


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1, 2}, "the return value is of type set"),
        ([1, Point()], "the return value[1] is of type tests.test_results.Point"),
        ({"a": [0, {"b": (1, 2, frozenset())}]}, "the return value['a'][1]['b'][2] is of type frozenset"),
        ({1: "x"}, "the return value is a dict with the key 1 (int); dict keys must be str"),
        (np.array([1, "a"], dtype=object), "the return value is numpy data of dtype object"),
        (np.zeros(2, dtype=[("x", "f8")]), "the return value is numpy data of dtype [('x', '<f8')]"),
        (bytearray(b"x"), "the return value is of type bytearray"),
        (np.ma.masked_array([1, 2], mask=[0, 1]), "the return value is of type numpy.ma.MaskedArray"),
    ],
)
def test_values_a_result_cannot_hold_are_refused_saying_where_and_what_can(value: object, where: str) -> None:
    with pytest.raises(UnsupportedResult) as raised:
        pack_value(value)
    message = str(raised.value)
    assert message.startswith(where)
    assert "a result may hold None, bool, int, float, str, bytes, and lists, tuples and dicts" in message
    assert "write it to a file in the job's workdir" in message


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(UnsupportedResult, match="nested too deeply or contains itself"):
        pack_value(loop)


def write_marker() -> None:
    Path(os.environ["MARKER"]).write_text("ran")


class Marker:
    """Unpickling this writes the file named by $MARKER: what a planted pickle would do."""

    def __reduce__(self) -> tuple[object, ...]:
        return (write_marker, ())


def ext(code: int, payload: object) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(code, msgspec.msgpack.encode(payload))


def ok(value: object) -> bytes:
    return msgspec.msgpack.encode(["ok", value])


def deep_tuples(depth: int) -> msgspec.msgpack.Ext:
    """A tuple in a tuple in ... far deeper than any value."""
    inner = msgspec.msgpack.Ext(TUPLE, b"\x90")
    for _ in range(depth):
        inner = ext(TUPLE, [inner])
    return inner


MALFORMED = {
    "pickle": (pickle.dumps(("ok", Marker())), "written by an older balsamd as a pickle, which is never unpickled"),
    "pickle protocol 0": (pickle.dumps(("ok", Marker()), protocol=0), "it is not a balsamd result"),
    "truncated": (pack_value({"a": list(range(100))})[:-7], "it is not a balsamd result"),
    "empty": (b"", "it is not a balsamd result"),
    "unknown tag": (msgspec.msgpack.encode(["exec", "x"]), "it is not a balsamd result"),
    "unknown ext": (ok(msgspec.msgpack.Ext(99, b"")), "an unknown extension type 99"),
    "bogus dtype": (ok(ext(ARRAY, ["<O8;os.system", [1], b"12345678"])), "the unsupported dtype '<O8;os.system'"),
    "object dtype": (ok(ext(ARRAY, ["|O8", [1], b"12345678"])), "the unsupported dtype '|O8'"),
    "void dtype": (ok(ext(ARRAY, ["|V8", [1], b"12345678"])), "the unsupported dtype '|V8'"),
    "unknown dtype": (ok(ext(ARRAY, ["<f3", [1], b"123"])), "the unknown dtype '<f3'"),
    "short data": (ok(ext(ARRAY, ["<f8", [1000000], b"12345678"])), "shape [1000000] in 8 bytes (it needs 8000000)"),
    "negative shape": (ok(ext(ARRAY, ["<f8", [-1], b""])), "a numpy array of shape [-1]"),
    "array header": (ok(ext(ARRAY, {"dtype": "<f8"})), "it is not a balsamd result"),
    "scalar size": (ok(ext(SCALAR, ["<f8", b"1234"])), "a numpy float64 scalar of 4 bytes"),
    "tuple of no list": (ok(ext(TUPLE, 5)), "a tuple that does not hold a list of items"),
    "deep tuples": (ok(deep_tuples(5000)), "nested too deeply"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_bytes_that_are_not_a_result_read_as_a_clear_error_and_run_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    blob, says = MALFORMED[name]
    with pytest.raises(UnreadableResult) as raised:
        value_of(job_with(blob))
    assert str(raised.value).startswith("the result of job J1 cannot be read: ")
    assert says in str(raised.value)
    assert describe_result(job_with(blob)) == str(raised.value)
    assert not marker.exists()
    if name == "pickle":  # the planted pickle is live: unpickling it would have run it
        pickle.loads(blob)
        assert marker.read_text() == "ran"


def test_reading_without_numpy_says_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = pack_value([np.arange(3)])
    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy fails
    with pytest.raises(UnreadableResult, match=r"numpy is not installed here \(pip install numpy\)"):
        value_of(job_with(blob))


def test_the_result_of_a_run_is_what_unpack_gives() -> None:
    assert unpack(pack_value(None)) == Returned(None)
    assert unpack(pack_value([1, (2,)])) == Returned([1, (2,)])
