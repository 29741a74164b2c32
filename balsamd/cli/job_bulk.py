"""``balsamd job create --from FILE``: many jobs from JSON lines or CSV, created all or none.

Every line is read and checked (its fields, their types) before anything is sent, and every
bad line is told by its number; then all the jobs go to the store in one ``create_jobs``, one
transaction that checks each against its app and the site's rules and creates all of them or
none.  A refusal there is told by the line too.  Nothing is ever half-written: a file is one
request, whatever its size (a store creates 100,000 jobs in one transaction in seconds).

A line's fields win over the command line's options, which fill in what lines leave out; the
dictionaries (parameters, tags, launch parameters, transfers) are merged key by key.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

import click

from balsamd import ids
from balsamd.cli.progress import progress
from balsamd.models import JobSpec
from balsamd.validate import JobSpecError, SiteRules, build_job, job_spec

MERGED = ("parameters", "tags", "launch_params", "transfers")  # defaults merged key by key
INTS = ("num_nodes", "ranks_per_node", "threads_per_rank", "threads_per_core", "node_packing_count")
FLOATS = ("gpus_per_rank", "wall_time_min")
CSV_COLUMNS = ("app", "workdir", *INTS, *FLOATS, "parents")
CSV_PREFIXES = {"tag.": "tags", "param.": "parameters", "launch.": "launch_params", "transfer.": "transfers"}
ERRORS_SHOWN = 20
CHECKED_PER_STEP = 1000  # lines between two updates of the bar


class FileProblems(click.ClickException):
    """Lines of the file that are wrong, each with its number; nothing was created."""

    def __init__(self, problems: list[str], bad_lines: int) -> None:
        shown = problems[:ERRORS_SHOWN]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(
            f"{bad_lines} line(s) of the file are wrong; no job was created:\n  " + "\n  ".join(shown) + more
        )


Found = list[tuple[int, dict[str, Any]]]  # requests with their line numbers


def read_requests(text: str) -> tuple[Found, list[str], bool]:
    """Each request of ``text`` (JSON lines, or CSV with a header) with its line number, what
    is wrong with the lines that are no request, and whether it was CSV (whose values are text)."""
    first = next((line.lstrip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return *_json_lines(text), False
    return *_csv_rows(text), True


def _json_lines(text: str) -> tuple[Found, list[str]]:
    found, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {number}: not JSON ({exc}); give one job's fields as a JSON object per line")
            continue
        if not isinstance(value, dict):
            problems.append(f"line {number}: a JSON {type(value).__name__}, not an object of a job's fields")
            continue
        found.append((number, value))
    return found, problems


def _csv_rows(text: str) -> tuple[Found, list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    unknown = [c for c in header if c not in CSV_COLUMNS and not c.startswith(tuple(CSV_PREFIXES))]
    if unknown:
        accepted = ", ".join(CSV_COLUMNS) + ", " + ", ".join(f"{p}KEY" for p in CSV_PREFIXES)
        return [], [f"line 1: unknown column(s) {', '.join(map(repr, unknown))}; the columns are {accepted}"]
    if len(set(header)) < len(header):
        twice = sorted({c for c in header if header.count(c) > 1})
        return [], [f"line 1: column(s) {', '.join(twice)} given twice; give each once"]
    found, problems = [], []
    number = reader.line_num
    for row in reader:
        number, start = reader.line_num, number + 1  # a quoted cell may span lines: name the first
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {start}: {len(row)} cells for {len(header)} columns; give one per column")
            continue
        raw, bad = _csv_request(dict(zip(header, row, strict=True)))
        if bad:
            problems.append(f"line {start}: {bad}")
        else:
            found.append((start, raw))
    return found, problems


def _csv_request(cells: dict[str, str]) -> tuple[dict[str, Any], str]:
    """A request of a CSV row's cells (an empty cell is not given), or what is wrong."""
    raw: dict[str, Any] = {}
    for column, cell in cells.items():
        if cell == "":
            continue
        if column in INTS or column in FLOATS:
            try:
                raw[column] = int(cell) if column in INTS else float(cell)
            except ValueError:
                kind = "a whole number" if column in INTS else "a number"
                return {}, f"{column}: {cell!r:.40} is not {kind}"
        elif column == "parents":
            raw["parent_ids"] = cell.split()
        elif column in ("app", "workdir"):
            raw[column] = cell
        else:
            prefix, _, key = column.partition(".")
            raw.setdefault(CSV_PREFIXES[prefix + "."], {})[key] = cell
    return raw, ""


