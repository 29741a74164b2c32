"""Balsam's ``Job.objects`` and ``BatchJob.objects``: its names over the one API.

A script written for Balsam runs once its imports name balsamd (``from balsamd import
ApplicationDefinition, Job, BatchJob``) and it calls ``balsamd.connect(...)``.  Each call goes to
the connection ``balsamd.connection.current()`` gives at that moment (the most recent
``balsamd.connect``, else ``$BALSAMD_CENTRAL``): the managers hold nothing and are never rebound.
The jobs and batch jobs they hand out are the connection's own.

Balsam's keywords are the one API's under other names: ``site_name`` and ``site_id`` are
``site`` (a site is known by its name, so a job's ``site_id`` is that name), ``app_id`` is
``app``, ``id`` is ``ids``.  Creating a job of an app this script declares (a class setting
``site``) sends the app to its site first, as ``MyApp.submit`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from balsamd.connection import current
from balsamd.declare import declared_class, sent
from balsamd.validate import Refused

_NAMES = {"site_name": "site", "site_id": "site", "app_id": "app", "id": "ids"}


def _criteria(given: dict[str, Any]) -> dict[str, Any]:
    """Balsam's filter keywords as the one API's (each may also be given by its own name)."""
    criteria: dict[str, Any] = {}
    for key, value in given.items():
        name = _NAMES.get(key, key)
        if name in criteria and criteria[name] != value:
            raise Refused("filter", [f"{key}={value!r:.60} names another {name} than {criteria[name]!r:.60}; give one"])
        criteria[name] = value
    if isinstance(criteria.get("ids"), str):
        criteria["ids"] = [criteria["ids"]]
    return criteria


class JobManager:
    """``Job.objects``."""

    def create(self, workdir: str, app_id: str, **fields: Any) -> Any:
        """A job of ``app_id`` at ``site_name`` (or ``site_id``): the app sent there first when
        this script declares it and has not sent it as it is now."""
        fields = _criteria(fields)
        site = fields.pop("site", None)
        conn = current()
        declared = declared_class(app_id, site)
        if declared is not None:
            sent(declared, conn)
        return conn.jobs.create(app_id, workdir, site=site, **fields)

    def filter(self, **criteria: Any) -> list[Any]:
        return current().jobs.filter(**_criteria(criteria))

    def get(self, id: str | None = None, **criteria: Any) -> Any:
        """The job with this id, or the one job matching ``criteria``."""
        if id is not None and not criteria:
            return current().jobs.get(id)
        found = self.filter(**criteria, **({} if id is None else {"id": id}))
        if len(found) != 1:
            raise LookupError(f"{len(found)} jobs match {_criteria(criteria)}; give criteria that match one job")
        return found[0]

    def as_completed(self, jobs: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
        return current().jobs.as_completed(jobs, timeout=timeout)


class BatchJobManager:
    """``BatchJob.objects``."""

    def create(self, num_nodes: int, wall_time_min: int, **fields: Any) -> Any:
        """A batch job at ``site_id`` (or ``site_name``): ``job_mode``, ``queue``, ``project``,
        ``filter_tags``, ``partitions``, ``optional_params``, checked against its rules."""
        fields = _criteria(fields)
        return current().batch_jobs.create(num_nodes, wall_time_min, **fields)

    def filter(self, **criteria: Any) -> list[Any]:
        return current().batch_jobs.filter(**_criteria(criteria))


class Job:
    """Balsam's ``Job``: ``Job.objects.create / filter / get / as_completed`` over the current
    connection.  The jobs are its own (``job.result()``, ``job.site_id``, ``job.workdir``)."""

    objects: ClassVar[JobManager] = JobManager()


class BatchJob:
    """Balsam's ``BatchJob``: ``BatchJob.objects.create / filter`` over the current connection."""

    objects: ClassVar[BatchJobManager] = BatchJobManager()
