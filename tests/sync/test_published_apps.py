"""A site's daemon publishes its apps to central by itself; remote creates are checked against them."""

from __future__ import annotations

from typing import Any

import pytest

from balsamd.validate import JobSpecError
from tests.daemon.conftest import wait_until
from tests.sync.conftest import SQUARE, Central

BROKEN = """\
from balsamd import ApplicationDefinition


class Broken(ApplicationDefinition):
    command_template = "true"
    environment_variables = {"THREADS": 4}
"""


def published(central: Central, site: str) -> dict[str, dict[str, Any]]:
    rows = central.rows("SELECT name, spec FROM balsamd.apps WHERE site = %s", (site,))
    return {name: spec for name, spec in rows}


def test_a_running_daemon_publishes_its_apps_and_their_changes_without_app_ls(central: Central, make_site) -> None:
    site = make_site("alpha", apps=False)
    site.app("Square", SQUARE)
    site.command_app("Echo", "echo {{ msg }}")
    central.add_user("alice")
    with central.remote("alice") as conn, pytest.raises(JobSpecError) as before:
        conn.jobs.create("Square", "sq/0", site="alpha", parameters={"x": 3})
    assert str(before.value) == (
        "job: site alpha has published no apps yet: its daemon publishes the apps of its apps/ directory "
        "when it starts (`balsamd start` at the site)"
    )

    site.start()
    apps = wait_until(lambda: published(central, "alpha"), "the site's apps are in central")
    assert sorted(apps) == ["Echo", "Square"]
    assert apps["Square"]["kind"] == "python"
    assert apps["Square"]["parameters"]["x"] == {"required": True, "default": None, "help": ""}
    with central.remote("alice") as conn:
        job = conn.jobs.create("Square", "sq/1", site="alpha", parameters={"x": 3})
        wait_until(lambda: job.refresh().state == "PREPROCESSED", "the remote job reaches the site")

    site.command_app("Added", "true")
    (site.root / "apps" / "echo.py").unlink()
    site.command_app("Square", "echo {{ y }}")  # replaces the Python app of the same file
    wait_until(lambda: sorted(published(central, "alpha")) == ["Added", "Square"], "the changes are in central")
    wait_until(lambda: published(central, "alpha")["Square"]["kind"] == "command", "the changed app is in central")

    (site.root / "apps" / "broken.py").write_text(BROKEN)
    broken = wait_until(lambda: published(central, "alpha").get("Broken"), "the broken app is in central")
    assert broken["error"].startswith("apps/broken.py: app Broken: environment_variables['THREADS'] must map")
    with central.remote("alice") as conn:
        with pytest.raises(JobSpecError) as unknown:
            conn.jobs.create("Echo", "e/1", site="alpha", parameters={"msg": "hi"})
        assert (
            str(unknown.value)
            == "job: site alpha has no app 'Echo' (it publishes: Added, Broken, Square); give one of those"
        )
        with pytest.raises(JobSpecError) as refused:
            conn.jobs.create("Broken", "b/1", site="alpha")
        assert str(refused.value) == f"job: app Broken cannot be used until its file is fixed: {broken['error']}"