def with_defaults(raw: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A line's request, with what it leaves out taken from the command line's options."""
    merged = {**defaults, **raw}
    for name in MERGED:
        if isinstance(defaults.get(name), dict) and isinstance(raw.get(name), dict):
            merged[name] = {**defaults[name], **raw[name]}
    return merged


def check_requests(
    found: Found, defaults: dict[str, Any], typed: Callable[[str, str], object], as_text: bool,
    problems: list[str],
) -> list[JobSpec]:  # fmt: skip
    """Every line as a JobSpec, with the command line's defaults; FileProblems naming each
    bad line (and those ``problems`` already found) when any is wrong.  ``typed(app, text)``
    is a parameter's value for that app from text (the command line's, and CSV's when
    ``as_text``): Python apps take JSON values, commands text."""
    specs = []
    bad = len(problems)
    texts = defaults.get("parameters", {})
    with progress(len(found), "checking") as bar:
        for n, (number, raw) in enumerate(found, 1):
            app = raw.get("app", defaults.get("app"))
            if isinstance(app, str):
                given = raw.get("parameters")
                if as_text and isinstance(given, dict):
                    raw = {**raw, "parameters": {k: typed(app, v) for k, v in given.items()}}
                defaults = {**defaults, "parameters": {k: typed(app, v) for k, v in texts.items()}}
            try:
                specs.append(job_spec(with_defaults(raw, defaults), f"line {number}"))
            except JobSpecError as exc:
                problems.append(str(exc))
                bad += 1
            if n % CHECKED_PER_STEP == 0 or n == len(found):
                bar.show(n, f"{bad} bad")
    if problems:
        raise FileProblems(problems, bad)
    if not specs:
        raise click.ClickException("the file holds no job: give one per line (JSON objects, or CSV under a header)")
    return specs


def create_from(conn: Any, site: str | None, text: str, defaults: dict[str, Any],
                typed: Callable[[str, str], object]) -> list[Any]:  # fmt: skip
    """The jobs of ``text``, created all or none, with the command line's ``defaults``."""
    found, problems, as_text = read_requests(text)
    specs = check_requests(found, defaults, typed, as_text, problems)
    lost = _lost_parents(conn, site, specs, [number for number, _ in found])
    if lost:
        raise FileProblems(lost, len(lost))
    lines = [number for number, _ in found]
    try:
        return conn.jobs.bulk_create(specs, site=site)
    except JobSpecError as exc:
        refused = by_line(exc, lines)
        if refused is exc:  # not one line's fault (e.g. two lines share a workdir)
            raise
    # the store stops at the first job it refuses: the others are told too, checked the same way
    every = _refusals(conn, site, specs, lines)
    if len(every) > 1:
        raise FileProblems(every, len(every))
    raise refused


def _lost_parents(conn: Any, site: str | None, specs: list[JobSpec], lines: list[int]) -> list[str]:
    """Lines naming a parent that is no job (the store would refuse the file without a line)."""
    wanted = sorted({p for spec in specs for p in spec.parent_ids})
    if not wanted:
        return []
    known = {j.id for j in conn.jobs.filter(ids=wanted, site=site)}
    return [
        f"line {number}: parent_ids: no job {parent}; give full ids of jobs of the site (`balsamd job ls`)"
        for number, spec in zip(lines, specs, strict=True)
        for parent in spec.parent_ids
        if parent not in known
    ]


def _refusals(conn: Any, site: str | None, specs: list[JobSpec], lines: list[int]) -> list[str]:
    """What the site's rules refuse of each line (``validate.build_job``, as the store checks)."""
    from balsamd.api import Site  # the one kind of connection whose rules are its own settings

    if isinstance(conn, Site):
        apps, rules, owner = conn.apps.sync(), SiteRules.of(conn.settings), ""
    else:
        apps, rules = conn.site_rules(site)
        owner = conn.user
    problems = []
    for number, spec in zip(lines, specs, strict=True):
        try:
            build_job(ids.new_id(), spec, apps, rules, f"line {number}", owner=owner)
        except JobSpecError as exc:
            problems.append(str(exc))
    return problems


_JOB_N = re.compile(r"job (\d+)")


def by_line(exc: JobSpecError, lines: list[int]) -> JobSpecError:
    """The store's refusal of request n of a bulk create, told by the line it came from."""
    match = _JOB_N.fullmatch(exc.where)
    if match is None or int(match[1]) >= len(lines):
        return exc
    return JobSpecError(f"line {lines[int(match[1])]}", exc.problems)
