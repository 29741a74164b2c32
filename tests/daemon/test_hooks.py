"""Lifecycle hooks run by the daemon's processing service, in worker processes.

One daemon serves every test of this module (hook workers are warm processes, worth sharing);
each test makes its own jobs and ends by checking that the daemon still serves with a
processing service that never failed.  Runs are reported over the daemon's RPC as a launcher
would report them, so each test decides exactly which state its job reaches.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from balsamd.models import ClaimLimits, JobSpec, StateUpdate
from balsamd.states import JobState
from balsamd.store.queries import claimed_jobs
from tests.daemon.conftest import DaemonSite, running, wait_until

S = JobState
HOOK_TIMEOUT = 4.0

APPS = {
    # preprocess: one chooses its state and records data, one leaves the state to the default
    "PreSets": """
command_template = "true"

def preprocess(self):
    self.job.data["pre"] = "done"
    self.job.state = JobState.PREPROCESSED
""",
    "PreDefault": """
command_template = "true"

def preprocess(self):
    self.job.data["seen"] = self.job.state
""",
    # postprocess: records the return code, appends to a list already in data, and asks for
    # a rerun while the job's data says so
    "Post": """
command_template = "true"

def postprocess(self):
    self.job.data["rc"] = self.job.return_code
    self.job.data.setdefault("log", []).append("post")
    if self.job.data.get("rerun"):
        self.job.data["rerun"] = False
        self.job.state = JobState.RESTART_READY
    else:
        self.job.state = JobState.POSTPROCESSED
""",
    "Raises": """
command_template = "true"

def postprocess(self):
    raise RuntimeError("postprocess could not parse the output")
""",
    # marks its start in its workdir (where hooks run), then hangs
    "Hangs": """
command_template = "true"

def postprocess(self):
    open("hook-started", "w").close()
    time.sleep(60)
""",
    # handle_error: retry once, then accept the run anyway
    "Retries": """
command_template = "true"

def handle_error(self):
    tries = self.job.data.get("tries", 0) + 1
    self.job.data["tries"] = tries
    self.job.state = JobState.RESTART_READY if tries < 2 else JobState.POSTPROCESSED
""",
    # handle_timeout overridden but leaving the state alone: the default move applies
    "TimeoutNoop": """
command_template = "true"

def handle_timeout(self):
    self.job.data["timed_out"] = True
""",
    # overrides handle_error only: a timeout takes the inline default
    "ErrorOnly": """
command_template = "true"

def handle_error(self):
    self.job.state = JobState.FAILED
""",
    "Illegal": """
command_template = "true"

def postprocess(self):
    self.job.state = self.job.data["to"]
""",
    "BadData": """
command_template = "true"

def postprocess(self):
    self.job.data = self.job.data["replacement"]
