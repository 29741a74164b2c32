"""Fixtures shared by the whole suite: a site store with a few apps, and a job factory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from balsamd import ids
from balsamd.config import NodeSettings
from balsamd.models import App, AppParameter, Job, JobSpec
from balsamd.store.contract import Store
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules

# apps by the hooks they override; the store applies every other hook inline
APPS = [
    App(name="noop", command_template="true"),
    App(name="echo", command_template="echo {{ x }}", parameters={"x": AppParameter(required=False, default=0)}),
    App(name="post", command_template="true", hooks=["postprocess"]),
    App(name="handler", command_template="true", hooks=["handle_error", "handle_timeout"]),
    App(name="pre", command_template="true", hooks=["preprocess"]),
]


# nodes wide enough for every shape the tests ask for
RULES = SiteRules(
    nodes=NodeSettings(cpus_per_node=64, gpus_per_node=8, max_nodes=64), allowed_launch_params=["cpu-bind"]
)


def open_store(path) -> SiteStore:
    """A SiteStore on ``path`` with the standard apps registered."""
    store = SiteStore(path, RULES)
    store.put_apps(APPS)
    return store


@pytest.fixture
def store(tmp_path) -> Iterator[SiteStore]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def make_jobs(store: Store, n: int, **fields: Any) -> list[Job]:
    """Create ``n`` jobs (app ``noop`` unless given, each in a workdir of its own) in one
    transaction and return them."""
    fields.setdefault("app", "noop")
    return store.create_jobs([JobSpec(**{"workdir": f"w/{name}", **fields}) for name in ids.new_ids(n)])
