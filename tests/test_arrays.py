"""numpy arrays as job parameters: tagged JSON values that the store checks and run() receives
as arrays again; never pickled."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from balsamd import arrays
from balsamd.launch.python.appcall import call_app
from balsamd.launch.python.protocol import PyTask
from balsamd.models import App, AppKind, AppParameter, Job, JobSpec
from balsamd.results import value_of
from balsamd.store.store import SiteStore
from balsamd.validate import JobSpecError, job_spec

NORM = """\
import numpy as np

from balsamd import ApplicationDefinition


class Norm(ApplicationDefinition):
    def run(self, vec, grid=None):
        return {"norm": float(np.linalg.norm(vec)), "type": type(vec).__name__, "grid": grid}
"""

VALUES = [
    np.array([3.0, 4.0]),
    np.arange(12, dtype=np.int32).reshape(3, 4),
    np.array([True, False]),
    np.array(["a", "bé"]),
    np.array([b"x", b"yz"]),
    np.array(["2026-01-02"], dtype="datetime64[D]"),
    np.array([1 + 2j], dtype=np.complex64),
    np.zeros((0, 3)),
    np.arange(6.0).reshape(2, 3).T,  # not contiguous
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: f"{v.dtype}{list(v.shape)}")
def test_an_array_survives_json_and_comes_back_with_its_dtype_and_shape(value: np.ndarray) -> None:
    sent = json.loads(json.dumps(arrays.encode({"v": value})))
    assert arrays.tagged_problem(sent["v"], "v") is None
    back = arrays.decode(sent)["v"]
    assert back.dtype == value.dtype and back.shape == value.shape
    np.testing.assert_array_equal(back, value)
    back[...] = back  # writable, as the array given was


def test_numpy_scalars_become_plain_values() -> None:
    assert arrays.encode({"n": np.int64(3), "x": [np.float32(0.5)]}) == {"n": 3, "x": [0.5]}


def test_an_array_of_objects_is_refused_naming_the_parameter() -> None:
    with pytest.raises(JobSpecError) as refused:
        job_spec({"app": "Norm", "workdir": "w", "parameters": {"vec": np.array([object()])}})
    assert str(refused.value).startswith("job: parameters['vec'] is a numpy array of dtype object, which a job")


def good() -> dict:
    return arrays.encode(np.arange(3.0))


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"$ndarray": "x"}, " is not an array: $ndarray must hold exactly dtype, shape and base64"),
        ({"$ndarray": {**good()["$ndarray"], "dtype": "|O8"}}, " has the dtype '|O8', which a job cannot carry"),
        ({"$ndarray": {**good()["$ndarray"], "dtype": "<V8"}}, " has the dtype '<V8', which a job cannot carry"),
        ({"$ndarray": {**good()["$ndarray"], "shape": [-1]}}, " has the shape [-1]: a list of at most 32"),
        ({"$ndarray": {**good()["$ndarray"], "base64": "!!"}}, "'s base64 is not base64"),
        ({"$ndarray": {**good()["$ndarray"], "shape": [4]}}, " holds 24 bytes, and a <f8 array of shape [4] needs 32"),
    ],
    ids=["not-an-object", "object-dtype", "void-dtype", "negative-shape", "bad-base64", "short-data"],
)
def test_a_malformed_array_is_refused_by_the_store_naming_where_and_nothing_is_written(
    tmp_path: Path, value: dict, says: str
) -> None:
    store = SiteStore(tmp_path / "s.db")
    store.put_apps([App(name="Norm", kind=AppKind.PYTHON, source="norm.py", class_name="Norm",
                        parameters={"vec": AppParameter()})])  # fmt: skip
    with pytest.raises(JobSpecError) as refused:
        store.create_jobs([JobSpec(app="Norm", workdir="w", parameters={"vec": value})])
    assert f"parameters['vec']{says}" in str(refused.value)
    assert store.count() == 0
    with pytest.raises(arrays.ArrayError):
        arrays.decode({"vec": value})


def test_a_command_app_never_receives_an_array(tmp_path: Path) -> None:
    store = SiteStore(tmp_path / "s.db")
    store.put_apps([App(name="echo", command_template="echo {{ x }}", parameters={"x": AppParameter()})])
    with pytest.raises(JobSpecError) as refused:
        store.create_jobs([job_spec({"app": "echo", "workdir": "w", "parameters": {"x": np.ones(2)}})])
    assert "parameter x holds a numpy array, which only a Python app's run() receives" in str(refused.value)


def test_run_receives_the_array_and_its_result_holds_the_norm(tmp_path: Path) -> None:
    (tmp_path / "norm.py").write_text(NORM)
    spec = job_spec({"app": "Norm", "workdir": "w", "parameters": {"vec": np.array([3.0, 4.0])}})
    assert spec.parameters["vec"]["$ndarray"]["base64"] == base64.b64encode(np.array([3.0, 4.0]).tobytes()).decode()
    job = Job(id="J1", app="Norm", workdir="w", parameters={**spec.parameters, "grid": None})
    task = PyTask(job=job, source=str(tmp_path / "norm.py"), class_name="Norm", cwd=str(tmp_path), output="o", env={})
    outcome = call_app(task)
    job.result = outcome.result
    assert outcome.ok
    assert value_of(job) == {"norm": 5.0, "type": "ndarray", "grid": None}
