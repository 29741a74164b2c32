"""Run benchmarks on two commits alternately and print how the second compares with the first.

    python benchmarks/compare.py --base REV [--head REV] [--only NAME ...] [--rounds N] [--scale X] [--json]

A change to a hot path is judged against the code before it, measured in the same sitting on
the same machine: each round runs ``benchmarks/run.py --rounds 1 --json`` of the base commit,
then of the head (the working tree unless ``--head`` names a commit), in alternating order from
round to round.  Each commit runs its own benchmarks with its own code (``PYTHONPATH``), in
the project's virtual environment.  For every benchmark the table gives each side's median
value and ratio against its same-run baseline, and head / base (above 1: the head is ahead,
whichever way the unit goes).  Exit status: 0 when every run completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ONLY = ("claim", "launcher", "rpc")
NOISE = 0.9  # head / base below this is called out as a possible regression


@dataclass
class Side:
    label: str
    tree: Path
    values: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    units: dict[str, tuple[str, bool]] = field(default_factory=dict)


@contextlib.contextmanager
def checkout(rev: str, scratch: Path) -> Iterator[Path]:
    """A detached worktree of ``rev``, removed afterwards."""
    tree = Path(tempfile.mkdtemp(prefix="tree-", dir=scratch)) / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def run_once(side: Side, only: Sequence[str], python: str, scale: float | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(side.tree)}
    argv = [python, str(side.tree / "benchmarks" / "run.py"), "--rounds", "1", "--json", "--only", *only]
    if scale is not None:
        argv += ["--scale", str(scale)]
    print(f"[{side.label}] {' '.join(only)}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, cwd=side.tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side.label}: benchmarks/run.py exited {done.returncode}\n{done.stderr[-3000:]}")
    for result in json.loads(done.stdout)["results"]:
        name = result["name"]
        side.units[name] = (result["unit"], result["lower_is_better"])
        side.values.setdefault(name, []).extend(result["balsamd"]["values"])
        if result["ratio"] is not None:
            side.ratios.setdefault(name, []).append(result["ratio"])


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def rows(base: Side, head: Side) -> list[dict[str, object]]:
    out = []
    for name in sorted(set(base.values) | set(head.values)):
        unit, lower = head.units.get(name) or base.units[name]
        b, h = median(base.values.get(name, [])), median(head.values.get(name, []))
        change = None if not b or not h else (b / h if lower else h / b)
        out.append({
            "name": name, "unit": unit, "base": b, "head": h, "head_vs_base": change,
            "base_ratio": median(base.ratios.get(name, [])), "head_ratio": median(head.ratios.get(name, [])),
            "base_values": base.values.get(name, []), "head_values": head.values.get(name, []),
        })  # fmt: skip
    return out


def _num(x: object) -> str:
    if x is None:
        return "-"
    assert isinstance(x, float | int)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def table(found: list[dict[str, object]], base: str, head: str) -> str:
    header = ("metric", "unit", f"base {base}", f"head {head}", "head/base", "base ratio", "head ratio", "")
    lines = [header]
    for r in found:
        change = r["head_vs_base"]
        note = "possible regression" if isinstance(change, float) and change < NOISE else ""
        lines.append((
            str(r["name"]), str(r["unit"]), _num(r["base"]), _num(r["head"]),
            "-" if change is None else f"{change:.2f}", _num(r["base_ratio"]), _num(r["head_ratio"]), note,
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/compare.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the commit to compare against")
    p.add_argument("--head", help="the commit to compare (default: the working tree)")
    p.add_argument("--only", nargs="+", default=list(DEFAULT_ONLY), help="benchmarks to run (as run.py --only)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (each side runs once per round)")
    p.add_argument("--scale", type=float, help="multiply every benchmark's size (as run.py --scale)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").is_dir() else sys.executable
    with tempfile.TemporaryDirectory(prefix="balsamd-compare-") as scratch, contextlib.ExitStack() as stack:
        base = Side(f"base {args.base}", stack.enter_context(checkout(args.base, Path(scratch))))
        head_tree = ROOT if args.head is None else stack.enter_context(checkout(args.head, Path(scratch)))
        head = Side(f"head {args.head or 'working tree'}", head_tree)
        try:
            for n in range(args.rounds):
                for side in (base, head) if n % 2 == 0 else (head, base):
                    run_once(side, args.only, python, args.scale)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
    found = rows(base, head)
    if args.json:
        print(json.dumps({"base": args.base, "head": args.head or "working tree", "rounds": args.rounds,
                          "results": found}, indent=2))  # fmt: skip
    else:
        print(table(found, args.base, args.head or "(tree)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
