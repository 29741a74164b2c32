"""Running a Python app's ``run()`` in this process.

Shared by every way a Python app runs: the launcher's warm workers (``python/worker.py``) and
each rank of a multi-rank MPI launch (``python/rank.py``).
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

from balsamd.apps import import_app_module
from balsamd.arrays import decode
from balsamd.launch.python.protocol import PyResult, PyTask
from balsamd.results import UnsupportedResult, pack_error, pack_value

FRESH_SEC = 1.0  # how long an app class is used before its file is checked for edits again

_classes: dict[tuple[str, str], tuple[float, type]] = {}


def app_class(source: str, class_name: str) -> type:
    """The app's class, its file imported once per process and looked at for edits at most
    every FRESH_SEC (short runs come thousands a second)."""
    now = time.monotonic()
    known = _classes.get((source, class_name))
    if known is not None and now - known[0] < FRESH_SEC:
        return known[1]
    cls = getattr(import_app_module(Path(source)), class_name)
    _classes[source, class_name] = (now, cls)
    return cls


def call_app(task: PyTask) -> PyResult:
    """Import the app (once per process) and call its run() with the job's parameters (numpy
    arrays among them made arrays again)."""
    job = task.job
    try:
        cls = app_class(task.source, task.class_name)
        value = cls(job).run(**decode(job.parameters))
    except BaseException as exc:
        traceback.print_exc()
        return PyResult(job.id, False, pack_error(exc))
    try:
        return PyResult(job.id, True, pack_value(value))
    except UnsupportedResult as exc:  # the run fails saying what a result may hold
        print(exc, file=sys.stderr)
        return PyResult(job.id, False, pack_error(exc.with_traceback(None)))
