"""A Python app's run() called as workers and ranks call it: what it returns becomes a result,
and a value a result cannot hold fails the run saying what can."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from balsamd.launch.python.appcall import call_app
from balsamd.launch.python.protocol import PyTask
from balsamd.models import Job
from balsamd.results import RemoteError, value_of

APP = """\
import numpy as np

from balsamd import ApplicationDefinition


class Gives(ApplicationDefinition):
    def run(self, what: str):
        if what == "array":
            return {"grid": np.arange(6.0).reshape(2, 3)}
        if what == "set":
            return {"seen": {1, 2}}
        raise LookupError(what)
"""


def run(tmp_path: Path, what: str) -> tuple[bool, Job]:
    source = tmp_path / "gives.py"
    source.write_text(APP)
    job = Job(id=f"J-{what}", app="Gives", workdir="w", parameters={"what": what})
    outcome = call_app(PyTask(job=job, source=str(source), class_name="Gives", cwd=str(tmp_path), output="o", env={}))
    job.result = outcome.result
    return outcome.ok, job


def test_a_returned_array_is_the_result(tmp_path: Path) -> None:
    ok, job = run(tmp_path, "array")
    assert ok
    np.testing.assert_array_equal(value_of(job)["grid"], np.arange(6.0).reshape(2, 3))


def test_a_value_a_result_cannot_hold_fails_the_run_saying_what_can(tmp_path: Path, capfd) -> None:
    ok, job = run(tmp_path, "set")
    assert not ok
    with pytest.raises(RemoteError) as raised:
        value_of(job)
    assert raised.value.type_name == "balsamd.results.UnsupportedResult"
    assert raised.value.message.startswith("the return value['seen'] is of type set; a result may hold None, bool,")
    assert "balsamd/results.py" not in "".join(raised.value.__notes__)  # no traceback of balsamd's own
    assert "the return value['seen'] is of type set" in capfd.readouterr().err  # in the job's output


def test_an_exception_is_the_result(tmp_path: Path) -> None:
    ok, job = run(tmp_path, "boom")
    assert not ok
    with pytest.raises(RemoteError, match=r"^LookupError: boom\n"):
        value_of(job)
