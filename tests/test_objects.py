"""Balsam's names over the one API (``balsamd.Job.objects``, ``balsamd.BatchJob.objects``): each
call goes to the most recent ``balsamd.connect(...)``, here a site's own directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import balsamd
from balsamd import ApplicationDefinition, BatchJob, Job
from balsamd.api import Site
from balsamd.models import BatchJobState, JobMode
from balsamd.validate import Refused
from tests.test_api import make_site


class Greet(ApplicationDefinition):
    site = "here"
    command_template = "echo hi {{ who }}"


@pytest.fixture
def here(tmp_path: Path) -> Iterator[Site]:
    with balsamd.connect(make_site(tmp_path / "here")) as site:
        assert isinstance(site, Site)
        yield site


def test_jobs_are_created_found_and_named_as_balsam_names_them(here: Site) -> None:
    job = Job.objects.create(site_name="here", app_id="hello", workdir="say/hi", parameters={"name": "you"})
    other = Job.objects.create(site_id="here", app_id="sim", workdir="sim/1", parameters={"x": 2})
    assert (job.site_id, job.site_name, job.app_id, job.workdir) == ("here", "here", "hello", "say/hi")
    assert Job.objects.filter(app_id="sim") == [other]
    assert Job.objects.filter(site_name="here", id=job.id) == [job]
    assert Job.objects.get(id=other.id) == other
    assert Job.objects.get(app_id="hello") == job
    with pytest.raises(LookupError) as many:
        Job.objects.get(site_id="here")
    assert str(many.value) == "2 jobs match {'site': 'here'}; give criteria that match one job"
    with pytest.raises(Refused) as both:
        Job.objects.filter(site_name="here", site_id="there")
    assert str(both.value) == "filter: site_id='there' names another site than 'here'; give one"


def test_a_job_of_an_app_this_script_declares_sends_the_app_first(here: Site) -> None:
    job = Job.objects.create(site_name="here", app_id="Greet", workdir="greet/1", parameters={"who": "all"})
    assert job.app_id == "Greet"
    assert (here.path / "apps" / "declared_Greet.py").is_file()
    assert [app.name for app in here.apps.list()] == ["Greet", "hello", "sim"]


def test_batch_jobs_are_asked_for_at_a_jobs_site(here: Site) -> None:
    job = Job.objects.create(site_name="here", app_id="hello", workdir="say/hi", parameters={"name": "you"})
    made = BatchJob.objects.create(site_id=job.site_id, num_nodes=1, wall_time_min=10, job_mode="serial",
                                   project="local", queue="local")  # fmt: skip
    assert (made.num_nodes, made.wall_time_min, made.job_mode, made.project, made.queue) == (
        1, 10, JobMode.SERIAL, "local", "local"
    )  # fmt: skip
    assert BatchJob.objects.filter(site_id="here", state=BatchJobState.PENDING_SUBMISSION) == [made]
    with pytest.raises(Refused):
        BatchJob.objects.create(site_id="elsewhere", num_nodes=1, wall_time_min=10)
