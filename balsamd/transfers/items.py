"""A job's transfer items: which of its app's slots it fills, and from or to where.

An item is ``slot -> "LOCATION:/path"``.  Checked by the store at creation, whoever creates the
job, against the app's slots and the site's locations; the path is checked as one that stays
inside the location's base directory (``locations.path_problem``).
"""

from __future__ import annotations

from collections.abc import Mapping

from balsamd.models import App
from balsamd.transfers.locations import LocationError, path_problem, split_item


def transfer_problems(items: Mapping[str, str], app: App, locations: Mapping[str, str]) -> list[str]:
    """Why these items cannot be a job's of ``app`` at a site with ``locations`` (name -> scheme)."""
    problems = []
    slots = ", ".join(sorted(app.transfers)) or "none"
    for slot, item in items.items():
        if slot not in app.transfers:
            problems.append(f"transfers: app {app.name} has no transfer slot {slot[:40]!r} (its slots: {slots}); "
                            "correct the name or leave it out")  # fmt: skip
            continue
        try:
            name, path = split_item(item)
        except LocationError as exc:
            problems.append(f"transfers[{slot!r}]: {exc}")
            continue
        if name not in locations:
            known = ", ".join(sorted(locations)) or "none"
            problems.append(f"transfers[{slot!r}]: unknown location {name!r} (this site's locations: {known}); "
                            "use one of them, or the site's owner adds it to [transfers.locations] in "
                            "settings.toml")  # fmt: skip
        problem = path_problem(path)
        if problem:
            problems.append(f"transfers[{slot!r}]: {problem}")
    problems += [
        f"transfers: missing required slot {slot} of app {app.name}"
        + (f" ({spec.description})" if spec.description else "")
        + f": add --transfer {slot}=LOCATION:PATH"
        for slot, spec in sorted(app.transfers.items())
        if spec.required and slot not in items
    ]
    return problems
