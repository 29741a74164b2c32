"""Random sequences of everything users and launchers do keep the store's invariants."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from balsamd import ids
from balsamd.models import ClaimLimits, Job, JobSpec, SessionState, StateUpdate
from balsamd.states import FINAL, RUNNABLE, TRANSITIONS, IllegalTransition, JobState
from balsamd.store.errors import StoreError
from tests.conftest import APPS, open_store
from tests.store import claim

S = JobState
APP_NAMES = [a.name for a in APPS]
# what each app's hook would do when the processing service runs it
HOOK_STEPS = {
    ("pre", S.STAGED_IN): S.PREPROCESSED,
    ("post", S.RUN_DONE): S.POSTPROCESSED,
    ("handler", S.RUN_ERROR): S.FAILED,
    ("handler", S.RUN_TIMEOUT): S.RESTART_READY,
}


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="balsamd-")
        self.store = open_store(Path(self.dir) / "store.db")
        self.sessions: list[str] = []
        self.ts = itertools.count(1)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def jobs(self) -> list[Job]:
        return self.store.filter()

    def open_sessions(self) -> list[str]:
        return [s.id for s in self.store.sessions(open_only=True)]

    # ----- what users do ------------------------------------------------------------------

    @rule(data=st.data(), n=st.integers(1, 4), app=st.sampled_from(APP_NAMES))
    def create(self, data, n, app):
        existing = [j.id for j in self.jobs()]
        parents = data.draw(st.lists(st.sampled_from(existing), max_size=2, unique=True)) if existing else []
        self.store.create_jobs([JobSpec(app=app, workdir=w, parent_ids=parents) for w in ids.new_ids(n)])

    @precondition(lambda self: self.store.count() > 0)
    @rule(data=st.data())
    def kill(self, data):
        job = data.draw(st.sampled_from(self.jobs()))
        self.refused_or_done(lambda: self.store.kill([job.id]), job.state in (S.JOB_FINISHED, S.KILLED))

    @precondition(lambda self: self.store.count() > 0)
    @rule(data=st.data())
    def retry(self, data):
        job = data.draw(st.sampled_from(self.jobs()))
        self.refused_or_done(lambda: self.store.retry([job.id]), None)

    @precondition(lambda self: self.store.count() > 0)
    @rule(data=st.data())
    def delete(self, data):
        job = data.draw(st.sampled_from(self.jobs()))
        events = len(self.store.events())
        outcome = self.store.delete([job.id])
        if outcome.refused:
            assert len(self.store.events()) == events

    def refused_or_done(self, action, must_refuse: bool | None) -> None:
        events = self.store.events()
        try:
            action()
        except (IllegalTransition, StoreError):
            assert self.store.events() == events
            assert must_refuse is not False
        else:
            assert must_refuse is not True

    # ----- what the processing service does -----------------------------------------------

    @rule()
    def run_hooks(self):
        for job in self.jobs():
            nxt = HOOK_STEPS.get((job.app, job.state))
            if nxt is not None:
                assert self.store.finish_hook(job.id, job.state, nxt, "hook")

    # ----- what launchers do --------------------------------------------------------------

    @rule()
    def open_session(self):
        self.sessions.append(self.store.open_session().id)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), max_jobs=st.integers(1, 5), packed=st.booleans())
    def claim(self, data, max_jobs, packed):
        sid = data.draw(st.sampled_from(self.sessions))
        if sid not in self.open_sessions():
            return
        limits = ClaimLimits(max_jobs=max_jobs, max_aggregate_nodes=1.0 if packed else None)
        for job in claim(self.store, sid, limits):
            assert job.state in RUNNABLE
            assert job.session_id == sid

    @precondition(lambda self: self.sessions)
    @rule(
        data=st.data(),
        end=st.sampled_from([None, S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT]),
        resend=st.booleans(),
    )
    def report(self, data, end, resend):
        """Start the session's claimed jobs and, unless ``end`` is None, end every run at once."""
        sid = data.draw(st.sampled_from(self.sessions))
        mine = [j for j in self.jobs() if j.session_id == sid]
        updates = [StateUpdate(job_id=j.id, state=S.RUNNING, ts=next(self.ts)) for j in mine if j.state != S.RUNNING]
        if end is not None:
            updates += [StateUpdate(job_id=j.id, state=end, ts=next(self.ts), return_code=1) for j in mine]
        outcome = self.store.update_states(sid, updates)
        assert not outcome.rejected, outcome.rejected
        if resend and updates:
            events = self.store.events()
            again = self.store.update_states(sid, updates)
            assert again.applied == []
            assert self.store.events() == events

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), expire=st.booleans())
    def end_session(self, data, expire):
        sid = data.draw(st.sampled_from(self.sessions))
        if expire:
            self.store.expire_sessions(0, now=time.time() + 1)
        else:
            self.store.close_session(sid)

    # ----- invariants ---------------------------------------------------------------------

    @invariant()
    def every_job_history_replays_to_its_state_by_allowed_steps(self):
        events: dict[str, list] = {}
        for e in self.store.events():
            events.setdefault(e.job_id, []).append(e)
        for job in self.jobs():
            state = S.CREATED
            for e in events[job.id]:
                assert e.from_state == state
                assert e.to_state in TRANSITIONS[state], f"{job.id}: {state}->{e.to_state}"
                state = e.to_state
            assert state == job.state
            assert job.attempts == sum(1 for e in events[job.id] if e.to_state == S.RUNNING)
        assert set(events) <= {j.id for j in self.jobs()}

    @invariant()
    def only_open_sessions_hold_jobs_and_only_runnable_or_running_ones(self):
        open_ids = set(self.open_sessions())
        for job in self.jobs():
            if job.state == S.RUNNING:
                assert job.session_id is not None
            if job.session_id is not None:
                assert job.session_id in open_ids
                assert job.state in RUNNABLE | {S.RUNNING}

    @invariant()
    def no_child_waits_on_a_failed_parent_or_runs_before_its_parents_finish(self):
        state_of = {j.id: j.state for j in self.jobs()}
        for job in self.jobs():
            parents = [state_of[p] for p in job.parent_ids if p in state_of]
            if any(p in (S.FAILED, S.KILLED) for p in parents):
                assert job.state in (S.FAILED, S.KILLED), job
            if job.state not in FINAL | {S.CREATED, S.AWAITING_PARENTS}:
                assert all(p == S.JOB_FINISHED for p in parents), job
            if job.state == S.AWAITING_PARENTS:
                assert any(p != S.JOB_FINISHED for p in parents), job

    @invariant()
    def sessions_end_once(self):
        for s in self.store.sessions():
            assert (s.ended_at is None) == (s.state == SessionState.OPEN)


StoreMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_store_invariants = StoreMachine.TestCase
