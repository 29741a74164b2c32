"""Which hosts this launcher may use: read from the batch scheduler's environment.

Every function takes the environment (and a file reader) as arguments rather than reading
``os.environ``, so each scheduler's format is tested with plain dictionaries.
"""

from __future__ import annotations

import itertools
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
# Summit-style LSF lists the batch (launch) node first; it is not a compute node.
_SERVICE_HOST_PREFIXES = ("batch", "login")


def _read_text(path: str) -> str:
    return Path(path).read_text()


def expand_slurm_hostlist(text: str) -> list[str]:
    """Expand a Slurm compressed host list such as ``nid[0001-0004,0010]``.

    Bracket groups hold comma-separated numbers or ranges; a range keeps the width of its lower
    bound (``[08-10]`` gives 08, 09, 10).  Several groups in one name multiply out, leftmost
    slowest.  Empty text means no hosts.
    """
    if not text.strip():
        return []
    hosts: list[str] = []
    for pattern in _split_top_level(text):
        hosts.extend(_expand_pattern(pattern, text))
    return hosts


def _split_top_level(text: str) -> list[str]:
    """Split on the commas that separate host patterns, not the ones inside brackets."""
    patterns: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text.strip():
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"bad Slurm host list {text!r}: nested '['")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"bad Slurm host list {text!r}: ']' without '['")
        if char == "," and depth == 0:
            patterns.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ValueError(f"bad Slurm host list {text!r}: '[' is never closed")
    patterns.append("".join(current))
    for pattern in patterns:
        if not pattern or any(char.isspace() for char in pattern):
            raise ValueError(f"bad Slurm host list {text!r}: empty or blank host name {pattern!r}")
    return patterns


def _expand_pattern(pattern: str, text: str) -> list[str]:
    pieces = re.split(r"\[([^\]]*)\]", pattern)
    # re.split alternates literal text (even indexes) and bracket contents (odd indexes)
    choices = [[piece] if i % 2 == 0 else _expand_group(piece, text) for i, piece in enumerate(pieces)]
    return ["".join(parts) for parts in itertools.product(*choices)]


def _expand_group(group: str, text: str) -> list[str]:
    values: list[str] = []
    for item in group.split(","):
        match = _RANGE.fullmatch(item)
        if not match:
            raise ValueError(f"bad Slurm host list {text!r}: {item!r} in [{group}] is not a number or a range")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(low) > int(high):
            raise ValueError(f"bad Slurm host list {text!r}: range {item!r} runs backwards")
        width = len(low)
        values.extend(f"{n:0{width}d}" for n in range(int(low), int(high) + 1))
    return values


def expand_cobalt_partname(text: str) -> list[str]:
    """Cobalt's partition name is a list of integer node ids: ``1-4,10`` -> 1, 2, 3, 4, 10."""
    nids: list[str] = []
    for item in text.strip().split(","):
        match = _RANGE.fullmatch(item.strip())
        if not match:
            raise ValueError(f"bad COBALT_PARTNAME {text!r}: {item!r} is not a node id or range")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if low > high:
            raise ValueError(f"bad COBALT_PARTNAME {text!r}: range {item!r} runs backwards")
        nids.extend(str(n) for n in range(low, high + 1))
    return nids


def _lsf_mcpu_hosts(text: str) -> list[str]:
    """``LSB_MCPU_HOSTS`` alternates host names and slot counts: ``h1 42 h2 42``."""
    words = text.split()
    if len(words) % 2 or not all(count.isdigit() for count in words[1::2]):
        raise ValueError(f"bad LSB_MCPU_HOSTS {text!r}: expected pairs of 'host slots'")
    return _compute_hosts(words[0::2])


def _compute_hosts(names: Iterable[str]) -> list[str]:
    return _unique(name for name in names if not name.startswith(_SERVICE_HOST_PREFIXES))


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def discover_nodes(
    env: Mapping[str, str],
    read_file: Callable[[str], str] = _read_text,
    hostname: Callable[[], str] = socket.gethostname,
) -> list[str]:
    """The hosts of the current allocation, first scheduler variable found wins.

    Order: SLURM_JOB_NODELIST, SLURM_NODELIST, PBS_NODEFILE, COBALT_PARTNAME, LSB_MCPU_HOSTS,
    LSB_HOSTS; outside any allocation, this host alone.  Empty variables count as unset.
    """

    def get(name: str) -> str:
        return env.get(name, "").strip()

    if slurm := get("SLURM_JOB_NODELIST") or get("SLURM_NODELIST"):
        return expand_slurm_hostlist(slurm)
    if nodefile := get("PBS_NODEFILE"):
        try:
            content = read_file(nodefile)
        except OSError as exc:
            raise ValueError(f"PBS_NODEFILE={nodefile} could not be read: {exc}") from None
        hosts = _unique(line.strip() for line in content.splitlines() if line.strip())
        return _nonempty(hosts, f"PBS_NODEFILE={nodefile}")
    if partname := get("COBALT_PARTNAME"):
        return expand_cobalt_partname(partname)
    if mcpu := get("LSB_MCPU_HOSTS"):
        return _nonempty(_lsf_mcpu_hosts(mcpu), "LSB_MCPU_HOSTS")
    if lsb_hosts := get("LSB_HOSTS"):
        return _nonempty(_compute_hosts(lsb_hosts.split()), "LSB_HOSTS")
    return [hostname()]


def _nonempty(hosts: list[str], source: str) -> list[str]:
    if not hosts:
        raise ValueError(f"{source} names no compute hosts; pass them with --nodes")
    return hosts


def resolve_nodes(
    override: list[str] | None,
    env: Mapping[str, str],
    read_file: Callable[[str], str] = _read_text,
    hostname: Callable[[], str] = socket.gethostname,
) -> list[str]:
    """The hosts named by ``--nodes`` if given, else those discovered in the allocation."""
    if override is None:
        return discover_nodes(env, read_file, hostname)
    hosts = _unique(name.strip() for name in override if name.strip())
    if not hosts:
        raise ValueError("--nodes was given but names no hosts; pass e.g. --nodes nid001,nid002")
    return hosts
