"""The chaos runner's checks, on the history of a real site store: a clean history passes, and
each thing the runner looks for (a lost job, two runs at once, a run after the end, an event
twice, central disagreeing, a wrong result) is found and named."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest

from balsamd.config import NodeSettings
from balsamd.lifecycle import PARENT_FAILED
from balsamd.models import App, AppKind, AppParameter, ClaimLimits, Event, JobSpec, StateUpdate
from balsamd.results import pack_value
from balsamd.states import JobState
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules
from benchmarks.chaos.campaign import COMMAND_APP, FAILING_CODE, PYTHON_APP, command, levels, python
from benchmarks.chaos.checker import Check, EventRow, Observed, check
from benchmarks.chaos.markers import parse

S = JobState
APPS = [
    App(name=COMMAND_APP, command_template="marked {{ key }} {{ nap }} {{ code }}",
        parameters={"key": AppParameter(), "nap": AppParameter(), "code": AppParameter()}),
    App(name=PYTHON_APP, kind=AppKind.PYTHON, source="square.py", class_name="Square",
        parameters={"key": AppParameter(), "x": AppParameter(), "nap": AppParameter(required=False, default=0.0)}),
]  # fmt: skip
PLAN = [
    command("cmd", 0.1),
    python("py", 7),
    command("bad", 0.1, FAILING_CODE, expect=S.FAILED),
    command("kid", 0, parents=["bad"], expect=S.FAILED, reason=PARENT_FAILED),
    command("victim", 1, killable=True),
]


class History:
    """The planned jobs made in a real store, the victim killed by its user, the others run,
    each run marked as a job marks it."""

    def __init__(self, path: Path) -> None:
        self.store = SiteStore(path, SiteRules(nodes=NodeSettings(cpus_per_node=8)))
        self.store.put_apps(APPS)
        self.ids: dict[str, str] = {}
        for level in levels(PLAN):
            specs = [JobSpec(**j.spec([self.ids[p] for p in j.parents])) for j in level]
            made = self.store.create_jobs(specs)
            self.ids.update((j.key, m.id) for j, m in zip(level, made, strict=True))
        self.store.kill([self.ids["victim"]])
        self.t0 = time.time()
        self.marks: dict[str, list[str]] = {}
        session = self.store.open_session(label="test").id
        limits = ClaimLimits(max_jobs=10)
        claimed = [j.id for j in claimed_jobs(self.store.claim(session, limits), limits)]
        assert sorted(claimed) == sorted(self.ids[k] for k in ("cmd", "py", "bad"))
        ends = {"cmd": (S.RUN_DONE, 0, None), "py": (S.RUN_DONE, 0, pack_value({"key": "py", "square": 49})),
                "bad": (S.RUN_ERROR, FAILING_CODE, None)}  # fmt: skip
        updates = []
        for key, (state, code, result) in ends.items():
            job_id = self.ids[key]
            updates.append(StateUpdate(job_id=job_id, state=S.RUNNING, ts=self.t0))
            updates.append(StateUpdate(job_id=job_id, state=state, ts=self.t0 + 1, return_code=code, result=result))
            self.mark(key, 100, self.t0 + 0.1, self.t0 + 0.9)
        self.store.update_states(session, updates)

    def mark(self, key: str, pid: int, start: float, end: float | None = None, lock: str = "held") -> None:
        lines = self.marks.setdefault(key, [])
        lines.append(f"start 0 node1 {pid} {start:.6f} {lock}")
        if end is not None:
            lines.append(f"end 0 node1 {pid} {end:.6f}")

    def observed(self) -> Observed:
        jobs = {j.id: j for j in self.store.filter()}
        events = self.store.events()
        return Observed(
            ids=dict(self.ids), site_jobs=jobs, site_events=events, central_jobs=copy.deepcopy(jobs),
            central_events=[row(e) for e in events], pending_intents=[], kills={self.ids["victim"]: S.KILLED},
            markers={k: parse("\n".join(lines)) for k, lines in self.marks.items()},
        )  # fmt: skip

    def event(self, key: str, state: JobState) -> Event:
        return next(e for e in self.store.events(self.ids[key]) if e.to_state == state)


def row(e: Event) -> EventRow:
    return (e.id, e.job_id, None if e.from_state is None else str(e.from_state), str(e.to_state), e.ts, e.reason)


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "store.db")


def failures(seen: Observed) -> list[tuple[Check, str]]:
    return [(f.check, f.job) for f in check(PLAN, seen).failures]


def test_a_clean_history_passes_and_its_runs_are_counted(history: History) -> None:
    findings = check(PLAN, history.observed())
    assert findings.failures == []
    assert (findings.runs, findings.reruns) == (3, 0)


def test_a_rerun_after_a_lost_run_is_counted_not_failed(history: History) -> None:
    history.mark("cmd", 99, history.t0 - 5)  # killed with its launcher: no end
    findings = check(PLAN, history.observed())
    assert findings.failures == []
    assert (findings.runs, findings.reruns, findings.rerun_jobs) == (4, 1, 1)


def test_a_run_that_found_the_lock_held_ran_concurrently(history: History) -> None:
    history.mark("py", 101, history.t0 + 0.2, history.t0 + 0.3, lock="busy")
    found = check(PLAN, history.observed()).failures
    assert {(f.check, f.job) for f in found} == {(Check.CONCURRENT, "py")}
    assert "found its lock held by another run" in found[0].detail


def test_two_complete_runs_of_a_job_that_overlap_ran_concurrently(history: History) -> None:
    history.mark("cmd", 101, history.t0 - 0.5, history.t0 + 0.5)
    assert failures(history.observed()) == [(Check.CONCURRENT, "cmd")]


def test_a_run_that_starts_after_the_recorded_end_ran_after_final(history: History) -> None:
    history.mark("cmd", 102, history.event("cmd", S.RUN_DONE).ts + 0.5, history.t0 + 2)
    history.mark("bad", 102, history.event("bad", S.RUN_ERROR).ts + 0.5)
    assert failures(history.observed()) == [(Check.AFTER_FINAL, "cmd"), (Check.AFTER_FINAL, "bad")]


def test_a_job_its_user_killed_is_killed_and_no_run_of_it_reaches_its_end_after_the_kill(history: History) -> None:
    killed_at = history.event("victim", S.KILLED).ts
    history.mark("victim", 104, killed_at - 1)  # stopped by the kill: no end
    assert failures(history.observed()) == []
    # started by a launcher that had claimed it before the kill and had not heard of it yet
    history.mark("victim", 105, killed_at + 0.1)  # stopped when it did
    findings = check(PLAN, history.observed())
    assert (findings.failures, findings.stopped_after_kill) == ([], 1)
    history.mark("victim", 106, killed_at + 0.5, killed_at + 1)
    found = check(PLAN, history.observed()).failures
    assert [(f.check, f.job) for f in found] == [(Check.AFTER_FINAL, "victim")]
    assert "(pid 106) and ran to its end after its KILLED" in found[0].detail


def test_a_job_whose_kill_found_it_finished_must_stay_finished_and_a_kill_never_acknowledged_is_lost(
    history: History,
) -> None:
    seen = history.observed()
    seen.kills[history.ids["victim"]] = S.JOB_FINISHED
    found = check(PLAN, seen).failures
    assert [(f.check, f.job) for f in found] == [(Check.LOST, "victim")]
    assert found[0].detail.startswith("KILLED (killed by user), planned JOB_FINISHED")
    seen.kills.clear()
    found = check(PLAN, seen).failures
    assert [(f.check, f.job, f.detail) for f in found] == [
        (Check.LOST, "victim", "the site never acknowledged its kill")
    ]


def test_any_run_of_a_job_whose_parent_failed_ran_after_final(history: History) -> None:
    history.mark("kid", 103, history.t0 - 1, history.t0 - 0.5)
    found = check(PLAN, history.observed()).failures
    assert [(f.check, f.job) for f in found] == [(Check.AFTER_FINAL, "kid")]
    assert "although a parent failed" in found[0].detail


def test_a_job_that_ended_otherwise_than_planned_never_made_or_finished_without_a_run_is_lost(
    history: History,
) -> None:
    seen = history.observed()
    seen.markers["py"] = parse("start 0 node1 100 1.0 held")  # never ended
    planned = [command("cmd", 0.1, expect=S.FAILED), *PLAN[1:], command("ghost", 0)]
    found = check(planned, seen).failures
    assert [(f.check, f.job) for f in found] == [(Check.LOST, "cmd"), (Check.LOST, "py"), (Check.LOST, "ghost")]
    assert [f.detail.split(";")[0] for f in found] == [
        "JOB_FINISHED, planned FAILED",
        f"JOB_FINISHED without a complete run of its 1 rank(s): {seen.markers['py'].runs}",
        "never created",
    ]


def test_an_event_recorded_twice_or_off_the_transition_table_is_found(history: History) -> None:
    seen = history.observed()
    done = history.event("cmd", S.RUN_DONE)
    seen.site_events.append(Event(id=900, job_id=done.job_id, from_state=S.JOB_FINISHED, to_state=S.RUN_DONE,
                                  ts=done.ts))  # fmt: skip
    found = [f for f in check(PLAN, seen).failures if f.check == Check.BAD_EVENTS]
    assert {f.job for f in found} == {"cmd"}
    details = " | ".join(f.detail for f in found)
    assert "goes JOB_FINISHED -> RUN_DONE after JOB_FINISHED" in details
    assert "2 events to RUN_DONE" in details
    assert "events end in RUN_DONE, the job is JOB_FINISHED" in details


def test_central_must_hold_every_job_as_the_site_has_it_every_event_once_and_no_unacknowledged_intent(
    history: History,
) -> None:
    seen = history.observed()
    seen.central_jobs[history.ids["cmd"]].version += 1
    running = history.event("py", S.RUNNING)
    seen.central_events.remove(row(running))
    twice = history.event("bad", S.RUN_ERROR)
    seen.central_events.append((999, *row(twice)[1:]))
    seen.pending_intents = [("I1", "kill", history.ids["kid"])]
    found = check(PLAN, seen).failures
    central = {(f.job, f.detail.split(":")[0].split(" ")[0]) for f in found if f.check == Check.CENTRAL}
    assert central == {("cmd", "version"), ("py", "event"), ("bad", "event"), ("kid", "kill")}
    assert [(f.check, f.job) for f in found if f.check != Check.CENTRAL] == [(Check.BAD_EVENTS, "bad")]


def test_a_python_result_that_differs_at_the_site_or_in_central_is_wrong(history: History) -> None:
    seen = history.observed()
    seen.central_jobs[history.ids["py"]].result = pack_value({"key": "py", "square": 48})
    found = [f for f in check(PLAN, seen).failures if f.check == Check.RESULTS]
    assert [(f.job, f.detail.split(":")[0]) for f in found] == [("py", "central")]


def test_a_job_the_round_never_made_is_unexpected(history: History) -> None:
    [extra] = history.store.create_jobs([JobSpec(app=COMMAND_APP, workdir="x",
                                                 parameters={"key": "x", "nap": "0", "code": "0"})])  # fmt: skip
    seen = history.observed()
    assert (Check.OTHER, extra.id) in failures(seen)
