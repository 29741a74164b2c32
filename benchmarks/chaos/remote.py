"""Jobs created during the run through the central database, as a central user on a laptop.

A wave is one ``bulk_create`` (one transaction).  When PostgreSQL is away, or dies under the
call so that nobody knows whether it committed, the wave is looked up by its tag before it is
sent again: a wave is created once, never twice.  Kills are looked up the same way.
"""

from __future__ import annotations

import psycopg

import balsamd
from balsamd.sync.remote import CentralConnection
from balsamd.sync.schema import CentralError
from balsamd.validate import JobSpecError
from benchmarks.chaos.campaign import Wave


class NotYet(Exception):
    """The wave could not be created now (the database is away, or the site has not published
    its apps yet); try again later."""


class RemoteUser:
    def __init__(self, dsn: str, site: str) -> None:
        self.dsn = dsn
        self.site = site

    def create(self, number: int, wave: Wave) -> dict[str, str]:
        """Create the wave's jobs at the site (unless an earlier try did); returns key -> id."""
        tag = {"wave": str(number)}
        try:
            with self._connect() as conn:
                found = self._existing(conn, tag)
                if found:
                    return found
                made = conn.jobs.bulk_create([j.spec([]) for j in wave.jobs], site=self.site)
                return {j.key: m.id for j, m in zip(wave.jobs, made, strict=True)}
        except (psycopg.Error, CentralError, JobSpecError) as exc:
            raise NotYet(str(exc).strip()) from None

    def kill(self, job_ids: list[str]) -> None:
        """Ask the site to kill these jobs (unless an earlier try did)."""
        try:
            with self._connect() as conn:
                asked = conn.execute(
                    "SELECT job_id FROM balsamd.intents WHERE kind = 'kill' AND job_id = ANY(%s)", (job_ids,)
                )
                left = [i for i in job_ids if i not in {row[0] for row in asked}]
                if left:
                    conn.jobs.kill(left)
        except (psycopg.Error, CentralError) as exc:
            raise NotYet(str(exc).strip()) from None

    def _connect(self) -> CentralConnection:
        conn = balsamd.connect(self.dsn)
        assert isinstance(conn, CentralConnection)
        return conn

    def _existing(self, conn: CentralConnection, tag: dict[str, str]) -> dict[str, str]:
        return {j.tags["key"]: j.id for j in conn.jobs.filter(site=self.site, tags=tag)}
