"""``scripts/chaos.py``: rounds of a campaign under random kill -9, then the checks.

Exit status: 0 when every round converged and passed every check, 1 when one did not (its
failures are listed, its files kept), 2 for a usage error.  Progress goes to stderr; the
table (or the JSON document with ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_sync import PostgresServer, PostgresUnavailable
from benchmarks.chaos import report
from benchmarks.chaos.rounds import Round, RoundConfig, RoundResult
from benchmarks.chaos.schedule import FaultKind


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="chaos.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds to run (default 3)")
    p.add_argument("--jobs", type=int, default=2000, help="jobs a round (default 2000)")
    p.add_argument("--seed", type=int, help="seed of the whole run (default: a new one, printed)")
    p.add_argument("--first-round", type=int, default=0, help="number of the first round (to replay one)")
    p.add_argument("--window", type=float, default=30.0, help="seconds faults fall in, each round (default 30)")
    p.add_argument("--mean-gap", type=float, default=2.5, help="mean seconds between faults (default 2.5)")
    p.add_argument("--faults", default=",".join(k.name.lower() for k in FaultKind),
                   help="kinds of fault: daemon,serial,mpi,postgres (default: all)")  # fmt: skip
    p.add_argument("--session-expiry", type=float, default=5.0, help="launcher session expiry, s (default 5)")
    p.add_argument("--converge-timeout", type=float, default=180.0, help="s a round may take to settle")
    p.add_argument("--workdir", type=Path, help="where rounds keep their files (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep every round's files and database, not only failed ones")
    p.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown")
    args = p.parse_args(argv)
    try:
        args.kinds = tuple(FaultKind[name.strip().upper()] for name in args.faults.split(",") if name.strip())
    except KeyError as exc:
        p.error(f"--faults: unknown kind {exc.args[0].lower()!r}; use daemon, serial, mpi, postgres")
    if args.rounds < 1 or args.jobs < 50:
        p.error("--rounds must be at least 1 and --jobs at least 50")
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="balsamd-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"chaos: seed {args.seed}, {args.rounds} round(s) of {args.jobs} jobs in {workdir}", file=sys.stderr)
    server = PostgresServer()
    results: list[RoundResult] = []
    try:
        server.start()
    except (PostgresUnavailable, OSError) as exc:
        print(f"chaos: needs a PostgreSQL server: {exc}", file=sys.stderr)
        return 2
    try:
        for number in range(args.first_round, args.first_round + args.rounds):
            cfg = RoundConfig(
                seed=args.seed, number=number, jobs=args.jobs, window=args.window, mean_gap=args.mean_gap,
                session_expiry=args.session_expiry, converge_timeout=args.converge_timeout, kinds=args.kinds,
                keep=args.keep,
            )  # fmt: skip
            result = Round(server, workdir, cfg).run()
            results.append(result)
            print(report.text_table([report.row(result)]), file=sys.stderr)
            if not result.ok:
                print(report.failures(result), file=sys.stderr)
    finally:
        server.cleanup()
    rows = [*map(report.row, results), report.summary_row(results)]
    if args.json:
        print(json.dumps(report.as_json(results), indent=2))
    elif args.markdown:
        print(report.markdown_table(rows))
    else:
        print(report.text_table(rows))
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(report.failures(r))
    return 1 if failed else 0
