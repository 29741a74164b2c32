"""The hook table (``lifecycle.HOOKS``) is the only truth about hooks: apps' default methods,
the store's inline steps and the daemon's processing service each agree with every row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from balsamd.apps import ApplicationDefinition, describe, load_apps
from balsamd.daemon.hooks import HookPool
from balsamd.daemon.processing import Processing
from balsamd.lifecycle import HOOKS, Hook, auto_advance
from balsamd.models import Job
from balsamd.states import JobState
from balsamd.store.store import SiteStore
from tests.conftest import make_jobs
from tests.store import run_all

each_hook = pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h.name)


@each_hook
def test_the_default_method_moves_the_job_to_the_hooks_default(hook: Hook) -> None:
    job = Job(id="j", app="a", workdir="w", state=hook.runs_in)
    getattr(ApplicationDefinition(job), hook.name)()
    assert job.state == hook.default_next


@each_hook
def test_the_store_steps_inline_exactly_when_the_app_keeps_the_hook(hook: Hook) -> None:
    others = [h.name for h in HOOKS if h != hook]
    assert auto_advance(hook.runs_in, others) == hook.default_next
    assert auto_advance(hook.runs_in, [hook.name]) is None


@each_hook
def test_describe_lists_the_hook_a_class_overrides(hook: Hook) -> None:
    cls = type("Overrides", (ApplicationDefinition,), {"command_template": "true", hook.name: lambda self: None})
    assert describe(cls).hooks == [hook.name]


def _apps_overriding_each_hook() -> str:
    """Two apps per hook: one whose hook leaves the state alone, one whose hook calls the default."""
    source = "from balsamd.apps import ApplicationDefinition\n"
    for hook in HOOKS:
        for kind, tail in (("Leaves", ""), ("Super", f"super().{hook.name}()")):
            source += f"""
class {kind}_{hook.name}(ApplicationDefinition):
    command_template = "true"

    def {hook.name}(self):
        self.job.data["ran"] = {hook.name!r}
        {tail}
"""
    return source


def _reach(store: SiteStore, app: str, state: JobState) -> Job:
    """A job of ``app`` in ``state``: where creation stops, or where its run ends."""
    [job] = make_jobs(store, 1, app=app)
    if store.get(job.id).state != state:
        run_all(store, [job], end=state)
    assert store.get(job.id).state == state
    return job


def test_the_processing_service_runs_each_hook_in_its_state_and_applies_its_default(
    tmp_path: Path, store: SiteStore
) -> None:
    apps_dir = tmp_path / "apps"
    apps_dir.mkdir()
    (apps_dir / "table.py").write_text(_apps_overriding_each_hook())
    store.put_apps(list(load_apps(apps_dir).values()))
    jobs = {
        (kind, hook): _reach(store, f"{kind}_{hook.name}", hook.runs_in)
        for hook in HOOKS
        for kind in ("Leaves", "Super")
    }

    async def call(func: Any, *args: Any) -> Any:
        return func(*args)

    pool = HookPool(size=2, time_limit=60)
    try:
        anyio.run(Processing(store, call, apps_dir, tmp_path / "data", pool).step, 0.0)
    finally:
        pool.close()

    for (kind, hook), job in jobs.items():
        assert store.get(job.id).data == {"ran": hook.name}
        [step] = [e for e in store.events(job.id) if e.from_state == hook.runs_in]
        assert step.to_state == hook.default_next, (kind, hook.name)
        assert step.reason == ("" if kind == "Leaves" else f"set by {hook.name}")
