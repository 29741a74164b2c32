"""Fixtures shared by the whole suite: a site store with a few apps, and a job factory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from balsamd import ids
from balsamd.models import App, Job
from balsamd.store.store import SiteStore

# apps by the hooks they override; the store applies every other hook inline
APPS = [
    App(name="noop", command_template="true"),
    App(name="post", command_template="true", hooks=["postprocess"]),
    App(name="handler", command_template="true", hooks=["handle_error", "handle_timeout"]),
    App(name="pre", command_template="true", hooks=["preprocess"]),
]


def open_store(path) -> SiteStore:
    """A SiteStore on ``path`` with the standard apps registered."""
    store = SiteStore(path)
    store.put_apps(APPS)
    return store


@pytest.fixture
def store(tmp_path) -> Iterator[SiteStore]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def make_jobs(store: SiteStore, n: int, **fields: Any) -> list[Job]:
    """Create ``n`` jobs (app ``noop`` unless given) in one transaction and return them."""
    fields.setdefault("app", "noop")
    return store.create_jobs([Job(**{"id": job_id, "workdir": f"w/{job_id}", **fields}) for job_id in ids.new_ids(n)])
