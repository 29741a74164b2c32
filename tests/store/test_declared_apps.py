"""Apps declared by central users: installed only for the users the site's owner names in
``[apps] accept_from``, never over an app of the site's own files nor over another user's; a
refusal is the intent's outcome, saying why and what to do.  Over every transport."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from balsamd.models import App, AppKind, Intent, IntentOutcome, IntentStatus
from balsamd.store.contract import Store
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules
from tests.conftest import APPS, RULES
from tests.store.conftest import TRANSPORTS, over

NORM = """\
import numpy as np
from balsamd.apps import ApplicationDefinition


class Norm(ApplicationDefinition):
    site = "alpha"

    def run(self, vec):
        return np.linalg.norm(vec)
"""


@pytest.fixture(params=TRANSPORTS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    """A store whose site accepts apps from alice and carol."""
    local = SiteStore(tmp_path / "store.db", SiteRules(nodes=RULES.nodes, accept_apps_from=["alice", "carol"]))
    local.put_apps(APPS)
    with over(request.param, local) as reached:
        yield reached


def declare(intent_id: str, owner: str, name: str = "Norm", code: str = NORM) -> Intent:
    return Intent(id=intent_id, kind="app", job_id="", payload={"name": name, "code": code}, owner=owner)


def outcome(store: Store, intent: Intent) -> IntentOutcome:
    return store.apply_intents([intent])[intent.id]


def test_an_app_of_a_user_the_site_accepts_is_recorded_for_the_daemon_to_write(store: Store) -> None:
    assert outcome(store, declare("i1", "alice")) == IntentOutcome(status=IntentStatus.APPLIED)
    [declared] = store.declared_apps()
    assert (declared.name, declared.owner, declared.code, declared.intent_id, declared.written) == (
        "Norm", "alice", NORM, "i1", False,
    )  # fmt: skip
    assert declared.file == "declared_Norm.py"
    assert store.declared_app_written("Norm", "i1") is True
    assert store.declared_apps()[0].written is True


def test_a_user_the_site_does_not_name_is_told_to_ask_its_owner_and_nothing_is_recorded(store: Store) -> None:
    refused = outcome(store, declare("i1", "bob"))
    assert refused == IntentOutcome(
        status=IntentStatus.REJECTED,
        reason="app Norm: central user bob may not install apps at this site: ask the site's owner to add you to "
        "[apps] accept_from in settings.toml",
    )
    assert store.declared_apps() == []


def test_an_app_of_the_sites_own_file_is_never_replaced(store: Store) -> None:
    store.put_apps([App(name="Norm", kind=AppKind.PYTHON, source="norm.py", class_name="Norm")])
    refused = outcome(store, declare("i1", "alice"))
    assert refused.reason == (
        "app Norm: the site has its own app Norm (apps/norm.py), which a declared app never replaces; rename your class"
    )
    store.put_apps([App(name="Other", kind=AppKind.PYTHON, source="declared_Mine.py", class_name="Other")])
    refused = outcome(store, declare("i2", "alice", "Mine", NORM.replace("class Norm", "class Mine")))
    assert refused.reason == (
        "app Mine: apps/declared_Mine.py is a file of the site's own, which a declared app never replaces; "
        "rename your class"
    )
    assert store.declared_apps() == []


def test_a_declared_app_is_replaced_by_its_author_only(store: Store) -> None:
    outcome(store, declare("i1", "alice"))
    store.declared_app_written("Norm", "i1")
    # the daemon publishes it from its file
    store.put_apps([App(name="Norm", kind=AppKind.PYTHON, source="declared_Norm.py", class_name="Norm")])
    refused = outcome(store, declare("i2", "carol"))
    assert refused.reason == "app Norm: app Norm was declared by alice; only they may replace it: rename your class"
    again = NORM.replace("np.linalg.norm(vec)", "float(np.linalg.norm(vec))")
    assert outcome(store, declare("i3", "alice", code=again)).status == IntentStatus.APPLIED
    [declared] = store.declared_apps()
    assert (declared.code, declared.intent_id, declared.written) == (again, "i3", False)
    assert store.declared_app_written("Norm", "i1") is False  # a write of the older text records nothing


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"name": "1x", "code": NORM}, "app intent i1: the app's name '1x' is not a class name"),
        ({"name": "Norm", "code": 7}, "app Norm: its code is not text: send the app with MyApp.sync()"),
        ({"name": "Norm", "code": "class Norm(:\n"}, "app Norm: its code is not Python: invalid syntax at line 1"),
        (
            {"name": "Norm", "code": NORM + "\nprint('side effect')\n"},
            "app Norm: line 11 is neither an import nor the class: a declared app's module holds only imports",
        ),
        (
            {"name": "Other", "code": NORM},
            "app Other: it must define exactly one class, Other, at its top level (it defines: Norm)",
        ),
        (
            {"name": "Norm", "code": NORM.replace('site = "alpha"', 'name = "noop"')},
            "app Norm: its class sets `name`: a declared app is named by its class; rename the class instead",
        ),
    ],
    ids=["name", "not-text", "syntax", "statement", "class-name", "sets-name"],
)
def test_a_malformed_declaration_is_refused_saying_what_is_wrong(store: Store, payload: dict, reason: str) -> None:
    refused = outcome(store, Intent(id="i1", kind="app", job_id="", payload=payload, owner="alice"))
    assert refused.status == IntentStatus.REJECTED
    assert refused.reason.startswith(reason)
    assert store.declared_apps() == []
