"""Run balsamd's benchmarks side by side with their baselines and print one table.

    python benchmarks/run.py [--only NAME ...] [--rounds N] [--quick] [--json] [--list]

Benchmarks live in ``benchmarks/bench_*.py``; the contract is in ``benchmarks/common.py``.
Progress goes to stderr, the table (or the JSON document with ``--json``) to stdout.  Exit
status: 0 when every benchmark ran (whether or not it met its goals), 1 when one crashed,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(BENCH_DIR.parent))

from benchmarks.common import Benchmark, Context, scale_from_env  # noqa: E402

DEFAULT_ROUNDS = 3


# ----- discovery ---------------------------------------------------------------------------


def _import(path: Path) -> ModuleType:
    if path.parent == BENCH_DIR:
        return importlib.import_module(f"benchmarks.{path.stem}")
    name = f"_balsamd_bench_{abs(hash(str(path.parent)))}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def discover(directory: Path, ctx: Context) -> tuple[list[Benchmark], dict[str, str]]:
    """Benchmarks of every bench_*.py in ``directory``, and module -> traceback for failures."""
    found: list[Benchmark] = []
    broken: dict[str, str] = {}
    for path in sorted(directory.glob("bench_*.py")):
        try:
            module = _import(path)
            if hasattr(module, "benchmarks"):
                specs = list(module.benchmarks(ctx))
            elif hasattr(module, "BENCHMARKS"):
                specs = list(module.BENCHMARKS)
            else:
                raise TypeError(f"{path.name} defines neither benchmarks(ctx) nor BENCHMARKS")
            for spec in specs:
                if not isinstance(spec, Benchmark):
                    raise TypeError(f"{path.name} returned {spec!r}, not a Benchmark")
            found.extend(specs)
        except Exception:
            broken[path.stem] = traceback.format_exc()
    names = [b.name for b in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        broken["(duplicates)"] = f"benchmark names defined more than once: {', '.join(duplicates)}\n"
    return found, broken


def matches(name: str, patterns: Sequence[str]) -> bool:
    """``claim`` selects claim.*, ``claim.single`` selects that one; shell globs work too."""
    return any(name == p or name.startswith(p + ".") or fnmatchcase(name, p) for p in patterns)


# ----- running and summarizing -------------------------------------------------------------


@dataclass
class Result:
    bench: Benchmark
    balsamd: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.bench.name


def spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratio(result: Result) -> float | None:
    """balsamd relative to the baseline, oriented so that larger is better for balsamd."""
    ours, theirs = spread(result.balsamd), spread(result.baseline)
    if ours is None or theirs is None:
        return None
    num, den = (theirs["median"], ours["median"]) if result.bench.lower_is_better else (
        ours["median"], theirs["median"])  # fmt: skip
    if den == 0:
        return math.inf if num > 0 else None
    return num / den


def verdict(result: Result) -> str:
    """'error', 'pass', 'miss', or '-' when the benchmark sets no goal."""
    b = result.bench
    if result.error is not None:
        return "error"
    if b.goal_ratio is None and b.goal_value is None:
        return "-"
    ok = True
    if b.goal_ratio is not None:
        r = ratio(result)
        ok = ok and r is not None and r >= b.goal_ratio
    if b.goal_value is not None:
        ours = spread(result.balsamd)
        if ours is None:
            ok = False
        elif b.lower_is_better:
            ok = ok and ours["median"] <= b.goal_value
        else:
            ok = ok and ours["median"] >= b.goal_value
    return "pass" if ok else "miss"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_benchmark(bench: Benchmark, rounds: int, log: Callable[[str], None] = _log) -> Result:
    result = Result(bench)
    sides: list[tuple[str, Callable[[], float], list[float]]] = [("balsamd", bench.measure, result.balsamd)]
    if bench.baseline is not None:
        sides.append(("baseline", bench.baseline, result.baseline))
    try:
        if bench.setup is not None:
            log(f"[{bench.name}] setup")
            bench.setup()
        for i in range(rounds):
            order = sides if i % 2 == 0 else sides[::-1]
            shown = []
            for label, fn, values in order:
                gc.collect()
                value = float(fn())
                values.append(value)
                shown.append(f"{label} {fmt(value)}")
            log(f"[{bench.name}] round {i + 1}/{rounds}: {', '.join(shown)} {bench.unit}")
    except Exception:
        result.error = traceback.format_exc()
        log(f"[{bench.name}] crashed:\n{result.error}")
    finally:
        if bench.teardown is not None:
            try:
                bench.teardown()
            except Exception:
                text = traceback.format_exc()
                result.error = (result.error or "") + text
                log(f"[{bench.name}] teardown crashed:\n{text}")
    return result


# ----- output ------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    """Three significant digits with a k / M suffix: 143252 -> 143k, 39.06 -> 39.1."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    size = abs(value)
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= factor:
            return f"{value / factor:.3g}{suffix}"
    if size >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _side(values: Sequence[float]) -> str:
    s = spread(values)
    if s is None:
        return "-"
    if len(values) == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}..{fmt(s['max'])})"


