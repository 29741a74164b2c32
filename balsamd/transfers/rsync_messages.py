"""Which item each of rsync's messages is about.

rsync reports a file it could not move in a line that names its path, mostly quoted, for example
``rsync: [sender] link_stat "/base/in/3.dat" failed: No such file or directory (2)``,
``skipping non-regular file "in/link"``,
``rsync: [receiver] mkstemp "/staging/in/.3.dat.Ab12Cd" failed: ...`` or
``cannot delete non-empty directory: out/x``: the path at the location, in the staging tree, or
relative to both.  A line is an item's own when a path it names is the item's, rsync's temporary
file for it, or inside it (a directory item); a line naming a directory above items
(``change_dir "/base" failed``) concerns them all, in second place.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# rsync's temporary name for a file it receives: ".NAME.XXXXXX" beside it
_TEMPORARY = re.compile(r"\.(.+)\.[A-Za-z0-9]{6}")
# rsync writes a byte it will not print in a file name as \#ooo (octal)
_ESCAPED = re.compile(rb"\\#([0-7]{3})")
# its closing summary ("rsync error: some files/attrs were not transferred ... (code 23)")
SUMMARY = "rsync error: "


@dataclass
class Attribution:
    """rsync's lines by item (indexes into the items given to ``attribute``)."""

    own: dict[int, list[str]] = field(default_factory=dict)
    above: dict[int, list[str]] = field(default_factory=dict)
    # lines that name no item's path nor a directory above one, the closing summary left out
    other: list[str] = field(default_factory=list)


def unescape(raw: bytes) -> bytes:
    """A line of rsync's with the bytes it escaped in file names restored."""
    return _ESCAPED.sub(lambda m: bytes([int(m[1], 8)]), raw)


def read_lines(output: bytes) -> list[str]:
    """rsync's output as lines, its escaped bytes restored, blank lines left out."""
    lines = []
    for raw in output.splitlines():
        text = unescape(raw).decode("utf-8", "replace").strip()
        if text:
            lines.append(text)
    return lines


def attribute(lines: Sequence[str], paths: Sequence[str], roots: Sequence[str]) -> Attribution:
    """Sort ``lines`` by the item each names; ``paths`` are the items' paths relative to
    ``roots`` (the location's base directory, the staging tree)."""
    if not lines:  # the usual case: rsync said nothing
        return Attribution()
    named: dict[str, list[int]] = {}
    below: dict[str, list[int]] = {}
    for index, path in enumerate(paths):
        named.setdefault(path, []).append(index)
        for directory in directories_above(path):
            below.setdefault(directory, []).append(index)
    found = Attribution()
    for line in lines:
        own: set[int] = set()
        above: set[int] = set()
        for mentioned in _mentioned(line):
            inside = _relative(mentioned, roots)
            if inside is None:
                continue
            hits = _items_of(inside, named)
            own.update(hits)
            if not hits:
                above.update(below.get(inside, ()))
        for index in own:
            found.own.setdefault(index, []).append(line)
        for index in above - own:
            found.above.setdefault(index, []).append(line)
        if not own and not above and not line.startswith(SUMMARY):
            found.other.append(line)
    return found


def _items_of(path: str, named: dict[str, list[int]]) -> list[int]:
    """The items ``path`` is, is rsync's temporary file of, or lies inside."""
    hits = list(named.get(path, ()))
    head, _, tail = path.rpartition("/")
    temporary = _TEMPORARY.fullmatch(tail)
    if temporary:
        hits += named.get(posixpath.join(head, temporary[1]), ())
    for directory in directories_above(path):
        hits += named.get(directory, ())
    return hits


def directories_above(path: str) -> list[str]:
    """The root ("") and each directory above the relative ``path``: "", "a", "a/b" for "a/b/c"."""
    parts = path.split("/")
    return ["/".join(parts[:depth]) for depth in range(len(parts))]


def _relative(text: str, roots: Sequence[str]) -> str | None:
    """``text`` relative to the root it lies in ("" for a root itself); None for an absolute
    path in none of them."""
    path = posixpath.normpath(text) if text else text
    for root in roots:
        prefix = root.rstrip("/") + "/"
        if path == root:
            return ""
        if path.startswith(prefix):
            return path[len(prefix) :]
    if path.startswith("/"):
        return None
    return "" if path == "." else path


def _mentioned(line: str) -> list[str]:
    """Every text of ``line`` that may be a path: between two double quotes (a quoted path may
    itself hold quotes), or after ": " to the end (``cannot delete non-empty directory: out/x``)."""
    marks = [i for i, c in enumerate(line) if c == '"']
    quoted = [line[a + 1 : b] for n, a in enumerate(marks) for b in marks[n + 1 :]]
    return quoted + [line[i + 2 :] for i in range(len(line)) if line.startswith(": ", i)]
