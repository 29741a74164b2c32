"""A task's items as the paths of one Globus transfer, and Globus's account of that transfer
back as one result per item.  Pure functions but ``local_bytes``, which reads this host's
filesystem.

The site's collection sees this host's directories under other paths (a GCS collection's root
is often a subdirectory, or ``/~/``): ``[transfers.globus] path_map`` says how, prefix by prefix.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from balsamd.transfers.backend import Direction, Item, ItemResult

MAX_MESSAGE = 500  # characters of Globus's own message kept in an item's error


class Planned(NamedTuple):
    """An item as Globus moves it: paths on the source and destination collections, and the
    item's file on this host."""

    item: Item
    source: str
    destination: str
    local: str


def collection_path(local: str, path_map: Mapping[str, str]) -> str | None:
    """``local`` (absolute, normalized) as the site's collection shows it, through the longest
    prefix of ``path_map`` that is ``local`` or one of its parent directories; None when none is."""
    best: tuple[str, str] | None = None
    for prefix, seen in path_map.items():
        prefix = posixpath.normpath(prefix)
        inside = local == prefix or local.startswith(prefix.rstrip("/") + "/")
        if inside and (best is None or len(prefix) > len(best[0])):
            best = (prefix, seen)
    if best is None:
        return None
    rest = local[len(best[0]) :].lstrip("/")
    return posixpath.normpath(posixpath.join(best[1], rest))


def plan(
    items: Iterable[Item], direction: Direction, path_map: Mapping[str, str]
) -> tuple[list[Planned], list[ItemResult]]:
    """The items Globus can be asked to move, and a failed result for each one whose workdir
    path the site's collection does not show."""
    planned, unmapped = [], []
    for item in items:
        local = posixpath.normpath(posixpath.join(item.workdir, item.local))
        seen = collection_path(local, path_map)
        if seen is None:
            prefixes = ", ".join(sorted(path_map)) or "none"
            unmapped.append(ItemResult(item_id=item.item_id, ok=False, error=(
                f"{local} is not under a directory of transfers.globus.path_map (its prefixes: {prefixes}); "
                "map the directory holding the site's data/ to the path the site's Globus collection shows it at"
            )))  # fmt: skip
            continue
        source, destination = (item.remote, seen) if direction == "in" else (seen, item.remote)
        planned.append(Planned(item=item, source=source, destination=destination, local=local))
    return planned, unmapped


def covers(planned: Planned, source_path: str) -> bool:
    """Whether Globus's ``source_path`` is the item's source, or inside it (a recursive item)."""
    source = planned.source.rstrip("/") or "/"
    if source_path.rstrip("/") == source:
        return True
    return planned.item.recursive and source_path.startswith(source.rstrip("/") + "/")


def skipped_message(error: Mapping[str, Any]) -> str:
    """One skipped path's error, as Globus gives it (bounded)."""
    text = f"{error.get('error_code') or 'error'} at {error.get('source_path')}: {error.get('error_details') or ''}"
    return text.strip().rstrip(":")[:MAX_MESSAGE]


def failure_message(task: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> str:
    """Why a FAILED Globus task failed: its fatal error, else its last error event, else its
    status line."""
    fatal = task.get("fatal_error") or {}
    if fatal:
        why = f"{fatal.get('code') or 'error'}: {fatal.get('description') or ''}"
    else:
        errors = [e for e in events if e.get("is_error")]
        last = max(errors, key=lambda e: str(e.get("time") or ""), default={})
        why = (
            f"{last.get('code') or 'error'}: {last.get('description') or ''} {last.get('details') or ''}"
            if last
            else str(task.get("nice_status_short_description") or task.get("nice_status") or "no reason given")
        )
    return f"Globus task {task.get('task_id')} failed: {why.strip()}"[:MAX_MESSAGE]


def outcomes(
    planned: Iterable[Planned],
    succeeded: bool,
    skipped: Iterable[Mapping[str, Any]],
    transferred: Iterable[str],
    failure: str,
) -> list[ItemResult]:
    """One result per planned item of a finished Globus task.

    ``skipped``: Globus's skipped errors (paths it could not read at the source, the task going
    on without them): the item they are in failed.  In a SUCCEEDED task every other item is
    done.  In a FAILED one (``failure`` says why) only a file Globus lists among the
    ``transferred`` source paths is; a directory may be partly written, and is done again.
    """
    skipped, transferred = list(skipped), set(transferred)
    results = []
    for p in planned:
        errors = [skipped_message(e) for e in skipped if covers(p, str(e.get("source_path") or ""))]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            results.append(ItemResult(item_id=p.item.item_id, ok=False, error=errors[0] + more))
        elif succeeded or (not p.item.recursive and p.source in transferred):
            results.append(ItemResult(item_id=p.item.item_id, ok=True, bytes=local_bytes(p.local)))
        else:
            results.append(ItemResult(item_id=p.item.item_id, ok=False, error=failure))
    return results


def local_bytes(path: str) -> int:
    """The size of a file on this host, summed over a directory's files (0 when it cannot be
    read: Globus, not this host, is the judge of a transfer)."""
    try:
        if not os.path.isdir(path):
            return os.stat(path).st_size
        return sum(
            os.lstat(os.path.join(root, name)).st_size
            for root, _dirs, files in os.walk(path)
            for name in files
        )  # fmt: skip
    except OSError:
        return 0
