"""What reports read from the store: finishes per bin, runs with their footprint, failures,
over a window and a filter, the same over every transport."""

from __future__ import annotations

import pytest

from balsamd.models import ClaimLimits, StateUpdate
from balsamd.reports import series
from balsamd.reports.records import CountBin, ReportFilter
from balsamd.states import JobState
from balsamd.validate import Refused
from tests.conftest import make_jobs
from tests.store import claim

S = JobState
T0 = 1_000_000.0


def run(
    store,
    jobs,
    start: float,
    end: float | None,
    state: JobState = S.RUN_DONE,
    together: bool = True,
    reason: str = "",
    batch: str | None = None,
) -> None:
    """Claim ``jobs`` and report each run from ``start`` to ``end`` (None: still running),
    the start with the end in one report (``together``) or as a report of its own."""
    session = store.open_session("runner", batch_job_id=batch, now=start)
    claimed = claim(store, session.id, ClaimLimits(max_jobs=10_000))
    store.release(session.id, [j.id for j in claimed if j.id not in {k.id for k in jobs}])
    updates = []
    for j in jobs:
        if end is None or not together:
            updates.append(StateUpdate(job_id=j.id, state=S.RUNNING, ts=start))
        if end is not None:
            extra = {} if not together else {"started_at": start}
            updates.append(
                StateUpdate(
                    job_id=j.id,
                    state=state,
                    ts=end,
                    reason=reason,
                    return_code=0 if state == S.RUN_DONE else 1,
                    **extra,
                )
            )
    outcome = store.update_states(session.id, updates, now=end or start)
    assert not outcome.rejected, outcome.rejected


def test_finished_jobs_are_counted_per_bin_from_the_windows_start(store):
    jobs = make_jobs(store, 5)
    run(store, jobs[:2], T0, T0 + 10)
    run(store, jobs[2:4], T0 + 100, T0 + 130)
    run(store, jobs[4:], T0 + 200, T0 + 400)  # after the window
    bins = store.finished_counts(ReportFilter(since=T0, until=T0 + 300), 60.0)
    assert bins == [CountBin(0, 2), CountBin(2, 2)]


def test_finished_counts_are_those_of_binning_each_finish_whatever_the_bins(store):
    jobs = make_jobs(store, 6)
    for n, job in enumerate(jobs):
        run(store, [job], T0 + n * 7.3, T0 + n * 7.3 + 0.5)
    f = ReportFilter(since=T0, until=T0 + 60)
    for bin_sec in (0.25, 1.0, 10.0, 45.0, 60.0):
        expected = series.bin_events([T0 + n * 7.3 + 0.5 for n in range(6)], T0, bin_sec)
        assert store.finished_counts(f, bin_sec) == expected


def test_finished_counts_follow_the_filter(store):
    noop = make_jobs(store, 2, tags={"phase": "a"})
    echo = make_jobs(store, 3, app="echo")
    run(store, noop + echo, T0, T0 + 5)
    window = {"since": T0, "until": T0 + 60}
    assert store.finished_counts(ReportFilter(**window, app="echo"), 60.0) == [CountBin(0, 3)]
    assert store.finished_counts(ReportFilter(**window, tags={"phase": "a"}), 60.0) == [CountBin(0, 2)]
    assert store.finished_counts(ReportFilter(**window, app="nothing"), 60.0) == []


def test_runs_pair_a_start_with_its_end_whether_reported_together_or_apart(store):
    a = make_jobs(store, 1, num_nodes=2)
    b = make_jobs(store, 1, node_packing_count=4)
    c = make_jobs(store, 1)
    run(store, a, T0 + 10, T0 + 70)
    run(store, b, T0 + 20, T0 + 50, state=S.RUN_ERROR, together=False, reason="exit code 1")
    run(store, c, T0 + 30, None)
    spans = store.run_spans(ReportFilter(since=T0, until=T0 + 100))
    got = [(r.job_id, r.start, r.end, r.end_state, r.footprint) for r in spans]
    assert got == [
        (a[0].id, T0 + 10, T0 + 70, "RUN_DONE", 2.0),
        (b[0].id, T0 + 20, T0 + 50, "RUN_ERROR", 0.25),
        (c[0].id, T0 + 30, None, None, 1.0),
    ]


def test_runs_that_began_before_the_window_are_in_it_with_their_real_start(store):
    ended, running = make_jobs(store, 1), make_jobs(store, 1)
    run(store, ended, T0, T0 + 500, together=False)
    run(store, running, T0 + 5, None)
    spans = store.run_spans(ReportFilter(since=T0 + 100, until=T0 + 1000))
    assert [(r.job_id, r.start, r.end) for r in spans] == [(ended[0].id, T0, T0 + 500), (running[0].id, T0 + 5, None)]
    assert store.run_spans(ReportFilter(since=T0 + 600, until=T0 + 1000))[0].job_id == running[0].id


