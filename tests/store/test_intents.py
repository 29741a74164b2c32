"""Intents from the central database: each checked, applied at most once, its outcome kept as
data; a malformed one is rejected with the reason and never stops the others."""

from __future__ import annotations

import pytest

from balsamd import ids
from balsamd.models import CentralRow, ClaimLimits, Intent, IntentOutcome, IntentStatus, JobSpec, JobState
from balsamd.store import store as store_module
from balsamd.store.contract import Store
from tests.conftest import make_jobs

APPLIED, REJECTED = IntentStatus.APPLIED, IntentStatus.REJECTED


def create(intent_id: str, *specs: dict[str, object], owner: str = "alice") -> Intent:
    return Intent(id=intent_id, kind="create", job_id="", payload={"jobs": list(specs)}, owner=owner)


def test_a_create_makes_its_jobs_with_their_ids_and_owner(store: Store) -> None:
    job_id = ids.new_id()
    outcomes = store.apply_intents([create("i1", {"id": job_id, "app": "echo", "workdir": "w", "parameters": {}})])
    assert outcomes == {"i1": IntentOutcome(status=APPLIED, created=[job_id])}
    job = store.get(job_id)
    assert (job.owner, job.state, job.parameters) == ("alice", JobState.PREPROCESSED, {"x": 0})


def test_an_intent_seen_again_returns_its_outcome_and_does_nothing_more(store: Store) -> None:
    [job] = make_jobs(store, 1)
    kill = Intent(id="k1", kind="kill", job_id=job.id)
    first = store.apply_intents([kill])
    events = store.events(job.id)
    assert store.apply_intents([kill]) == first == {"k1": IntentOutcome(status=APPLIED, states={job.id: "KILLED"})}
    assert store.events(job.id) == events


def test_the_store_says_which_intents_it_applied_and_their_outcomes(store: Store) -> None:
    """What sync asks after acknowledging: an intent the store has no record of was never
    applied here, or was lost with the store's last commits."""
    [job] = make_jobs(store, 1)
    outcomes = store.apply_intents(
        [Intent(id="k1", kind="kill", job_id=job.id), Intent(id="bad", kind="drop", job_id="x")]
    )
    assert store.intent_outcomes(["k1", "bad", "never", "k1"]) == outcomes
    assert store.intent_outcomes(["never"]) == {}
    assert store.intent_outcomes([]) == {}


@pytest.mark.parametrize(
    ("intent", "reason"),
    [
        (Intent(id="b1", kind="drop", job_id="x"), "drop intent b1: unknown intent kind 'drop'; use one of create, "
         "kill, retry, update, batch_create, batch_delete, delete, app, add_parents"),
        (Intent(id="b2", kind="update", job_id="x", payload=[1]),
         "update intent b2: its payload must be a JSON object"),
        (create("b3"), "create intent: it needs \"jobs\": a non-empty list of job specs"),
        (create("b4", {"app": "noop", "workdir": "w"}), 'job: it is not an object with a string "id"'),
        (create("b5", {"id": "01BAD", "app": "noop", "workdir": "w"}), "job: id '01BAD' is not a balsamd id (26 "
         "letters and digits, see ids.py)"),
        (create("b6", {"id": ids.new_id(), "app": "noop", "workdir": "../x"}), "job: workdir '../x' contains '..'; "
         "give a path inside the site's data/ directory without it"),
        (create("b7", {"id": ids.new_id(), "app": "noop", "workdir": "w", "owner": "mallory"}), "job: unknown "
         "field(s) ['owner']; correct or remove them (a job request takes ['app', 'data', 'gpus_per_rank', "
         "'launch_params', 'node_packing_count', 'num_nodes', 'parameters', 'parent_ids', 'ranks_per_node', 'tags', "
         "'threads_per_core', 'threads_per_rank', 'transfers', 'wall_time_min', 'workdir'])"),
        (Intent(id="b8", kind="kill", job_id="01NOSUCHJOB"),
         "no job with id 01NOSUCHJOB (list jobs with `balsamd job ls`)"),
    ],
)  # fmt: skip
def test_a_malformed_intent_is_rejected_with_its_reason_and_the_others_apply(
    store: Store, intent: Intent, reason: str
) -> None:
    [job] = make_jobs(store, 1)
    before = store.count()
    outcomes = store.apply_intents([intent, Intent(id="ok", kind="kill", job_id=job.id)])
    assert outcomes[intent.id] == IntentOutcome(status=REJECTED, reason=reason)
    assert outcomes["ok"].status == APPLIED
    assert store.count() == before


