"""When state reports go out: batched while runs go on, at once when none do, after a claim on
its way, one batch at a time; and each run's start is reported once."""

from __future__ import annotations

from balsamd.launch.leader.reports import MAX_REPORT, MAX_RETRY_SEC, REPORT_DELAY_SEC, RETRY_SEC, Reports
from balsamd.models import StateUpdate
from balsamd.states import JobState


def done(job_id: str, started_at: float | None = None) -> StateUpdate:
    return StateUpdate(job_id=job_id, state=JobState.RUN_DONE, ts=2.0, started_at=started_at)


def test_nothing_unsent_is_never_due() -> None:
    assert Reports().due(100.0, running=True, claim_out=False) is None


def test_while_runs_go_on_the_first_report_waits_for_company() -> None:
    reports = Reports()
    reports.add(done("a"), now=100.0)
    reports.add(done("b"), now=100.01)  # joins the batch, does not move it
    assert reports.due(100.01, running=True, claim_out=False) == 100.0 + REPORT_DELAY_SEC


def test_with_nothing_running_reports_go_at_once() -> None:
    reports = Reports()
    reports.add(done("a"), now=100.0)
    assert reports.due(100.0, running=False, claim_out=False) == 100.0


def test_a_claim_on_its_way_goes_first_unless_a_full_batch_waits() -> None:
    reports = Reports()
    reports.add(done("a"), now=100.0)
    assert reports.due(101.0, running=True, claim_out=True) is None
    for i in range(MAX_REPORT):
        reports.add(done(f"j{i}"), now=101.0)
    assert reports.due(101.0, running=True, claim_out=True) == 101.0


def test_while_a_batch_is_out_the_next_grows() -> None:
    reports = Reports()
    reports.add(done("a"), now=100.0)
    first = reports.batch()
    reports.add(done("b"), now=100.0)
    assert reports.due(200.0, running=False, claim_out=False) is None
    reports.delivered(first)
    assert reports.due(200.0, running=False, claim_out=False) == 200.0


def test_a_batch_holds_the_waiting_starts_first_and_at_most_max_report() -> None:
    reports = Reports()
    for i in range(MAX_REPORT):
        reports.add(done(f"j{i}"), now=100.0)
    assert reports.started("r", 1.5, now=100.0)
    batch = reports.batch()
    assert len(batch) == MAX_REPORT
    assert (batch[0].job_id, batch[0].state, batch[0].ts) == ("r", JobState.RUNNING, 1.5)
    assert reports.unsent == 1  # the last end waits for the next batch


def test_a_start_is_known_once() -> None:
    reports = Reports()
    assert reports.started("r", 1.0, now=100.0)
    assert not reports.started("r", 1.0, now=100.0)
    assert reports.unsent == 1


def test_a_run_that_ends_before_its_start_went_out_is_reported_by_its_end_alone() -> None:
    reports = Reports()
    reports.started("r", 1.0, now=100.0)
    assert reports.ended("r") == (True, 1.0)  # its start, for the end's report to carry
    reports.add(done("r", started_at=1.0), now=100.0)
    assert [(u.job_id, u.state) for u in reports.batch()] == [("r", JobState.RUN_DONE)]


def test_the_end_of_a_run_whose_start_went_out_carries_no_start() -> None:
    reports = Reports()
    reports.started("r", 1.0, now=100.0)
    reports.delivered(reports.batch())
    assert reports.ended("r") == (True, None)


def test_the_end_of_a_run_whose_start_was_never_seen_says_so() -> None:
    assert Reports().ended("r") == (False, None)


def test_a_failed_batch_goes_out_again_first_after_a_pause() -> None:
    reports = Reports()
    reports.add(done("a"), now=100.0)
    failed = reports.batch()
    reports.add(done("b"), now=100.0)
    reports.failed(failed, now=100.0)
    assert reports.due(100.0, running=True, claim_out=False) == 100.0 + RETRY_SEC
    assert [u.job_id for u in reports.batch()] == ["a", "b"]


def test_reports_that_keep_failing_wait_longer_each_time_even_with_nothing_running() -> None:
    """A store whose disk is full refuses every report: they are kept, and retried after a
    pause doubling up to MAX_RETRY_SEC, not at every step of an idle launcher."""
    reports = Reports()
    reports.add(done("a"), now=100.0)
    now, pauses = 100.0, []
    for _ in range(10):
        reports.failed(reports.batch(), now)
        due = reports.due(now, running=False, claim_out=False)
        assert due is not None
        pauses.append(round(due - now, 3))
        now = due
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, MAX_RETRY_SEC, MAX_RETRY_SEC, MAX_RETRY_SEC]
    reports.delivered(reports.batch())
    reports.add(done("b"), now=now)
    reports.failed(reports.batch(), now)
    assert reports.due(now, running=False, claim_out=False) == now + RETRY_SEC


def test_heartbeats_name_only_runs_whose_running_the_source_took_and_that_still_run() -> None:
    reports = Reports()
    reports.started("sent", 1.0, now=100.0)
    batch = reports.batch()
    reports.started("unsent", 1.0, now=100.0)
    assert reports.confirmed() == []
    reports.delivered(batch)
    assert reports.confirmed() == ["sent"]
    reports.ended("sent")
    assert reports.confirmed() == []
