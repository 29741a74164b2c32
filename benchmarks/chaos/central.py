"""The central PostgreSQL of a chaos run: one server for every round, a fresh database each.

The server is a real one (``PostgresServer``); the runner kills its postmaster with SIGKILL and
starts it again on the same port and data directory.  Each round's database is made the way an
administrator makes one: ``balsamd central init``, ``central add-site`` with the site's role and
``central add-user`` for the user who creates jobs remotely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg

from balsamd.models import JOB_COLUMNS, IntentOutcome, Job
from balsamd.states import JobState
from benchmarks.bench_sync import PostgresServer
from benchmarks.chaos import processes
from benchmarks.chaos.cli import balsamd_cli

USER = "chaos_user"  # the central user who creates jobs during the run


class CentralDatabase:
    """One round's database on the run's server, and the administrator's view of it."""

    def __init__(self, server: PostgresServer, name: str, site: str) -> None:
        self.server = server
        self.name = name
        self.site = site
        self.site_role = f"{site}_site"

    def create(self) -> None:
        self.server.create_database(self.name)
        admin = self.dsn()
        balsamd_cli("central", "init", admin)
        balsamd_cli("central", "add-site", admin, self.site, "--role", self.site_role)
        balsamd_cli("central", "add-user", admin, USER)

    def drop(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.server.drop_database(self.name)

    def dsn(self, role: str = "postgres") -> str:
        return self.server.dsn(user=role, dbname=self.name)

    @contextlib.contextmanager
    def admin(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            yield conn

    def rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def jobs(self) -> dict[str, Job]:
        """The site's job rows as the site keeps them: a job made at the site is owned by the
        site's role in central and by nobody ("") at the site."""
        rows = self.rows(f"SELECT {', '.join(JOB_COLUMNS)} FROM balsamd.jobs WHERE site = %s", (self.site,))
        found = {}
        for row in rows:
            data = dict(zip(JOB_COLUMNS, row, strict=True))
            if data["result"] is not None:
                data["result"] = bytes(data["result"])
            if data["owner"] == self.site_role:
                data["owner"] = ""
            job = msgspec.convert(data, Job)
            found[job.id] = job
        return found

    def versions(self) -> dict[str, int]:
        return dict(self.rows("SELECT id, version FROM balsamd.jobs WHERE site = %s", (self.site,)))

    def events(self, store_id: str) -> list[tuple[Any, ...]]:
        """(id, job, from, to, ts, reason) of every event the site pushed from its store."""
        return self.rows(
            "SELECT id, job_id, from_state, to_state, ts, reason FROM balsamd.events "
            "WHERE site = %s AND store_id = %s ORDER BY id",
            (self.site, store_id),
        )

    def event_count(self, store_id: str) -> int:
        return self.rows(
            "SELECT count(*) FROM balsamd.events WHERE site = %s AND store_id = %s", (self.site, store_id)
        )[0][0]

    def kills(self) -> dict[str, JobState]:
        """Where each applied kill intent left its job, as the site acknowledged it."""
        found = {}
        for job_id, outcome in self.rows(
            "SELECT job_id, outcome FROM balsamd.intents WHERE site = %s AND kind = 'kill' AND outcome IS NOT NULL",
            (self.site,),
        ):
            found.update(msgspec.convert(outcome, IntentOutcome).states)
            found.setdefault(job_id, JobState.JOB_FINISHED)
        return found

    def pending_intents(self) -> list[tuple[str, str, str]]:
        """(id, kind, job id) of the intents the site has not acknowledged."""
        return self.rows(
            "SELECT id, kind, job_id FROM balsamd.intents WHERE site = %s AND applied_at IS NULL ORDER BY id",
            (self.site,),
        )


def kill_postmaster(server: PostgresServer) -> int | None:
    """SIGKILL the postmaster and every process it started, as if its host went down; returns the
    postmaster's pid, or None when none runs.  The server is marked stopped."""
    try:
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not processes.alive(pid) or "postgres" not in processes.cmdline(pid):
        return None
    backends = processes.children(pid)
    processes.kill(pid)
    for child in backends:
        processes.kill(child)
    # a backend still attached to the old shared memory keeps a new postmaster from starting
    processes.wait_gone([pid, *backends])
    server.running = False
    return pid
