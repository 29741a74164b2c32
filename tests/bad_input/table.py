"""What every bad-input case checks, and how a case is written down.

A case is one row: an id, what is given, the exit code or exception type expected, and the
words its message must hold (the field it is about, and what to do).  Every message must also
say what to do in so many words (``TO_DO``).  What a site holds is compared before and after
each case (``Snapshot``): its rows, its settings and its files.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# the verbs of a message that tells its reader what to do
TO_DO = re.compile(
    r"\b(give|use|remove|add|correct|pass|choose|make|restore|save|check|lower|raise|keep|decode|flatten|"
    r"create|replace|shorten|percent-encode|end it|write|close|try|start|rename|delete|change|fix|put|list|send|"
    r"split)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Case:
    """One bad input: ``given`` is what the entry point takes (argv, a file's text, a call)."""

    id: str
    given: Any
    error: int | type[BaseException]
    words: tuple[str, ...]


def case(id: str, given: Any, error: int | type[BaseException], *words: str) -> Case:
    return Case(id, given, error, words)


def params(cases: list[Case]) -> list[Any]:
    """The cases as pytest parameters, each named by its id (ids must not repeat)."""
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    return [pytest.param(c, id=c.id) for c in cases]


def assert_told(message: str, words: tuple[str, ...]) -> None:
    """The message holds every word of the case, and says what to do."""
    missing = [w for w in words if w.lower() not in message.lower()]
    assert not missing, f"{missing} not in {message!r}"
    assert TO_DO.search(message), f"nothing to do in {message!r}"


# files a read may touch without writing anything the site keeps
_VOLATILE = ("balsamd.db-wal", "balsamd.db-shm")


@dataclass(frozen=True)
class Snapshot:
    """What a site holds: rows per table, and every file with its content."""

    rows: dict[str, int]
    files: dict[str, bytes]

    @classmethod
    def of(cls, root: Path) -> Snapshot:
        db = sqlite3.connect(f"file:{root / 'balsamd.db'}?mode=ro", uri=True)
        try:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            rows = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        finally:
            db.close()
        files = {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in _VOLATILE and p.name != "balsamd.db"
        }
        return cls(rows, files)
