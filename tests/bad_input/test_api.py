"""Bad input to the Python API: the exception says what field is wrong and what to give, and
nothing is written.

The same cases run on a site opened in this process ("local") and on a site whose store is its
running daemon's, over the RPC ("rpc"); the remote API's run against a real central PostgreSQL,
whose rows are counted before and after.  Each case is a call on the site (or the central
connection) that must raise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import balsamd
from balsamd.api import Site
from balsamd.models import JobSpec
from balsamd.site import SiteError
from balsamd.store.errors import JobNotFound, StoreError
from balsamd.sync.remote import CentralConnection
from balsamd.sync.schema import CentralError
from balsamd.validate import JobSpecError, Refused
from tests.bad_input.table import Case, Snapshot, assert_told, case, params
from tests.daemon.conftest import new_site, running
from tests.sync.conftest import Central, SiteMaker, central_database

GOOD: dict[str, Any] = {"app": "hello", "workdir": "w", "parameters": {"name": "a"}}
DEEP: Any = "x"
for _ in range(200):
    DEEP = [DEEP]


def create(**fields: Any) -> Callable[[Site], object]:
    """A create of the good request with ``fields`` changed."""
    return lambda site: site.jobs.create(**{**GOOD, **fields})


def data(value: Any) -> Callable[[Site], object]:
    return create(data={"x": value})


class Opaque:
    """An object of a class: no JSON form."""


CASES = [
    # the request's shape
    case("parameters-a-list", create(parameters=["a"]), JobSpecError, "parameters", "a dict", "give"),
    case("parent-ids-a-string", create(parent_ids="ABC"), JobSpecError, "parent_ids", "a list"),
    case("parent-ids-unknown", create(parent_ids=["ABC"]), StoreError, "parent", "'ABC'", "job ls"),
    case("parent-ids-twice", create(parent_ids=["ABC", "ABC"]), JobSpecError, "parent_ids", "once"),
    case("tags-number-value", create(tags={"k": 1}), JobSpecError, "tags", "a string"),
    case("num-nodes-a-string", create(num_nodes="2"), JobSpecError, "num_nodes", "a whole number"),
    case("num-nodes-true", create(num_nodes=True), JobSpecError, "num_nodes", "a whole number"),
    case("num-nodes-huge", create(num_nodes=2**80), JobSpecError, "num_nodes"),
    case("unknown-field", create(nodes=2), JobSpecError, "'nodes'", "takes"),
    case("workdir-none", create(workdir=None), JobSpecError, "workdir", "a string"),
    case("app-unknown", create(app="nope"), JobSpecError, "unknown app 'nope'", "app create"),
    case(
        "bulk-item-not-a-dict", lambda s: s.jobs.bulk_create([GOOD, 5]), JobSpecError, "job 1", "a dict", "not an int"
    ),
    case("bulk-one-request", lambda s: s.jobs.bulk_create(GOOD), JobSpecError, "bulk_create", "a list", "create()"),
    case("bulk-a-string", lambda s: s.jobs.bulk_create("hello"), JobSpecError, "bulk_create", "not a str"),
    case(
        "bulk-shared-workdir",
        lambda s: s.jobs.bulk_create([GOOD, GOOD]),
        JobSpecError,
        "jobs 0 and 1",
        "same workdir",
        "its own",
    ),
    case(
        "bulk-shared-after-normalizing",
        lambda s: s.jobs.bulk_create([GOOD, {**GOOD, "workdir": "./w/"}]),
        JobSpecError,
        "same workdir 'w'",
    ),
    case(
        "bulk-a-jobspec-with-a-set",
        lambda s: s.jobs.bulk_create([JobSpec(app="hello", workdir="w", parameters={"name": "a"}, data={"x": {1}})]),
        JobSpecError,
        "data['x']",
        "a set",
        "a list",
    ),
    # values no transport keeps
    case("data-a-set", data({1, 2}), JobSpecError, "data['x']", "a set", "give a list"),
    case("data-bytes", data(b"\x00\x01"), JobSpecError, "data['x']", "bytes", "decode"),
    case("data-an-object", data(Opaque()), JobSpecError, "data['x']", "Opaque", "use strings"),
    case("data-nan", data(float("nan")), JobSpecError, "data['x']", "nan", "as a string"),
    case("data-inf", data(float("inf")), JobSpecError, "data['x']", "inf"),
    case("data-beyond-64-bits", data(2**70), JobSpecError, "data['x']", "64 bits", "as a string"),
    case("data-nested-deep", data(DEEP), JobSpecError, "data['x']", "nested", "flatten"),
    case("data-int-key", create(data={1: "a"}), JobSpecError, "data", "keys must be a string"),
    case("data-lone-surrogate", data("\ud800"), JobSpecError, "data['x']", "surrogate", "valid Unicode"),
    case("data-nul-in-key", create(data={"a\0": 1}), JobSpecError, "key", "NUL", "remove"),
    case("parameter-nul", create(parameters={"name": "a\0b"}), JobSpecError, "parameters['name']", "NUL"),
    case("parameter-a-set", create(parameters={"name": {"a"}}), JobSpecError, "parameters['name']", "a set"),
    case("tag-nul", create(tags={"k": "v\0"}), JobSpecError, "tags['k']", "NUL"),
    case("tag-key-space", create(tags={"a b": "v"}), JobSpecError, "tag key 'a b'", "KEY=VALUE"),
    case("workdir-nul", create(workdir="a\0b"), JobSpecError, "workdir", "NUL"),
    case("app-nul", create(app="hel\0lo"), JobSpecError, "app", "NUL"),
    case("launch-param-space", create(launch_params={"a b": "1"}), JobSpecError, "launch parameter 'a b'", "give"),
    # filters and ids
    case("filter-state-unknown", lambda s: s.jobs.filter(state="DONE"), Refused, "'DONE'", "one of CREATED"),
    case("filter-states-a-string", lambda s: s.jobs.filter(states="RUNNING"), Refused, "states", "lists"),
    case("filter-limit-negative", lambda s: s.jobs.filter(limit=-1), Refused, "limit", "-1", "give"),
    case("filter-limit-a-string", lambda s: s.jobs.filter(limit="10"), Refused, "limit", "a whole number"),
    case("filter-unknown", lambda s: s.jobs.filter(status="KILLED"), TypeError, "'status'", "use"),
    case("kill-a-string", lambda s: s.jobs.kill("ABC"), JobSpecError, "job ids", "a list", "['ABC']"),
    case("retry-a-number", lambda s: s.jobs.retry(5), JobSpecError, "job ids", "a list"),
    case("kill-unknown", lambda s: s.jobs.kill(["NOPE"]), JobNotFound, "NOPE", "job ls"),
    case("get-unknown", lambda s: s.jobs.get("NOPE"), JobNotFound, "NOPE", "job ls"),
    case("get-empty", lambda s: s.jobs.get(" "), JobNotFound, "empty", "give"),
    case("connect-a-number", lambda s: balsamd.connect(5), SiteError, "connect()", "an int", "give"),  # type: ignore[arg-type]
]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A site opened in this process, and one whose daemon runs (the API reaches its store over
    the RPC when BALSAMD_RPC=1)."""
    base = tmp_path_factory.mktemp("api")
    with running(base / "rpc") as served, new_site(base / "local") as local:
        for made in (served, local):
            made.command_app("hello", "echo {{ name }}")
        yield {"local": local.root, "rpc": served.root}