""",
}

_tags = itertools.count()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonSite]:
    base = tmp_path_factory.mktemp("hooks")
    with running(base, {"daemon.hook_timeout_sec": HOOK_TIMEOUT}) as made:
        for name, body in APPS.items():
            made.app(name, body)
        yield made


def new_job(site: DaemonSite, app: str, **fields) -> tuple[str, str]:
    """A job of ``app`` with a tag of its own (so that only this test claims it)."""
    tag = f"t{next(_tags)}"
    (job_id,) = site.create(app, tags={"case": tag}, **fields)
    return job_id, tag


def run_once(site: DaemonSite, job_id: str, tag: str, end: JobState, return_code: int | None = 0) -> None:
    """Claim the job over the RPC and report RUNNING then ``end``, as a launcher does."""
    with site.remote() as remote:
        session = remote.open_session(label="hook test")
        limits = ClaimLimits(filter_tags={"case": tag})
        claimed = claimed_jobs(remote.claim(session.id, limits), limits)
        assert [j.id for j in claimed] == [job_id], f"claimed {claimed}"
        now = time.time()
        outcome = remote.update_states(
            session.id,
            [
                StateUpdate(job_id=job_id, state=S.RUNNING, ts=now),
                StateUpdate(job_id=job_id, state=end, ts=now + 0.001, return_code=return_code),
            ],
        )
        assert outcome.rejected == {}
        remote.close_session(session.id)


def assert_still_serving(site: DaemonSite) -> None:
    """The daemon answers, is healthy, and its processing service never failed."""
    status = site.status()
    assert status["healthy"], status
    processing = next(s for s in status["services"] if s["name"] == "processing")
    assert processing["restarts"] == 0, processing["last_error"]
    with site.remote() as remote:
        assert remote.client.call("ping") == "pong"


def reason_into(site: DaemonSite, job_id: str, state: JobState) -> str:
    """The reason recorded on the event that moved the job into ``state``."""
    return next(e.reason for e in site.events(job_id) if e.to_state == state)


def test_preprocess_sets_state_and_data(site: DaemonSite) -> None:
    job_id, _ = new_job(site, "PreSets")
    job = site.wait_state(job_id, S.PREPROCESSED)
    assert job.data == {"pre": "done"}
    assert site.path(job_id) == ["READY", "STAGED_IN", "PREPROCESSED"]
    assert reason_into(site, job_id, S.PREPROCESSED) == "set by preprocess"
    assert_still_serving(site)


def test_a_hook_that_leaves_the_state_alone_gets_the_default_move(site: DaemonSite) -> None:
    job_id, _ = new_job(site, "PreDefault")
    job = site.wait_state(job_id, S.PREPROCESSED)
    assert job.data == {"seen": "STAGED_IN"}
    assert reason_into(site, job_id, S.PREPROCESSED) == ""
    assert_still_serving(site)


def test_postprocess_sets_state_and_data(site: DaemonSite) -> None:
    job_id, tag = new_job(site, "Post", data={"log": ["created"]})
    run_once(site, job_id, tag, S.RUN_DONE)
    job = site.wait_state(job_id, S.JOB_FINISHED)
    assert job.data == {"log": ["created", "post"], "rc": 0}
    assert site.path(job_id)[-5:] == ["RUNNING", "RUN_DONE", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]
    assert_still_serving(site)


def test_postprocess_may_ask_for_a_rerun(site: DaemonSite) -> None:
    job_id, tag = new_job(site, "Post", data={"rerun": True})
    run_once(site, job_id, tag, S.RUN_DONE)
    job = site.wait_state(job_id, S.RESTART_READY)
    assert job.data == {"rerun": False, "rc": 0, "log": ["post"]}
    run_once(site, job_id, tag, S.RUN_DONE)
    job = site.wait_state(job_id, S.JOB_FINISHED)
    assert job.data["log"] == ["post", "post"]
    assert site.path(job_id).count("RUNNING") == 2
    assert_still_serving(site)


def test_a_hook_that_raises_fails_the_job_with_the_traceback(site: DaemonSite) -> None:
    job_id, tag = new_job(site, "Raises")
    run_once(site, job_id, tag, S.RUN_DONE)
    job = site.wait_state(job_id, S.FAILED)
    assert job.state_reason.startswith("postprocess hook raised:\nTraceback (most recent call last):")
    assert "RuntimeError: postprocess could not parse the output" in job.state_reason
    assert 'raises.py", line' in job.state_reason
    assert_still_serving(site)


def test_a_hook_that_hangs_past_its_limit_fails_the_job(site: DaemonSite) -> None:
    job_id, tag = new_job(site, "Hangs")
    killed, killed_tag = new_job(site, "Hangs")
    run_once(site, job_id, tag, S.RUN_DONE)
    run_once(site, killed, killed_tag, S.RUN_DONE)
    # a job killed by its user while its hook runs stays killed: the hook's outcome is dropped
    started = site.root / "data" / site.job(killed).workdir / "hook-started"
    wait_until(started.exists, "the hook of the job to kill runs")
    with site.remote() as remote:
        assert remote.kill([killed]) == {killed: S.KILLED}
    job = site.wait_state(job_id, S.FAILED)
    assert job.state_reason == f"postprocess hook ran past its {HOOK_TIMEOUT:g} s limit and was stopped"
    assert site.path(job_id)[-2:] == ["RUN_DONE", "FAILED"]
    assert site.job(killed).state == S.KILLED
    assert site.path(killed)[-2:] == ["RUN_DONE", "KILLED"]
    # the worker that hung was replaced: hooks still run
    other, other_tag = new_job(site, "Post")
    run_once(site, other, other_tag, S.RUN_DONE)
    site.wait_state(other, S.JOB_FINISHED)
    assert_still_serving(site)


def test_handle_error_retries_once_then_accepts(site: DaemonSite) -> None:
    job_id, tag = new_job(site, "Retries")
    run_once(site, job_id, tag, S.RUN_ERROR, return_code=3)
    job = site.wait_state(job_id, S.RESTART_READY)
    assert job.data == {"tries": 1}
    assert reason_into(site, job_id, S.RESTART_READY) == "set by handle_error"
    run_once(site, job_id, tag, S.RUN_ERROR, return_code=3)
    job = site.wait_state(job_id, S.JOB_FINISHED)
    assert job.data == {"tries": 2}
    assert job.return_code == 3
    path = site.path(job_id)
    assert path.count("RUN_ERROR") == 2
    assert path[-4:] == ["RUN_ERROR", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]
    assert_still_serving(site)


def test_handle_timeout_defaults_to_a_restart(site: DaemonSite) -> None:
    overridden, tag = new_job(site, "TimeoutNoop")
    run_once(site, overridden, tag, S.RUN_TIMEOUT, return_code=None)
    job = site.wait_state(overridden, S.RESTART_READY)
    assert job.data == {"timed_out": True}
    # an app that keeps the default handle_timeout never waits for the daemon
    inline, tag = new_job(site, "ErrorOnly")
    run_once(site, inline, tag, S.RUN_TIMEOUT, return_code=None)
    assert site.job(inline).state == S.RESTART_READY
    assert site.path(inline)[-2:] == ["RUN_TIMEOUT", "RESTART_READY"]
    assert_still_serving(site)


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        ("RUNNING", "hook chose an illegal state: job {id}: cannot go from RUN_DONE to RUNNING"),
        ("JOB_FINISHED", "hook chose an illegal state: job {id}: cannot go from RUN_DONE to JOB_FINISHED"),
        ("BOGUS", "postprocess set the unknown state 'BOGUS'"),
    ],
)
def test_an_illegal_state_chosen_by_a_hook_fails_the_job(site: DaemonSite, to: str, reason: str) -> None:
    job_id, tag = new_job(site, "Illegal", data={"to": to})
    run_once(site, job_id, tag, S.RUN_DONE)
    job = site.wait_state(job_id, S.FAILED)
    assert job.state_reason.startswith(reason.format(id=job_id)), job.state_reason
    assert site.path(job_id)[-2:] == ["RUN_DONE", "FAILED"]
    assert_still_serving(site)


@pytest.mark.parametrize(
    ("replacement", "reason"),
    [
        (["not", "a", "dict"], "postprocess set job.data to a list; it must be a dict"),
        ({"nested": {"list": [1, 2.5, "x"]}, "fine": None}, None),
    ],
)
def test_data_a_hook_sets_is_checked_before_it_is_stored(
    site: DaemonSite, replacement: object, reason: str | None
) -> None:
    job_id, tag = new_job(site, "BadData", data={"replacement": replacement})
    run_once(site, job_id, tag, S.RUN_DONE)
    if reason is None:
        job = site.wait_state(job_id, S.JOB_FINISHED)
        assert job.data == replacement
    else:
        job = site.wait_state(job_id, S.FAILED)
        assert job.state_reason.startswith(reason), job.state_reason
    assert_still_serving(site)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("tuple keys", "Only dicts with str-like or number-like keys are supported"),
        ("huge int", "can't serialize ints < -2**63 or > 2**64 - 1"),
    ],
)
def test_a_hook_whose_data_cannot_be_stored_fails_only_its_job(site: DaemonSite, kind: str, reason: str) -> None:
    site.app(
        "Unstorable",
        """
