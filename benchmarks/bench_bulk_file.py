"""Creating a campaign from a file: ``balsamd job create --from FILE`` against its rows alone.

Each measurement makes a fresh site with one command app taking two parameters and writes a
JSON lines file of N jobs (two parameters, a tag, a workdir each; not timed), then runs the
command in this process as a user types it (timed): reading the file, checking every line, and
one all-or-nothing ``create_jobs`` of the whole file.

baseline side
    the same job rows inserted plainly (``bench_create.raw_inserts``): what SQLite takes for
    them without any check, tag or state.

Metric in jobs/s.
"""

from __future__ import annotations

import json
from time import perf_counter

from click.testing import CliRunner

from balsamd.cli import cli
from balsamd.site import init_site
from benchmarks.bench_create import APP, APP_SOURCE, raw_inserts
from benchmarks.common import Benchmark, Context, rate


def file_creates(ctx: Context, jobs: int) -> float:
    base = ctx.scratch("bulk-file-")
    root = init_site(base / "site", name="bench", scheduler="local").root
    (root / "apps" / f"{APP}.py").write_text(APP_SOURCE)
    path = base / "jobs.jsonl"
    with path.open("w") as out:
        for n in range(jobs):
            out.write(json.dumps({"workdir": f"bench/{n}", "parameters": {"x": n, "y": f"value-{n}"}}) + "\n")
    argv = ["--site", str(root), "job", "create", "--from", str(path), "--app", APP, "-t", "k=v"]
    t0 = perf_counter()
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    elapsed = perf_counter() - t0
    if result.exit_code != 0 or result.stdout != f"created {jobs} job(s)\n":
        raise RuntimeError(f"job create --from: exit {result.exit_code}: {result.output}")
    return rate(jobs, elapsed)


def benchmarks(ctx: Context) -> list[Benchmark]:
    jobs = ctx.size(100_000, quick=10_000, minimum=10)
    return [
        Benchmark(
            name="bulk_file.create",
            unit="jobs/s",
            description=f"`job create --from` a file of {jobs} JSON lines, all or none, vs plain row inserts",
            measure=lambda: file_creates(ctx, jobs),
            baseline=lambda: raw_inserts(ctx, jobs),
        ),
    ]