@pytest.fixture(params=["local", "rpc"])
def site(request: pytest.FixtureRequest, sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    root = sites[request.param]
    monkeypatch.setenv("BALSAMD_RPC", "1" if request.param == "rpc" else "0")
    opened = balsamd.connect(root)
    assert isinstance(opened, Site)
    assert (request.param == "rpc") == (type(opened.store).__name__ == "RemoteStore")
    opened.apps.sync()
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.parametrize("bad", params(CASES))
def test_a_bad_call_is_refused_and_writes_nothing(site: Site, bad: Case) -> None:
    before = Snapshot.of(site.path)
    assert isinstance(bad.error, type)
    with pytest.raises(bad.error) as raised:
        bad.given(site)
    assert_told(str(raised.value), bad.words)
    assert Snapshot.of(site.path) == before
    assert site.jobs.count() == 0


def test_the_sites_take_a_good_request_after_every_bad_one(site: Site) -> None:
    made = site.jobs.create(**GOOD)
    assert site.jobs.get(made.id).workdir == "w"
    site.jobs.delete([made])


# ----- the remote API, through the central database

REMOTE = "alpha"


def remote_create(**fields: Any) -> Callable[[CentralConnection], object]:
    return lambda c: c.jobs.create(site=REMOTE, **{"app": "Noop", "workdir": "w", **fields})


REMOTE_CASES = [
    case(
        "remote-site-unknown", lambda c: c.jobs.create("Noop", "w", site="omega"), JobSpecError, "unknown site 'omega'"
    ),
    case(
        "remote-site-a-number",
        lambda c: c.jobs.bulk_create([{"app": "Noop", "workdir": "w", "site": 5}]),
        JobSpecError,
        "site=",
        "pass site=NAME",
    ),
    case(
        "remote-no-site",
        lambda c: c.jobs.bulk_create([{"app": "Noop", "workdir": "w"}]),
        JobSpecError,
        "no site given",
        "pass site=NAME",
    ),
    case("remote-parameters-a-list", remote_create(parameters=["a"]), JobSpecError, "parameters", "a dict"),
    case("remote-parent-ids-a-string", remote_create(parent_ids="ABC"), JobSpecError, "parent_ids", "a list"),
    case("remote-data-a-set", remote_create(data={"x": {1}}), JobSpecError, "data['x']", "a set"),
    case("remote-data-nan", remote_create(data={"x": float("nan")}), JobSpecError, "data['x']", "nan"),
    case("remote-data-bytes", remote_create(data={"x": b"a"}), JobSpecError, "data['x']", "bytes"),
    case("remote-tag-nul", remote_create(tags={"k": "\0"}), JobSpecError, "tags['k']", "NUL"),
    case("remote-workdir-nul", remote_create(workdir="a\0"), JobSpecError, "workdir", "NUL"),
    case("remote-app-unknown", remote_create(app="nope"), JobSpecError, "has no app 'nope'"),
    case("remote-launch-param-space", remote_create(launch_params={"a b": "1"}), JobSpecError, "launch parameter"),
    case("remote-bulk-not-a-dict", lambda c: c.jobs.bulk_create([5], site=REMOTE), JobSpecError, "a dict"),
    case(
        "remote-bulk-one-request",
        lambda c: c.jobs.bulk_create({"app": "Noop"}, site=REMOTE),
        JobSpecError,
        "a list",
        "create()",
    ),
    case(
        "remote-bulk-shared-workdir",
        lambda c: c.jobs.bulk_create([{"app": "Noop", "workdir": "w"}] * 2, site=REMOTE),
        JobSpecError,
        "same workdir",
    ),
    case("remote-filter-limit-negative", lambda c: c.jobs.filter(limit=-1), Refused, "limit", "give"),
    case("remote-filter-state-unknown", lambda c: c.jobs.filter(state="DONE"), Refused, "'DONE'", "one of CREATED"),
    case("remote-kill-a-string", lambda c: c.jobs.kill("ABC"), JobSpecError, "job ids", "a list"),
    case("remote-get-empty", lambda c: c.jobs.get(""), CentralError, "names no job", "give"),
    case("remote-update-nothing", lambda c: c.jobs.update("ABC"), Refused, "nothing to edit", "give"),
    case("remote-update-tag-space", lambda c: c.jobs.update("ABC", tags={"a b": "c"}), Refused, "tag key 'a b'"),
    case("remote-update-data-a-set", lambda c: c.jobs.update("ABC", data={"x": {1}}), Refused, "data['x']"),
    case("remote-update-unknown-field", lambda c: c.jobs.update("ABC", nodes=2), Refused, "nodes", "remove"),
]


@pytest.fixture(scope="module")
def remote(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Central, CentralConnection]]:
    with central_database(pg_server) as central:
        maker = SiteMaker(tmp_path_factory.mktemp("central"), central)
        try:
            maker(REMOTE).sync()
            central.add_user("ann")
            with central.remote("ann") as conn:
                yield central, conn
        finally:
            maker.close()


def central_rows(central: Central) -> dict[str, int]:
    tables = [t for (t,) in central.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'balsamd'")]
    return {t: central.rows(f"SELECT count(*) FROM balsamd.{t}")[0][0] for t in sorted(tables)}


@pytest.mark.parametrize("bad", params(REMOTE_CASES))
def test_a_bad_remote_call_is_refused_and_writes_nothing(remote: tuple[Central, CentralConnection], bad: Case) -> None:
    central, conn = remote
    before = central_rows(central)
    assert isinstance(bad.error, type)
    with pytest.raises(bad.error) as raised:
        bad.given(conn)
    assert_told(str(raised.value), bad.words)
    assert central_rows(central) == before
    assert conn.jobs.count() == 0


def test_central_takes_a_good_request_after_every_bad_one(remote: tuple[Central, CentralConnection]) -> None:
    _, conn = remote
    made = conn.jobs.create("Noop", "w", site=REMOTE)
    assert conn.jobs.get(made.id).workdir == "users/ann/w"
