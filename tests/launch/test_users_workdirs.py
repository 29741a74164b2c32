"""Central users' jobs work apart, under users/NAME/ of the site's data, and never outside data/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import balsamd
from balsamd import ids
from balsamd.models import Intent, IntentStatus
from balsamd.validate import JobSpecError

from .conftest import LaunchSite, new_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LaunchSite]:
    with new_site(tmp_path) as made:
        made.command_app("Write", "sh -c 'echo $1 > out.txt' write {{ text }}")
        with balsamd.connect(made.root) as opened:
            opened.apps.sync()
        yield made


def remote_create(site: LaunchSite, owner: str, workdir: str, text: str) -> str:
    """A job created as the central database's intents create them, for ``owner``."""
    job_id = ids.new_id()
    spec = {"id": job_id, "app": "Write", "workdir": workdir, "parameters": {"text": text}}
    with balsamd.connect(site.root) as opened:
        [outcome] = opened.store.apply_intents(
            [Intent(id=ids.new_id(), kind="create", job_id=job_id, payload={"jobs": [spec]}, owner=owner)]
        ).values()
    assert outcome.status == IntentStatus.APPLIED, outcome
    return job_id


def test_two_users_and_the_site_writing_the_same_workdir_never_meet(site: LaunchSite) -> None:
    alice = remote_create(site, "alice", "run/1", "from alice")
    bob = remote_create(site, "bob", "run/1", "from bob")
    [mine] = site.create("Write", parameters={"text": "from the site"}, workdir="run/1")
    site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5")
    assert [site.job(j).workdir for j in (alice, bob, mine)] == ["users/alice/run/1", "users/bob/run/1", "run/1"]
    assert (site.data / "users/alice/run/1/out.txt").read_text() == "from alice\n"
    assert (site.data / "users/bob/run/1/out.txt").read_text() == "from bob\n"
    assert (site.data / "run/1/out.txt").read_text() == "from the site\n"


def test_a_users_job_whose_path_leaves_data_through_a_symlink_fails_without_writing_there(
    site: LaunchSite, tmp_path: Path
) -> None:
    outside = tmp_path / "owners-files"
    outside.mkdir()
    (site.data / "users" / "mallory").mkdir(parents=True)
    os.symlink(outside, site.data / "users" / "mallory" / "escape")  # left by an earlier run
    job_id = remote_create(site, "mallory", "escape/w", "pwned")
    site.launch("--job-mode", "serial", "--nodes", "n1", "--idle-ttl", "0.5", code=None)
    job = site.job(job_id)
    assert job.state == "FAILED"
    assert "WorkdirOutside: workdir users/mallory/escape/w resolves to " in job.state_reason
    assert "outside the site's data/" in job.state_reason
    assert list(outside.iterdir()) == []


def test_the_site_keeps_users_for_central_users(site: LaunchSite) -> None:
    with balsamd.connect(site.root) as opened, pytest.raises(JobSpecError) as refused:
        opened.jobs.create("Write", "users/alice/x", parameters={"text": "t"})
    assert "workdir 'users/alice/x': users/ of data/ is kept for the jobs of central users" in str(refused.value)
