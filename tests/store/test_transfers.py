"""A job's transfer items: kept on the job as given, checked by the store at creation whoever
creates it, over every transport and for the central database's create intents."""

from __future__ import annotations

import pytest

from balsamd import ids
from balsamd.models import App, Intent, IntentStatus, JobSpec, TransferSlot
from balsamd.store.contract import Store
from balsamd.validate import Refused

MOVES = App(
    name="moves",
    command_template="true",
    transfers={
        "input": TransferSlot(direction="in", local_path="in.dat", required=True, description="the data"),
        "output": TransferSlot(direction="out", local_path="out.dat"),
    },
)


def spec(**transfers: str) -> JobSpec:
    return JobSpec(app="moves", workdir="w", transfers=transfers)


@pytest.fixture
def moves(store: Store) -> Store:
    store.put_apps([MOVES])
    return store


def test_a_jobs_transfer_items_are_kept_on_it(moves: Store) -> None:
    items = {"input": "far:/in/1.dat", "output": "archive:/results/run1/"}
    [job] = moves.create_jobs([spec(**items)])
    assert job.transfers == items
    assert moves.get(job.id).transfers == items


def test_a_job_of_an_app_without_slots_has_no_items() -> None:
    assert JobSpec(app="noop", workdir="w").transfers == {}


CASES = {
    "an unknown slot": (
        {"input": "far:/a", "inptu": "far:/b"},
        "job: transfers: app moves has no transfer slot 'inptu' (its slots: input, output); correct the name or "
        "leave it out",
    ),
    "a required slot missing": (
        {"output": "far:/out"},
        "job: transfers: missing required slot input of app moves (the data): add --transfer input=LOCATION:PATH",
    ),
    "an unknown location": (
        {"input": "near:/a"},
        "job: transfers['input']: unknown location 'near' (this site's locations: archive, far); use one of them, "
        "or the site's owner adds it to [transfers.locations] in settings.toml",
    ),
    "no location": (
        {"input": "/in/1.dat"},
        "job: transfers['input']: '/in/1.dat' is not LOCATION:PATH; give a location's name, ':' and an absolute "
        "path, e.g. far:/in/1.dat",
    ),
    "a relative path": (
        {"input": "far:in/1.dat"},
        "job: transfers['input']: path 'in/1.dat' is not absolute; give it from the location's base directory, "
        "e.g. /in/1.dat",
    ),
    "a path that climbs out of the base directory": (
        {"input": "far:/in/../../home/owner/.ssh/id_ed25519"},
        "job: transfers['input']: path '/in/../../home/owner/.ssh/id_ed25519' contains '..', which would leave "
        "the location's base directory; give it without",
    ),
    "a path that normalizes to the base's parent": (
        {"input": "far:/.."},
        "job: transfers['input']: path '/..' contains '..', which would leave the location's base directory; "
        "give it without",
    ),
    "the base directory itself": (
        {"output": "far:/./", "input": "far:/a"},
        "job: transfers['output']: path '/./' is the base directory itself; give a file or directory below it",
    ),
    "a NUL in the path": (
        {"input": "far:/a\0b"},
        "job: transfers['input'] contains a NUL character (\\x00), which no command line or database text can hold; "
        "remove it",
    ),
    "a path too long": (
        {"input": "far:/" + "x" * 5000},
        "job: transfers['input']: path is 5001 characters; give one of at most 4096",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_transfer_item_is_refused_saying_what_to_give_and_nothing_is_written(moves: Store, case: str) -> None:
    items, message = CASES[case]
    with pytest.raises(Refused) as refused:
        moves.create_jobs([spec(**items)])
    assert str(refused.value) == message
    assert moves.filter() == []


def test_a_create_intent_from_central_gets_the_same_checks(moves: Store) -> None:
    good, bad = ids.new_id(), ids.new_id()
    payload = {"app": "moves", "workdir": "w"}
    outcomes = moves.apply_intents([
        Intent(id="i1", kind="create", job_id=good, owner="alice",
               payload={"jobs": [{"id": good, **payload, "transfers": {"input": "far:/alice/in.dat"}}]}),
        Intent(id="i2", kind="create", job_id=bad, owner="mallory",
               payload={"jobs": [{"id": bad, **payload, "transfers": {"input": "far:/../../etc/shadow"}}]}),
    ])  # fmt: skip
    assert outcomes["i1"].status == IntentStatus.APPLIED
    assert moves.get(good).transfers == {"input": "far:/alice/in.dat"}
    assert outcomes["i2"].status == IntentStatus.REJECTED
    assert "path '/../../etc/shadow' contains '..'" in outcomes["i2"].reason
    assert [j.id for j in moves.filter()] == [good]
