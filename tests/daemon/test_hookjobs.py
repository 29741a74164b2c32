"""What the daemon tells a hook of its job's parents: a real store, real jobs of two central
users and of the site, real directories."""

from __future__ import annotations

import json
from pathlib import Path

import apsw

from balsamd import ids
from balsamd.daemon.hookjobs import parents_reply
from balsamd.models import Intent, JobSpec
from balsamd.store.store import SiteStore


def users_job(store: SiteStore, owner: str, workdir: str, parent_ids: list[str] | None = None) -> str:
    job_id = ids.new_id()
    spec = {"id": job_id, "app": "noop", "workdir": workdir, "parent_ids": parent_ids or []}
    intent = Intent(id=f"i-{job_id}", kind="create", job_id="", payload={"jobs": [spec]}, owner=owner)
    store.apply_intents([intent])
    return job_id


def test_the_sites_own_job_reads_every_parent_with_its_workdir(store: SiteStore, tmp_path: Path) -> None:
    prefix = f"{tmp_path / 'data'}/"
    alices = users_job(store, "alice", "a")
    [own] = store.create_jobs([JobSpec(app="noop", workdir="own")])
    [child] = store.create_jobs([JobSpec(app="noop", workdir="child", parent_ids=[own.id, alices])])
    reply = parents_reply(store, prefix, child.id)
    assert reply.error == ""
    assert [(p.id, p.workdir_path) for p in reply.parents] == [
        (own.id, prefix + "own"),
        (alices, prefix + "users/alice/a"),
    ]


def test_a_users_hook_does_not_read_another_users_parent(store: SiteStore, tmp_path: Path) -> None:
    mine = users_job(store, "alice", "mine")
    bobs = users_job(store, "bob", "his")
    refused = users_job(store, "alice", "refused", [mine, bobs])
    assert refused not in {j.id for j in store.filter()}  # no such link is made now
    child = users_job(store, "alice", "child", [mine])
    # a link made before the store refused them, as a store of an earlier version may hold one
    with apsw.Connection(str(store.db.path)) as conn:
        conn.execute("UPDATE jobs SET parent_ids = ? WHERE id = ?", (json.dumps([mine, bobs]), child))
    reply = parents_reply(store, f"{tmp_path / 'data'}/", child)
    assert reply.parents == []
    assert reply.error == f"parent {bobs} of job {child} is another user's; a hook reads only its own user's parents"


def test_a_users_parent_whose_workdir_leads_out_of_data_is_not_handed_over(store: SiteStore, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "users" / "alice").mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    (data / "users" / "alice" / "parent").symlink_to(tmp_path / "secrets")
    parent = users_job(store, "alice", "parent")
    child = users_job(store, "alice", "child", [parent])
    reply = parents_reply(store, f"{data}/", child)
    assert reply.parents == []
    assert reply.error == (
        f"parent {parent}: workdir users/alice/parent resolves to {tmp_path / 'secrets'}, outside the site's data/"
    )
