"""Transfer items through the central database (``conn.transfers``), as a central user sees
them: the items of their own jobs at every site, the same records their site lists, filtered and
counted the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import balsamd
from balsamd.api import Site
from balsamd.sync.schema import CentralError
from balsamd.transfers.backend import ItemResult

from .conftest import Central, SiteMaker, SyncSite
from .test_remote_cli import Laptop
from .test_transfer_items import RSYNC_ERROR, create, staged_site


@pytest.fixture
def world(central: Central, make_site: SiteMaker, tmp_path: Path) -> dict[str, list[str]]:
    """Sites alpha and beta with a job of their own each, two of alice's and one of bob's: at
    alpha alice's first item is done and her second failed once; all synced.  Returns the job
    ids of each user, in the order made."""
    central.add_user("alice")
    central.add_user("bob")
    alpha, beta = staged_site(make_site, "alpha", tmp_path), staged_site(make_site, "beta", tmp_path)
    made = {"alice": [create(central, "alice", "alpha", f"/in/{n}.dat") for n in (1, 2)], "bob": []}
    made["bob"].append(create(central, "bob", "alpha", "/in/3.dat"))
    made["alice"].append(create(central, "alice", "beta", "/in/4.dat"))
    for site in (alpha, beta):
        site.create("Staged", transfers={"input": "far:/in/site.dat"})
        site.sync()
    with alpha.store() as store:
        item = {i.job_id: i.id for i in store.transfer_work(10)}
        first, second = made["alice"][:2]
        task = store.start_transfer_task("t1", "in", "far", [item[first], item[second]])
        results = [ItemResult(item_id=i.id, ok=i.job_id == first, bytes=7, error=RSYNC_ERROR) for i in task.items]
        store.finish_transfer_task("t1", results, 3, 30.0)
    alpha.sync()
    return made


@pytest.fixture
def alpha(make_site: SiteMaker) -> SyncSite:
    return next(s for s in make_site.made if s.name == "alpha")


def test_a_user_sees_the_items_of_their_own_jobs_at_every_site(central: Central, world) -> None:
    with central.remote("alice") as conn:
        found = conn.transfers.filter()
        assert [(i.job_id, i.site, str(i.state)) for i in found] == [
            (world["alice"][0], "alpha", "done"), (world["alice"][1], "alpha", "pending"),
            (world["alice"][2], "beta", "pending"),
        ]  # fmt: skip
        assert {i.owner for i in found} == {"alice"}
        assert found[0].workdir == "users/alice/in/1.dat"
        assert conn.transfers.counts() == {"pending": 2, "done": 1}
        assert conn.transfers.counts(site="beta") == {"pending": 1}
    with central.remote("bob") as conn:
        assert [i.job_id for i in conn.transfers.filter()] == world["bob"]
        assert conn.transfers.counts() == {"pending": 1}


def test_the_records_are_those_the_site_lists(central: Central, world, alpha: SyncSite) -> None:
    with central.remote("alice") as conn, balsamd.connect(alpha.root) as site:
        assert isinstance(site, Site)
        here = site.transfers.filter(job=world["alice"][:2])
        assert conn.transfers.filter(site="alpha") == here
        assert here[1].error == RSYNC_ERROR and here[1].attempts == 1


def test_each_filter_narrows(central: Central, world) -> None:
    done, retrying, elsewhere = world["alice"]
    with central.remote("alice") as conn:

        def job_ids(**given: Any) -> list[str]:
            return [i.job_id for i in conn.transfers.filter(**given)]

        assert job_ids(state="done") == [done]
        assert job_ids(state=["PENDING"], site="alpha") == [retrying]
        assert job_ids(job=retrying) == [retrying]
        assert job_ids(job=[conn.jobs.get(elsewhere), done]) == [done, elsewhere]
        assert job_ids(task="t1") == [done]
        assert job_ids(direction="in", location="far", limit=2) == [done, retrying]
        assert job_ids(direction="out") == []
        with pytest.raises(CentralError, match=r"no job with id \w+ that you may see"):
            conn.transfers.filter(job=world["bob"][0])


@pytest.fixture
def laptop(monkeypatch: pytest.MonkeyPatch, central: Central) -> Laptop:
    monkeypatch.delenv("BALSAMD_CENTRAL", raising=False)
    return Laptop(central.dsn_for("alice"))


def test_transfer_ls_through_central(world, laptop: Laptop) -> None:
    done, retrying, elsewhere = world["alice"]
    listed = laptop("transfer", "ls").stdout.splitlines()
    assert listed[0].split() == ["JOB", "SITE", "SLOT", "DIR", "ITEM", "LOCAL", "PATH", "STATE", "TASK", "ATTEMPTS",
                                 "BYTES", "ERROR"]  # fmt: skip
    assert [line.split()[:8] for line in listed[1:]] == [
        [done, "alpha", "input", "in", "far:/in/1.dat", "in.dat", "done", "t1"],
        [retrying, "alpha", "input", "in", "far:/in/2.dat", "in.dat", "pending", "-"],
        [elsewhere, "beta", "input", "in", "far:/in/4.dat", "in.dat", "pending", "-"],
    ]
    assert listed[2].endswith('...nk_stat "/in/2.dat" failed: No such file or directory (2)')

    [item] = laptop.json("transfer", "ls", "--job", retrying)
    assert (item["site"], item["owner"], item["error"], item["attempts"]) == ("alpha", "alice", RSYNC_ERROR, 1)
    assert [i["job_id"] for i in laptop.json("transfer", "ls", "--site-name", "beta")] == [elsewhere]
    assert [i["job_id"] for i in laptop.json("transfer", "ls", "--state", "done")] == [done]
    assert laptop.json("transfer", "ls", "--by-state") == {"pending": 2, "done": 1}
    assert laptop("transfer", "ls", "--by-state", "--site-name", "beta").stdout == "STATE    COUNT\npending  1\n"

    told = laptop("transfer", "ls", "--job", world["bob"][0], code=1).stderr
    assert f"no job with id {world['bob'][0]} that you may see in the central database" in told
    told = laptop("transfer", "ls", "--site-name", "gamma", code=2).stderr
    assert "no site 'gamma' in the central database (known: alpha, beta)" in told


def test_app_ls_through_central_shows_the_transfer_slots_a_site_publishes(world, laptop: Laptop) -> None:
    shown = laptop("app", "ls", "--site-name", "alpha").stdout
    assert shown.split("\n\n")[1] == (
        "APP     SLOT    DIR  LOCAL PATH  REQUIRED  RECURSIVE  DESCRIPTION\n"
        "Staged  input   in   in.dat      yes       no         -\n"
        "Staged  result  out  out.dat     no        yes        -\n"
    )
    [staged] = [a for a in laptop.json("app", "ls", "--site-name", "alpha") if a["name"] == "Staged"]
    assert staged["transfers"]["result"] == {
        "direction": "out", "local_path": "out.dat", "description": "", "required": False, "recursive": True,
    }  # fmt: skip