def test_runs_carry_their_batch_job_and_can_be_filtered_by_it(store):
    first, second = make_jobs(store, 2), make_jobs(store, 1)
    run(store, first, T0, T0 + 10, batch="B1")
    run(store, second, T0, T0 + 10, batch="B2")
    spans = store.run_spans(ReportFilter(since=T0, until=T0 + 60, batch_job_id="B1"))
    assert sorted(r.job_id for r in spans) == sorted(j.id for j in first)
    assert {r.batch_job_id for r in spans} == {"B1"}


def test_failures_are_failed_runs_and_jobs_failed_without_a_run_most_recent_first(store):
    [parent] = make_jobs(store, 1, app="echo")
    [child] = make_jobs(store, 1, parent_ids=[parent.id])
    run(store, [parent], T0, T0 + 20, state=S.RUN_ERROR, reason="exit code 3\nTraceback: boom")
    failures = store.failure_events(ReportFilter(since=T0, until=T0 + 60))
    assert [(f.job_id, f.app, f.state) for f in failures] == [
        (child.id, "noop", "FAILED"),
        (parent.id, "echo", "RUN_ERROR"),
    ]
    assert failures[1].reason == "exit code 3\nTraceback: boom"
    assert failures[1].ts == T0 + 20
    assert failures[1].workdir == parent.workdir
    assert failures[0].reason.startswith(f"parent {parent.id}")
    assert store.failure_events(ReportFilter(since=T0, until=T0 + 60), limit=1)[0].job_id == child.id


@pytest.mark.parametrize(
    ("window", "bin_sec", "named"),
    [
        ({"since": 10.0, "until": 10.0}, 60.0, "must be before until"),
        ({"since": 0.0, "until": 1e9}, 1.0, "more than 100000"),
        ({"since": 0.0, "until": 60.0}, 0.0, "bin_sec must be a positive number"),
        ({"since": 0.0, "until": 60.0, "site": "elsewhere"}, 1.0, "site: a site's store holds only its own jobs"),
    ],
)
def test_a_window_or_bins_that_cannot_be_read_are_refused_naming_the_field(store, window, bin_sec, named):
    with pytest.raises(Refused, match=named):
        store.finished_counts(ReportFilter(**window), bin_sec)


def test_busy_time_is_the_runs_node_and_run_seconds_per_bin(store):
    [wide] = make_jobs(store, 1, num_nodes=2)
    [packed] = make_jobs(store, 1, node_packing_count=4)
    run(store, [wide], T0 + 5, T0 + 25)  # bins of 10 s: 5 s, 10 s and 5 s of 2 nodes
    run(store, [packed], T0 + 12, T0 + 18, together=False)
    bins = store.busy_time(ReportFilter(since=T0, until=T0 + 40), 10.0)
    assert [(b.index, b.node_sec, b.run_sec) for b in bins] == [
        (0, 10.0, 5.0),
        (1, pytest.approx(20.0 + 6 * 0.25), 16.0),
        (2, 10.0, 5.0),
    ]


def test_busy_time_sums_what_run_spans_lists_whatever_the_runs_shapes(store):
    jobs = make_jobs(store, 8)
    wide = make_jobs(store, 2, num_nodes=2)
    run(store, jobs[:2], T0 - 30, T0 + 3.5)  # began before the window, in one move
    run(store, jobs[2:4], T0 - 20, T0 + 41, together=False)  # began before it, in two moves
    run(store, jobs[4:6], T0 + 1.25, T0 + 9.5)
    run(store, wide, T0 + 2, T0 + 70)  # ends after the window
    run(store, jobs[6:], T0 + 33, None)  # running still
    f = ReportFilter(since=T0, until=T0 + 50)
    for bin_sec in (3.0, 7.0, 50.0):
        expected = series.busy_bins(store.run_spans(f), f.since, f.until, bin_sec)
        got = store.busy_time(f, bin_sec)
        assert [b.index for b in got] == [b.index for b in expected]
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.node_sec == pytest.approx(theirs.node_sec)
            assert mine.run_sec == pytest.approx(theirs.run_sec)
    [whole] = store.busy_time(ReportFilter(since=T0, until=T0 + 50, app="noop"), 50.0)
    assert whole.run_sec == pytest.approx(2 * 3.5 + 2 * 41 + 2 * 8.25 + 2 * 48 + 2 * 17)
    assert whole.node_sec == pytest.approx(2 * 3.5 + 2 * 41 + 2 * 8.25 + 2 * 2 * 48 + 2 * 17)