def test_a_create_of_an_id_that_exists_is_rejected_and_writes_nothing(store: Store) -> None:
    [old] = make_jobs(store, 1)
    fresh = ids.new_id()
    intent = create("d1", {"id": fresh, "app": "noop", "workdir": "a"}, {"id": old.id, "app": "noop", "workdir": "b"})
    [outcome] = store.apply_intents([intent]).values()
    assert outcome.status == REJECTED and "already exists" in outcome.reason
    assert [j.id for j in store.filter()] == [old.id]


def test_a_create_makes_only_jobs_whose_central_rows_are_here_and_its_authors(store: Store) -> None:
    mine, elsewhere, theirs, fresh = (ids.new_id() for _ in range(4))
    central = {mine: CentralRow(here=True, owner="alice"), elsewhere: CentralRow(here=False),
               theirs: CentralRow(here=True, owner="bob")}  # fmt: skip
    specs = {job_id: {"id": job_id, "app": "noop", "workdir": job_id} for job_id in (mine, elsewhere, theirs, fresh)}

    def intent(intent_id: str, *job_ids: str) -> Intent:
        made = create(intent_id, *(specs[i] for i in job_ids))
        made.central = {i: central[i] for i in job_ids if i in central}
        return made

    outcomes = store.apply_intents([intent("c1", fresh, elsewhere), intent("c2", theirs), intent("c3", mine, fresh)])
    assert outcomes["c1"] == IntentOutcome(
        status=REJECTED, reason=f"job 1: id {elsewhere} is taken in the central database by a job of another site"
    )
    assert outcomes["c2"] == IntentOutcome(
        status=REJECTED, reason=f"job: id {theirs} is taken in the central database by a job alice does not own"
    )
    assert outcomes["c3"] == IntentOutcome(status=APPLIED, created=[mine, fresh])
    assert {j.id: j.owner for j in store.filter()} == {mine: "alice", fresh: "alice"}


def test_a_users_job_depends_only_on_that_users_jobs(store: Store) -> None:
    alices, bobs = ids.new_id(), ids.new_id()
    store.apply_intents([create("a", {"id": alices, "app": "noop", "workdir": "a"}),
                         create("b", {"id": bobs, "app": "noop", "workdir": "b"}, owner="bob")])  # fmt: skip
    [site_job] = make_jobs(store, 1)
    before = {j.id for j in store.filter()}
    for n, parent in enumerate((bobs, site_job.id)):
        child = ids.new_id()
        outcome = store.apply_intents([create(f"x{n}", {"id": child, "app": "noop", "workdir": f"x{n}",
                                                        "parent_ids": [parent]})])[f"x{n}"]  # fmt: skip
        assert outcome == IntentOutcome(
            status=REJECTED,
            reason=f"parent job(s) {parent!r} are not jobs of alice: a job may depend only on its owner's jobs; "
            "give ids of your own jobs",
        )
    assert {j.id for j in store.filter()} == before
    child = ids.new_id()
    made = store.apply_intents([create("ok", {"id": child, "app": "noop", "workdir": "ok", "parent_ids": [alices]})])
    assert made["ok"] == IntentOutcome(status=APPLIED, created=[child])
    assert store.get(child).parent_ids == [alices]
    # the site's owner may link any of the site's jobs
    [linked] = store.create_jobs([JobSpec(app="noop", workdir="site-child", parent_ids=[bobs, alices])])
    assert linked.parent_ids == [bobs, alices]


