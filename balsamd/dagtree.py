"""A DAG of jobs laid out as a tree: roots first, children under their parents.

A job with several parents is placed in full under the first of them the walk reaches, and
is a reference everywhere else, so that every job is shown once and the layout stays a tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Node:
    job: Any  # anything with ``id`` and ``parent_ids``
    prefix: str  # the branches drawn before it
    repeated: bool  # shown in full elsewhere


def tree(jobs: Sequence[Any]) -> list[Node]:
    """The jobs in tree order (theirs among siblings).  Roots are the jobs none of whose
    parents are among ``jobs``, so a filtered listing is a forest of what it holds."""
    ids = {j.id for j in jobs}
    children: dict[str, list[Any]] = {j.id: [] for j in jobs}
    roots = []
    for job in jobs:
        parents = [p for p in dict.fromkeys(job.parent_ids) if p in ids]
        for parent in parents:
            children[parent].append(job)
        if not parents:
            roots.append(job)
    out: list[Node] = []
    shown: set[str] = set()

    def walk(job: Any, prefix: str, branch: str, last: bool) -> None:
        repeated = job.id in shown
        out.append(Node(job, prefix + branch, repeated))
        if repeated:
            return
        shown.add(job.id)
        below = prefix + ("" if not branch else "   " if last else "│  ")
        kids = children[job.id]
        for n, child in enumerate(kids):
            walk(child, below, "└─ " if n == len(kids) - 1 else "├─ ", n == len(kids) - 1)

    for root in roots:
        walk(root, "", "", True)
    return out
