"""``job modify`` and ``job ls --tree`` from a laptop, through the central database; ``job dep``
is refused there, saying where it works."""

from __future__ import annotations

import pytest

from .conftest import Central, SiteMaker
from .test_remote_cli import USAGE, Laptop


@pytest.fixture(autouse=True)
def _no_central_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BALSAMD_CENTRAL", raising=False)


@pytest.fixture
def bob(central: Central) -> Laptop:
    central.add_user("bob")
    return Laptop(central.dsn_for("bob"))


def test_modify_and_tree_through_central(central: Central, make_site: SiteMaker, bob: Laptop) -> None:
    site = make_site("alpha", {"nodes.max_nodes": 2})
    site.sync()  # publishes its apps and rules
    root = bob.json("job", "create", "--app", "Noop", "--workdir", "root")["id"]
    child = bob.json("job", "create", "--app", "Noop", "--workdir", "child", "--parent", root)["id"]
    site.sync()  # the site creates them

    asked = bob("job", "modify", child, "--num-nodes", "2", "--wall-time-min", "5", "-t", "k=v")
    assert asked.stdout.startswith(f"{child} change requested of site alpha (request ")
    site.sync()  # the site applies the change, and sends the job back
    site.sync()
    assert (site.jobs_by_id()[child]["num_nodes"], site.jobs_by_id()[child]["wall_time_min"]) == (2, 5.0)
    shown = bob.json("job", "show", child)
    assert (shown["num_nodes"], shown["tags"]) == (2, {"k": "v"})

    # the site checks the change as it would a new job, and says why it refuses one
    too_wide = bob("job", "modify", root, "--num-nodes", "3").stdout.split("(request ")[1].rstrip(")\n")
    site.sync()
    assert site.applied_intents()[too_wide] == {
        "status": "rejected",
        "reason": f"job {root}: num_nodes=3 exceeds the site's max_nodes=2 (lower --num-nodes, or raise [nodes] "
        "max_nodes in settings.toml)",
    }

    lines = bob("job", "ls", "--tree").stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["ID", "SITE", "STATE"], [root, "alpha", "PREPROCESSED"], ["└─", child, "alpha"],
    ]  # fmt: skip

    refused = bob("job", "dep", child, root, code=USAGE)
    assert "`balsamd job dep` runs at the site, not through the central database" in refused.stderr
