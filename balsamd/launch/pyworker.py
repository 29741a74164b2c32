"""Running a Python app's ``run()`` in this process.

Shared by every way a Python app runs: the launcher's warm workers (``balsamd.launch.pyserve``)
and each rank of a multi-rank MPI launch (``balsamd.launch.pyrun``).
"""

from __future__ import annotations

import traceback
from pathlib import Path

from balsamd.apps import import_app_module
from balsamd.launch.pyproto import PyResult, PyTask
from balsamd.results import pack_error, pack_value


def call_app(task: PyTask) -> PyResult:
    """Import the app (once per process) and call its run() with the job's parameters."""
    job = task.job
    try:
        cls = getattr(import_app_module(Path(task.source)), task.class_name)
        return PyResult(job.id, True, pack_value(cls(job).run(**job.parameters)))
    except BaseException as exc:
        traceback.print_exc()
        return PyResult(job.id, False, pack_error(exc))
