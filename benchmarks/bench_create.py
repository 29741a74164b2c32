"""Job creation throughput: what checking every request costs against writing the rows plainly.

Each measurement makes a fresh site store with one command app taking two parameters, then
creates N jobs in chunks of 10,000 (timed), each with two parameters, a tag and its own workdir:

balsamd sides
    ``create.store``: ``SiteStore.create_jobs`` with ``JobSpec`` structs, as the daemon's RPC
    hands them over: the store's checks, the rows, their tags and first states.
    ``create.api``: ``site.jobs.bulk_create`` with dicts, as a user's program writes them: the
    API's checks of each request too (``validate.job_spec``).

baseline side
    one apsw connection with the store's pragmas inserting the same job rows, one
    ``executemany`` per chunk in a ``BEGIN IMMEDIATE`` transaction, into a table with the
    job's columns and no index: what the rows cost SQLite without any check, tag or state.

Metrics in jobs/s.
"""

from __future__ import annotations

from pathlib import Path
from time import perf_counter
from typing import Any

import apsw

import balsamd
from balsamd import ids
from balsamd.models import JOB_COLUMNS, App, AppParameter, Job, JobSpec, job_row
from balsamd.site import init_site
from balsamd.store.store import SiteStore
from benchmarks.common import Benchmark, Context, rate

APP = "bench_echo"
CHUNK = 10_000
TEMPLATE = "echo {{ x }} {{ y }}"
APP_SOURCE = f"""
from balsamd import ApplicationDefinition


class {APP}(ApplicationDefinition):
    command_template = {TEMPLATE!r}
"""


def _request(n: int) -> dict[str, Any]:
    return {"app": APP, "workdir": f"bench/{n}", "parameters": {"x": n, "y": f"value-{n}"}, "tags": {"k": "v"}}


def _check(made: int, wanted: int, side: str) -> None:
    if made != wanted:
        raise RuntimeError(f"{side} created {made} jobs, expected {wanted}")


def store_creates(ctx: Context, jobs: int) -> float:
    store = SiteStore(ctx.scratch("create-") / "store.db")
    try:
        params = {"x": AppParameter(), "y": AppParameter()}
        store.put_apps([App(name=APP, command_template=TEMPLATE, parameters=params)])
        made = 0
        t0 = perf_counter()
        for start in range(0, jobs, CHUNK):
            specs = [JobSpec(**_request(n)) for n in range(start, min(jobs, start + CHUNK))]
            made += len(store.create_jobs(specs))
        elapsed = perf_counter() - t0
    finally:
        store.close()
    _check(made, jobs, "SiteStore.create_jobs")
    return rate(made, elapsed)


def api_creates(ctx: Context, jobs: int) -> float:
    root = init_site(ctx.scratch("create-") / "site", name="bench", scheduler="local").root
    (root / "apps" / f"{APP}.py").write_text(APP_SOURCE)
    with balsamd.connect(root) as site:
        assert isinstance(site, balsamd.Site)
        site.apps.sync()
        made = 0
        t0 = perf_counter()
        for start in range(0, jobs, CHUNK):
            made += len(site.jobs.bulk_create(_request(n) for n in range(start, min(jobs, start + CHUNK))))
        elapsed = perf_counter() - t0
    _check(made, jobs, "bulk_create")
    return rate(made, elapsed)


def raw_inserts(ctx: Context, jobs: int) -> float:
    path: Path = ctx.scratch("create-") / "raw.db"
    conn = apsw.Connection(str(path))
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"CREATE TABLE jobs ({', '.join(JOB_COLUMNS)})")
        insert = f"INSERT INTO jobs VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
        made = 0
        t0 = perf_counter()
        for start in range(0, jobs, CHUNK):
            count = min(jobs, start + CHUNK) - start
            rows = [job_row(Job(id=i, **_request(start + k))) for k, i in enumerate(ids.new_ids(count))]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows)
            conn.execute("COMMIT")
            made += count
        elapsed = perf_counter() - t0
    finally:
        conn.close()
    _check(made, jobs, "raw inserts")
    return rate(made, elapsed)


def benchmarks(ctx: Context) -> list[Benchmark]:
    jobs = ctx.size(50_000, quick=10_000, minimum=10)
    return [
        Benchmark(
            name="create.store",
            unit="jobs/s",
            description=f"{jobs} jobs by SiteStore.create_jobs in chunks of {CHUNK} vs plain row inserts",
            measure=lambda: store_creates(ctx, jobs),
            baseline=lambda: raw_inserts(ctx, jobs),
        ),
        Benchmark(
            name="create.api",
            unit="jobs/s",
            description=f"{jobs} jobs by site.jobs.bulk_create of dicts in chunks of {CHUNK} vs plain row inserts",
            measure=lambda: api_creates(ctx, jobs),
            baseline=lambda: raw_inserts(ctx, jobs),
        ),
    ]
