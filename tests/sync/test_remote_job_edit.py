"""``job modify`` and ``job ls --tree`` from a laptop, through the central database; ``job dep``
is refused there, saying where it works."""

from __future__ import annotations

import pytest

from .conftest import Central, SiteMaker
from .test_remote_cli import REFUSED, Laptop


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


def test_dep_through_central_is_a_request_the_site_checks(central: Central, make_site: SiteMaker, bob: Laptop) -> None:
    site = make_site("alpha")
    site.sync()
    a, b, c = (bob.json("job", "create", "--app", "Noop", "--workdir", w)["id"] for w in "abc")
    site.sync()
    asked = bob("job", "dep", c, a, b)
    assert asked.stdout.startswith(f"{c} new parents requested of site alpha (request ")
    site.sync()
    site.sync()  # the job's new state and parents come back
    shown = bob.json("job", "show", c)
    assert (shown["state"], shown["parent_ids"]) == ("AWAITING_PARENTS", [a, b])
    assert [j["id"] for j in bob.json("job", "ls", "--state", "AWAITING_PARENTS")] == [c]

    # a cycle is the site's to find: refused there, with its reason
    cycle = bob("job", "dep", a, c).stdout.split("(request ")[1].rstrip(")\n")
    site.sync()
    assert site.applied_intents()[cycle] == {
        "status": "rejected",
        "reason": f"job {a} cannot wait for {c}: {a} -> {c} -> {a} would be a cycle of jobs waiting for each other",
    }
    # another user's job is no parent of bob's: central does not even show it to him
    central.add_user("carol")
    carols = Laptop(central.dsn_for("carol")).json("job", "create", "--app", "Noop", "--workdir", "x")["id"]
    site.sync()
    refused = bob("job", "dep", c, carols, code=REFUSED)
    assert f"no job with id {carols}" in refused.stderr
