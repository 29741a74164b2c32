"""msgspec's validation messages in the words of the people who wrote the value.

msgspec says ``Expected `int`, got `str` - at `$.specs[0].num_nodes```; users wrote a dict, a
TOML file or an RPC call, and are told ``specs[0].num_nodes: expected a whole number, got a
string; give a whole number``.  Pure functions over the message text: every place that decodes
or converts values from outside (settings, job requests, RPC arguments, filters) explains its
errors here, so all of them speak alike.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# how msgspec names types, in Python's words and in TOML's
PYTHON_TYPES = {
    "int": "a whole number", "float": "a number", "str": "a string", "bool": "True or False",
    "object": "a dict", "array": "a list", "null": "None", "bytes": "bytes", "enum": "one of its names",
}  # fmt: skip
TOML_TYPES = {
    **PYTHON_TYPES,
    "bool": "true or false", "object": "a table", "array": "an array [...]",
    "date": "a date", "datetime": "a date and time", "time": "a time of day",
}  # fmt: skip
BOUNDS = {">=": "of at least", ">": "above", "<=": "of at most", "<": "below"}

_WHERE = re.compile(r" - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`$")
_WRONG_TYPE = re.compile(r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_BOUND = re.compile(r"Expected `(?P<want>\w+)` (?P<op>>=|<=|>|<) (?P<limit>\S+)$")
_LENGTH = re.compile(r"Expected `(?P<want>\w+)` of length (?P<op>>=|<=) (?P<limit>\d+)$")
_PATTERN = re.compile(r"Expected `str` matching regex (?P<pattern>.+)$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`$")
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`$")
_ENUM = re.compile(r"Invalid enum value (?P<value>.+)$")
_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


class Explained(NamedTuple):
    """One validation error: where (the keys from the outside in; an index is a key too), what is
    wrong, what to do, and msgspec's kind of error ("type", "bound", "length", "pattern",
    "unknown", "missing", "enum" or "other")."""

    path: list[str]
    problem: str
    fix: str
    kind: str
    detail: str = ""  # the pattern of a "pattern" error, the value of an "enum" one

    @property
    def field(self) -> str:
        """The path as a person writes it: ``specs[0].num_nodes``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if part.isdigit() else f".{part}" if out else part
        return out or "(the whole value)"


def explain(message: str, toml: bool = False) -> Explained:
    """msgspec's ValidationError text as an Explained (in TOML's words when ``toml``)."""
    names = TOML_TYPES if toml else PYTHON_TYPES
    where = _WHERE.search(message)
    detail = message[: where.start()] if where else message
    path = [a or b for a, b in _PART.findall(where.group("path"))] if where else []
    path = [p for p in path if p != "..."]  # a dict's value: the dict names the field well enough
    a_key = bool(where and where.group("key"))

    def kind(name: str) -> str:
        return " or ".join(names.get(n.strip(), n.strip()) for n in name.split("|"))

    if match := _WRONG_TYPE.match(detail):
        want, got = kind(match["want"]), kind(match["got"])
        what = "its keys must be " if a_key else "expected "
        return Explained(path, f"{what}{want}, got {got}", f"give {want}", "type")
    if match := _BOUND.match(detail):
        bound = f"{BOUNDS[match['op']]} {_number(match['limit'])}"
        return Explained(path, f"expected {kind(match['want'])} {bound}", f"give a value {bound}", "bound")
    if match := _LENGTH.match(detail):
        bound = f"{BOUNDS[match['op']].removeprefix('of ')} {match['limit']}"
        unit = "characters" if match["want"] == "str" else "items"
        return Explained(path, f"expected {bound} {unit}", f"give {bound} {unit}", "length")
    if match := _PATTERN.match(detail):
        return Explained(path, "not of the expected form", "correct it", "pattern",
                         match["pattern"])  # fmt: skip
    if match := _UNKNOWN.match(detail):
        return Explained([*path, match["name"]], "unknown field", "remove it or correct its name", "unknown")
    if match := _MISSING.match(detail):
        return Explained([*path, match["name"]], "missing", "add it", "missing")
    if match := _ENUM.match(detail):
        return Explained(path, f"{match['value']} is not a value it takes", "use one of its values", "enum",
                         match["value"])  # fmt: skip
    return Explained(path, detail, "correct it", "other")


def _number(text: str) -> str:
    """``0.0`` as 0, other numbers as msgspec wrote them."""
    return text[:-2] if text.endswith(".0") else text


def a_kind(value: object) -> str:
    """The type of ``value`` with its article, as a message names it: "an int", "a str"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
