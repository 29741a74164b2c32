"""Driving a campaign from a laptop: an app class written in a script is sent to its site,
installed there only for users its owner names, and run on numpy vectors whose results come
back through the central database (the seed's ``MyApp``).  A real PostgreSQL, a site with its
daemon running on the local scheduler, batch jobs from its elastic queue."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from balsamd import ApplicationDefinition, JobState
from balsamd.declare import AppRefused, DeclareError, module_code
from tests.daemon.conftest import ELASTIC_SETTINGS, wait_until
from tests.sync.conftest import Central, SiteMaker

ELASTIC: dict[str, object] = {"apps.accept_from": ["alice"], **ELASTIC_SETTINGS}


class MyApp(ApplicationDefinition):
    site = "alpha"

    def run(self, vec):
        return np.linalg.norm(vec)


class Square(ApplicationDefinition):  # the site has an app of this name in its own apps/square.py
    site = "alpha"

    def run(self, x):
        return x * x


class Quiet(ApplicationDefinition):
    site = "beta"
    command_template = "true"


def running_site(central: Central, make_site: SiteMaker, name: str = "alpha"):
    site = make_site(name, settings=ELASTIC)
    site.start()
    wait_until(lambda: central.rows("SELECT 1 FROM balsamd.apps WHERE site = %s", (name,)), "the site publishes")
    return site


@pytest.mark.slow
def test_a_user_the_site_accepts_declares_myapp_and_gathers_the_norms_of_ten_vectors(
    central: Central, make_site: SiteMaker
) -> None:
    site = running_site(central, make_site)
    central.add_user("alice")
    vectors = [np.random.default_rng(i).random(3) for i in range(10)]
    with central.remote("alice") as conn:  # the most recent connection: submit() uses it
        jobs = [
            MyApp.submit(workdir=f"test/{i}", vec=vec, node_packing_count=4, gpus_per_rank=0)
            for i, vec in enumerate(vectors)
        ]
        assert [job.record.node_packing_count for job in jobs] == [4] * 10
        assert [sorted(job.parameters) for job in jobs] == [["vec"]] * 10
        norms = {}
        for job in conn.jobs.as_completed(jobs, timeout=120):
            assert job.state == JobState.JOB_FINISHED, job.state_reason
            norms[job.workdir] = job.result()
    assert norms == {f"users/alice/test/{i}": pytest.approx(np.linalg.norm(vec)) for i, vec in enumerate(vectors)}

    installed = site.root / "apps" / "declared_MyApp.py"
    st = installed.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o600)
    assert installed.read_text().endswith(module_code(MyApp))
    assert "import numpy as np\n" in module_code(MyApp)
    with site.store() as store:
        assert {b.origin for b in store.batch_jobs()} == {"elastic"}


@pytest.mark.slow
def test_a_user_the_site_does_not_name_is_told_to_ask_its_owner(central: Central, make_site: SiteMaker) -> None:
    site = running_site(central, make_site)
    central.add_user("bob")
    with central.remote("bob") as bob:
        with pytest.raises(AppRefused) as refused:
            MyApp.sync(conn=bob, timeout=60)
        with pytest.raises(AppRefused):
            MyApp.submit(workdir="test/0", vec=np.ones(3), conn=bob)
        assert bob.jobs.filter(site="alpha") == []
    assert str(refused.value) == (
        "site alpha refused app MyApp: central user bob may not install apps at this site: ask the site's owner "
        "to add you to [apps] accept_from in settings.toml"
    )
    assert not (site.root / "apps" / "declared_MyApp.py").exists()


@pytest.mark.slow
def test_an_app_of_the_sites_own_file_is_not_replaced_by_a_declared_one(central: Central, make_site: SiteMaker) -> None:
    site = running_site(central, make_site)
    central.add_user("alice")
    own = (site.root / "apps" / "square.py").read_text()
    with central.remote("alice") as alice, pytest.raises(AppRefused) as refused:
        Square.sync(conn=alice, timeout=60)
    assert str(refused.value) == (
        "site alpha refused app Square: the site has its own app Square (apps/square.py), which a declared app "
        "never replaces; rename your class"
    )
    assert (site.root / "apps" / "square.py").read_text() == own
    assert not (site.root / "apps" / "declared_Square.py").exists()


def test_a_site_that_does_not_answer_is_said_to_and_the_request_stays(central: Central, make_site: SiteMaker) -> None:
    make_site("beta")  # registered, its daemon not started
    central.add_user("alice")
    with central.remote("alice") as alice, pytest.raises(TimeoutError) as late:
        Quiet.sync(conn=alice, timeout=0.5)
    assert str(late.value).startswith(
        "site beta has not answered within 0.5 s: its daemon applies requests when it syncs with the central "
        "database (is it running? `balsamd status` at the site); request "
    )
    assert central.rows("SELECT kind, owner, applied_at FROM balsamd.intents") == [("app", "alice", None)]


def test_a_class_whose_source_cannot_be_read_is_refused_saying_where_to_define_it() -> None:
    namespace: dict[str, object] = {"ApplicationDefinition": ApplicationDefinition}
    exec("class Typed(ApplicationDefinition):\n    site = 'alpha'\n    command_template = 'true'\n", namespace)
    with pytest.raises(DeclareError) as refused:
        module_code(namespace["Typed"])  # type: ignore[arg-type]
    assert "define the class in a file, or in a notebook cell, whose source Python keeps" in str(refused.value)


LIMIT = 3


class UsesAConstant(ApplicationDefinition):
    site = "alpha"

    def run(self, x):
        return x < LIMIT


def test_a_value_the_script_defines_does_not_travel_and_is_named() -> None:
    with pytest.raises(DeclareError) as refused:
        module_code(UsesAConstant)
    assert str(refused.value) == (
        "app UsesAConstant uses LIMIT, which its script defines: a declared app carries only its class and its "
        "imports; define LIMIT inside the class, or import it from a module"
    )
