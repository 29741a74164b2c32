"""Which hosts this launcher may use: read from the batch scheduler's environment.

Every function takes the environment (and a file reader) as arguments rather than reading
``os.environ``, so each scheduler's format is tested with plain dictionaries.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import socket
import stat
from collections.abc import Callable, Iterable, Mapping

from balsamd.config import MAX_NODES

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
# Summit-style LSF lists the batch (launch) node first; it is not a compute node.
_SERVICE_HOST_PREFIXES = ("batch", "login")
MAX_NODEFILE = MAX_NODES * 256  # bytes: a line per rank of every node, with long names


def _read_text(path: str) -> str:
    """A node file's text; a pipe, a device or a file larger than any machine's list is refused
    (reading /dev/zero would never end)."""
    with open(path, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("it is not a regular file")
        data = f.read(MAX_NODEFILE + 1)
    if len(data) > MAX_NODEFILE:
        raise ValueError(f"it is larger than {MAX_NODEFILE} bytes, more than any machine's node list")
    return data.decode(errors="replace")


def expand_slurm_hostlist(text: str, source: str = "the Slurm host list") -> list[str]:
    """Expand a Slurm compressed host list such as ``nid[0001-0004,0010]``.

    Bracket groups hold comma-separated numbers or ranges; a range keeps the width of its lower
    bound (``[08-10]`` gives 08, 09, 10).  Several groups in one name multiply out, leftmost
    slowest.  Empty text means no hosts.  A list naming more hosts than a machine can have
    (``nid[0-9999999]``) is refused before anything is expanded; errors name ``source``.
    """
    if not text.strip():
        return []
    patterns = _split_top_level(text, source)
    groups = [_pattern_groups(pattern, text, source) for pattern in patterns]
    total = sum(math.prod(sum(high - low + 1 for low, high, _ in group) for group in found) for found in groups)
    if total > MAX_NODES:
        raise ValueError(_bad(source, text, f"it names {total} hosts, more than a machine has ({MAX_NODES})"))
    hosts: list[str] = []
    for pattern, found in zip(patterns, groups, strict=True):
        hosts.extend(_expand_pattern(pattern, found))
    return hosts


def _bad(source: str, text: str, why: str) -> str:
    return f"bad host list in {source} ({text[:80]!r}): {why}; pass the hosts with --nodes instead"


def _split_top_level(text: str, source: str) -> list[str]:
    """Split on the commas that separate host patterns, not the ones inside brackets."""
    patterns: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text.strip():
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(_bad(source, text, "nested '['"))
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(_bad(source, text, "']' without '['"))
        if char == "," and depth == 0:
            patterns.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ValueError(_bad(source, text, "'[' is never closed"))
    patterns.append("".join(current))
    for pattern in patterns:
        if not pattern or any(char.isspace() for char in pattern):
            raise ValueError(_bad(source, text, f"empty or blank host name {pattern!r}"))
    return patterns


# a bracket group as its ranges: (low, high, width of the lower bound)
Group = list[tuple[int, int, int]]


def _pattern_groups(pattern: str, text: str, source: str) -> list[Group]:
    """The ranges of each bracket group of ``pattern``, checked but not expanded."""
    return [_group(piece, text, source) for piece in re.split(r"\[([^\]]*)\]", pattern)[1::2]]


def _group(group: str, text: str, source: str) -> Group:
    ranges: Group = []
    for item in group.split(","):
        match = _RANGE.fullmatch(item)
        if not match:
            raise ValueError(_bad(source, text, f"{item!r} in [{group}] is not a number or a range"))
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(low) > int(high):
            raise ValueError(_bad(source, text, f"range {item!r} runs backwards"))
        ranges.append((int(low), int(high), len(low)))
    return ranges


def _expand_pattern(pattern: str, groups: list[Group]) -> list[str]:
    literals = re.split(r"\[[^\]]*\]", pattern)
    values = [[f"{n:0{width}d}" for low, high, width in group for n in range(low, high + 1)] for group in groups]
    # literal text and bracket groups alternate, leftmost slowest
    choices: list[list[str]] = [[literals[0]]]
    for group, literal in zip(values, literals[1:], strict=True):
        choices += [group, [literal]]
    return ["".join(parts) for parts in itertools.product(*choices)]


def expand_cobalt_partname(text: str) -> list[str]:
    """Cobalt's partition name is a list of integer node ids: ``1-4,10`` -> 1, 2, 3, 4, 10."""
    source = "COBALT_PARTNAME"
    ranges: list[tuple[int, int]] = []
    for item in text.strip().split(","):
        match = _RANGE.fullmatch(item.strip())
        if not match:
            raise ValueError(_bad(source, text, f"{item!r} is not a node id or range"))
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if low > high:
            raise ValueError(_bad(source, text, f"range {item!r} runs backwards"))
        ranges.append((low, high))
    total = sum(high - low + 1 for low, high in ranges)
    if total > MAX_NODES:
        raise ValueError(_bad(source, text, f"it names {total} nodes, more than a machine has ({MAX_NODES})"))
    return [str(n) for low, high in ranges for n in range(low, high + 1)]


def _lsf_mcpu_hosts(text: str) -> list[str]:
    """``LSB_MCPU_HOSTS`` alternates host names and slot counts: ``h1 42 h2 42``."""
    words = text.split()
    if len(words) % 2 or not all(count.isdigit() for count in words[1::2]):
        raise ValueError(_bad("LSB_MCPU_HOSTS", text, "expected pairs of 'host slots'"))
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

    for name in ("SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if slurm := get(name):
            return expand_slurm_hostlist(slurm, name)
    if nodefile := get("PBS_NODEFILE"):
        try:
            content = read_file(nodefile)
        except (OSError, ValueError) as exc:
            raise ValueError(f"PBS_NODEFILE={nodefile} could not be read: {exc}; pass the hosts with --nodes") from None
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


def node_share(hosts: list[str], first: int, count: int) -> list[str]:
    """The ``count`` hosts from position ``first`` of an allocation: a partition's share of it.

    A one-host allocation (a workstation, the local scheduler) is shared by every partition, as
    all its launchers run on that host."""
    if first < 0 or count < 1:
        raise ValueError(f"a node share starts at 0 or later and holds 1 node or more (got {first}:{count})")
    if len(hosts) == 1:
        return list(hosts)
    if first + count > len(hosts):
        raise ValueError(
            f"the share {first}:{count} needs {first + count} nodes but the allocation has {len(hosts)}; "
            "ask for more nodes, or give the partitions fewer"
        )
    return hosts[first : first + count]