def goal_text(bench: Benchmark) -> str:
    parts = []
    if bench.goal_ratio is not None:
        parts.append(f"ratio >= {bench.goal_ratio:g}")
    if bench.goal_value is not None:
        op = "<=" if bench.lower_is_better else ">="
        parts.append(f"{op} {fmt(bench.goal_value)} {bench.unit}")
    return ", ".join(parts) or "-"


def _ratio_text(q: float | None) -> str:
    if q is None:
        return "-"
    if math.isinf(q):
        return "inf"
    return f"{q:.2f}" if q >= 0.1 else f"{q:.2g}"


TABLE_HEADER = ("metric", "unit", "balsamd", "baseline", "ratio", "goal", "result")


def table_rows(results: Sequence[Result]) -> list[tuple[str, ...]]:
    rows = []
    for r in results:
        q = ratio(r)
        rows.append((
            r.name, r.bench.unit, _side(r.balsamd), _side(r.baseline),
            _ratio_text(q),
            goal_text(r.bench), verdict(r),
        ))  # fmt: skip
    return rows


def format_table(results: Sequence[Result]) -> str:
    """A Markdown pipe table, readable in a terminal and pastable into docs."""
    rows = [TABLE_HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows[1:])
    return "\n".join(out)


def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def to_json(results: Sequence[Result], settings: dict[str, object]) -> dict[str, object]:
    return {
        "machine": machine(),
        "settings": settings,
        "results": [
            {
                "name": r.name,
                "unit": r.bench.unit,
                "description": r.bench.description,
                "lower_is_better": r.bench.lower_is_better,
                "balsamd": {**(spread(r.balsamd) or {}), "values": r.balsamd},
                "baseline": None if r.bench.baseline is None else
                {**(spread(r.baseline) or {}), "values": r.baseline},
                "ratio": ratio(r),
                "goal_ratio": r.bench.goal_ratio,
                "goal_value": r.bench.goal_value,
                "result": verdict(r),
                "error": r.error,
            }
            for r in results
        ],
    }  # fmt: skip


# ----- command line ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Run balsamd benchmarks against same-run baselines and print one table.",
    )
    p.add_argument("--only", nargs="+", action="extend", metavar="NAME", default=[],
                   help="run only these benchmarks: a topic (claim), a full name, or a glob")  # fmt: skip
    p.add_argument("--rounds", type=int, default=None,
                   help=f"rounds per benchmark (default {DEFAULT_ROUNDS}, 1 with --quick)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="one round with smaller sizes")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--scale", type=float, default=None,
                   help="multiply every benchmark size (default: $BALSAMD_BENCH_SCALE or 1)")  # fmt: skip
    p.add_argument("--peers", action="store_true",
                   help="also compare with Parsl and HyperQueue (installed once from PyPI into their own "
                        "virtual environments; see bench_peers.py)")  # fmt: skip
    p.add_argument("--path", type=Path, default=BENCH_DIR,
                   help="directory to discover bench_*.py in (default: this one)")  # fmt: skip
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    try:
        args.scale = scale_from_env() if args.scale is None else args.scale
    except ValueError as exc:
        p.error(str(exc))
    if args.scale <= 0:
        p.error("--scale must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peers:
        os.environ["BALSAMD_BENCH_PEERS"] = "1"  # read by bench_peers.py
    ctx = Context(quick=args.quick, scale=args.scale)
    try:
        found, broken = discover(args.path, ctx)
        for module, text in broken.items():
            _log(f"[{module}] could not load its benchmarks:\n{text}")
        if args.only:
            chosen = [b for b in found if matches(b.name, args.only)]
            if not chosen and not broken:
                known = ", ".join(b.name for b in found) or "none"
                _log(f"no benchmark matches {' '.join(args.only)}; known: {known}")
                return 2
        else:
            chosen = found
        if args.list:
            for b in chosen:
                print(f"{b.name}\t{b.unit}\t{goal_text(b)}\t{b.description}")
            return 1 if broken else 0
        results = [run_benchmark(b, args.rounds) for b in chosen]
    finally:
        if ctx.tmpdir is not None:
            shutil.rmtree(ctx.tmpdir, ignore_errors=True)
    settings = {"rounds": args.rounds, "quick": args.quick, "scale": args.scale}
    if args.json:
        doc = to_json(results, settings)
        doc["load_errors"] = broken
        print(json.dumps(doc, indent=2))
    else:
        m = machine()
        print(
            f"balsamd benchmarks: Python {m['python']} on {m['system']} {m['machine']}, "
            f"{m['cpus']} CPUs; rounds={args.rounds}, quick={args.quick}, scale={args.scale:g}"
        )
        print("balsamd and baseline: median (min..max) over the rounds; ratio of medians\n")
        print(format_table(results))
        for module in broken:
            print(f"\nmodule {module} failed to load (see stderr)")
    return 1 if broken or any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