command_template = "true"

def postprocess(self):
    values = {"tuple keys": {(1, 2): "a tuple is no key"}, "huge int": {"n": 2**70}}
    self.job.data = values[self.job.data["kind"]]
""",
    )
    job_id, tag = new_job(site, "Unstorable", data={"kind": kind})
    run_once(site, job_id, tag, S.RUN_DONE)
    job = site.wait_state(job_id, S.FAILED)
    assert job.state_reason.startswith("postprocess set job.data to a value that cannot be stored: "), job.state_reason
    assert reason in job.state_reason
    assert_still_serving(site)


def test_a_job_its_hook_cannot_be_sent_fails_alone(site: DaemonSite) -> None:
    # The API refuses such data at creation; a job that reached the store another way (an
    # older balsamd, a hand edit) must still fail alone, never stop the processing service.
    with site.store() as store, store.db.write() as conn:  # a hand edit, in the transaction that made the job
        [job] = store.create_jobs([JobSpec(app="PreSets", workdir="big")])
        conn.execute("UPDATE jobs SET data = ? WHERE id = ?", (f'{{"big": {2**70}}}', job.id))
    job_id = job.id
    job = site.wait_state(job_id, S.FAILED)
    assert job.state_reason.startswith("preprocess hook: the job cannot be handed to it: OverflowError: ")
    other, _ = new_job(site, "PreSets")
    site.wait_state(other, S.PREPROCESSED)
    assert_still_serving(site)