@pytest.mark.parametrize(
    ("kind", "payload"), [("kill", {}), ("retry", {}), ("update", {"parameters": {"x": 1}}), ("delete", {})]
)
def test_only_a_jobs_owner_may_kill_retry_edit_or_delete_it(
    store: Store, kind: str, payload: dict[str, object]
) -> None:
    job_id = ids.new_id()
    store.apply_intents([create("c", {"id": job_id, "app": "echo", "workdir": "w", "parameters": {}})])
    before = store.get(job_id)
    asked = Intent(id="x1", kind=kind, job_id=job_id, payload=payload, owner="mallory")
    assert store.apply_intents([asked])["x1"] == IntentOutcome(
        status=REJECTED, reason=f"{kind} intent x1: job {job_id} is not a job of mallory: only its owner may ask this"
    )
    assert store.get(job_id) == before
    [site_job] = make_jobs(store, 1)  # made at the site: no user's
    outcome = store.apply_intents([Intent(id="x2", kind=kind, job_id=site_job.id, payload=payload, owner="alice")])
    assert (
        outcome["x2"].reason
        == f"{kind} intent x2: job {site_job.id} is not a job of alice: only its owner may ask this"
    )
    owned = store.apply_intents([Intent(id="x3", kind=kind, job_id=job_id, payload=payload, owner="alice")])
    if kind == "retry":  # asked by its owner, and refused only because the job has not failed
        assert owned["x3"].status == REJECTED and "only its owner" not in owned["x3"].reason
    else:
        assert owned["x3"].status == APPLIED
    if kind == "delete":
        assert [j.id for j in store.filter()] == [site_job.id]


def test_a_delete_of_a_job_a_launcher_holds_is_refused_saying_so(store: Store) -> None:
    job_id = ids.new_id()
    store.apply_intents([create("c", {"id": job_id, "app": "echo", "workdir": "w", "parameters": {}})])
    session = store.open_session()
    store.claim(session.id, ClaimLimits(max_jobs=1))
    outcome = store.apply_intents([Intent(id="d1", kind="delete", job_id=job_id, owner="alice")])["d1"]
    assert outcome.status == REJECTED
    assert outcome.reason.startswith(f"job {job_id}: held by launcher session {session.id}")
    assert store.get(job_id).id == job_id


def test_an_unforeseen_failure_rejects_only_its_intent_and_is_logged(
    site_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    [job] = make_jobs(site_store, 1)
    real = store_module.parse_intent

    def fragile(intent: Intent) -> object:
        if intent.id == "boom":
            raise RuntimeError("nobody foresaw this")
        return real(intent)

    monkeypatch.setattr(store_module, "parse_intent", fragile)
    outcomes = site_store.apply_intents([Intent(id="boom", kind="kill", job_id=job.id),
                                         Intent(id="fine", kind="kill", job_id=job.id)])  # fmt: skip
    assert outcomes["boom"] == IntentOutcome(
        status=REJECTED, reason="the site could not apply it: RuntimeError: nobody foresaw this"
    )
    assert outcomes["fine"].status == APPLIED
    assert "intent boom could not be applied" in caplog.text


def test_a_central_users_job_works_under_their_own_directory(store: Store) -> None:
    made = {}
    for owner in ("alice", "bob"):
        job_id = ids.new_id()
        store.apply_intents([create(f"c-{owner}", {"id": job_id, "app": "noop", "workdir": "run/1"}, owner=owner)])
        made[owner] = store.get(job_id).workdir
    assert made == {"alice": "users/alice/run/1", "bob": "users/bob/run/1"}


def test_an_owner_that_cannot_name_a_directory_is_rejected(store: Store) -> None:
    intent = create("o1", {"id": ids.new_id(), "app": "noop", "workdir": "w"}, owner="../x")
    [outcome] = store.apply_intents([intent]).values()
    assert outcome == IntentOutcome(
        status=REJECTED, reason="job: owner '../x' cannot name a directory of the site; only letters, digits and _.@-"
    )
