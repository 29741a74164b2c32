"""The pure functions reports are made of: bins, rates, the utilization sweep, percentiles,
histograms, failure groups and batch-job timings."""

from __future__ import annotations

import math

import pytest

from balsamd.models import BatchJob, BatchJobState
from balsamd.reports import series
from balsamd.reports.records import CountBin, FailureEvent, RunSpan


def span(job: str, start: float, end: float | None, nodes: int = 1, packing: int = 1, app: str = "a") -> RunSpan:
    return RunSpan(job_id=job, app=app, start=start, end=end, end_state=None if end is None else "RUN_DONE",
                   num_nodes=nodes, node_packing_count=packing)  # fmt: skip


def test_bins_cover_the_window_the_last_one_partial():
    assert series.bin_count(0, 100, 30) == 4
    assert series.bin_starts(0, 100, 30) == [0, 30, 60, 90]
    assert series.bin_count(0, 90, 30) == 3


def test_sparse_counts_become_one_count_per_bin_and_events_are_binned_from_the_start():
    assert series.dense_counts([CountBin(1, 4), CountBin(3, 2), CountBin(9, 1)], 4) == [0, 4, 0, 2]
    assert series.bin_events([5, 10, 59, 60, 125, -1], 0, 60) == [CountBin(0, 3), CountBin(1, 1), CountBin(2, 1)]


def test_the_rate_now_is_the_last_full_bin_when_the_window_reaches_now():
    counts = [6, 12, 3]  # the bin holding now has only begun
    avg, now_rate = series.rates(counts, 0, 3 * 3600, 3600, now=2.5 * 3600)
    assert avg == pytest.approx(7.0)
    assert now_rate == pytest.approx(12.0)
    _, past = series.rates(counts, 0, 3 * 3600, 3600, now=10 * 3600)  # a window in the past
    assert past == pytest.approx(3.0)
    _, cut = series.rates(counts, 0, 2.1 * 3600, 3600, now=10 * 3600)  # its last bin is a sliver
    assert cut == pytest.approx(12.0)
    _, early = series.rates([2], 0, 3600, 3600, now=900)  # no bin has ended: so far
    assert early == pytest.approx(8.0)


def test_boxes_are_averaged_over_each_bin():
    # 2 nodes busy from 5 to 15, one more from 7 to 8
    boxes = [(5, 15, 2.0), (7, 8, 1.0)]
    assert series.box_average(boxes, 0, 20, 10) == pytest.approx([1.1, 1.0])
    assert series.box_average(boxes, 0, 15, 10) == pytest.approx([1.1, 2.0])  # a half bin at the end


def test_boxes_are_cut_to_the_window():
    boxes = [(-50, 5, 3.0), (18, 40, 1.0), (30, 40, 9.0), (12, 12, 5.0)]
    assert series.box_average(boxes, 0, 20, 10) == pytest.approx([1.5, 0.2])


def test_runs_weigh_by_their_share_of_nodes_or_as_one_slot_each_and_open_runs_last_to_the_end():
    runs = [span("a", 0, 10, nodes=2), span("b", 0, None, packing=4)]
    assert series.run_boxes(runs, until=20) == [(0, 10, 2.0), (0, 20, 0.25)]
    assert series.run_boxes(runs, until=20, weight="slots") == [(0, 10, 1.0), (0, 20, 1.0)]


def test_batch_jobs_hold_their_nodes_from_start_to_end_or_to_now():
    done = BatchJob(id="b1", num_nodes=4, wall_time_min=60, start_time=100, end_time=200)
    running = BatchJob(id="b2", num_nodes=2, wall_time_min=60, start_time=150, state=BatchJobState.RUNNING)
    queued = BatchJob(id="b3", num_nodes=8, wall_time_min=60, state=BatchJobState.QUEUED)
    assert series.allocation_boxes([done, running, queued], now=300) == [(100, 200, 4.0), (150, 300, 2.0)]


def test_percentiles_interpolate_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert series.percentile(values, 50) == 3.0
    assert series.percentile(values, 90) == pytest.approx(7.6)
    assert series.percentile([5.0], 90) == 5.0
    with pytest.raises(ValueError, match="no values"):
        series.percentile([], 50)


def test_histograms_are_even_for_close_values_and_logarithmic_for_spread_ones():
    assert series.histogram_edges([0.0, 12.0], bins=4) == [0.0, 3.0, 6.0, 9.0, 12.0]
    edges = series.histogram_edges([1.0, 1000.0], bins=3)
    assert edges == pytest.approx([1.0, 10.0, 100.0, 1000.0])
    assert series.histogram([1.0, 5.0, 10.0, 999.0, 1000.0, 5000.0], edges) == [2, 1, 2]


def test_run_times_are_per_app_of_runs_that_ended_in_the_window():
    runs = [span("1", 0, 10), span("2", 0, 30), span("3", 5, 25, app="b"), span("4", 0, None), span("5", 0, 500)]
    edges, stats = series.runtime_stats(runs, since=0, until=100)
    assert [(s.app, s.count, s.min, s.median, s.max) for s in stats] == [("a", 2, 10, 20, 30), ("b", 1, 20, 20, 20)]
    assert sum(stats[0].histogram) == 2 and len(edges) == len(stats[0].histogram) + 1


def test_failures_group_by_app_and_the_first_line_of_their_reason_most_frequent_first():
    def failure(job: str, app: str, reason: str, ts: float) -> FailureEvent:
        return FailureEvent(job_id=job, app=app, state="RUN_ERROR", ts=ts, reason=reason, workdir=job)

    events = [
        failure("j1", "sim", "exit code 1\nmesh did not converge at step 4", 10),
        failure("j2", "sim", "exit code 1\nmesh did not converge at step 9", 30),
        failure("j3", "ana", "exit code 2\nno input", 20),
        failure("j4", "ana", "parent 01ABC is FAILED; this job cannot run", 25),
        failure("j5", "ana", "parent 01XYZ is FAILED; this job cannot run", 26),
    ]
    groups = series.group_failures(events)
    assert [(g.app, g.reason, g.count, g.job_ids) for g in groups] == [
        ("sim", "exit code 1", 2, ["j2", "j1"]),  # as many as the next, more recently
        ("ana", "parent is FAILED; this job cannot run", 2, ["j5", "j4"]),
        ("ana", "exit code 2", 1, ["j3"]),
    ]
    assert series.reason_key("") == "(no reason recorded)"


def test_batch_jobs_wait_from_creation_to_start_and_run_to_their_end_or_now():
    started = BatchJob(id="b1", num_nodes=2, wall_time_min=60, created_at=0, start_time=600, end_time=4200)
    running = BatchJob(id="b2", num_nodes=2, wall_time_min=60, created_at=100, start_time=200)
    waiting = BatchJob(id="b3", num_nodes=2, wall_time_min=60, created_at=50)
    timings = series.batch_timings([running, waiting, started], now=1000)
    assert [(t.id, t.wait_sec, t.run_sec) for t in timings] == [("b1", 600, 3600), ("b3", None, None),
                                                                 ("b2", 100, 800)]  # fmt: skip
    stats = series.duration_stats(t.wait_sec for t in timings)
    assert (stats.count, stats.median, stats.max) == (2, 350, 600)
    assert series.duration_stats([]).median is None


def test_the_mean_over_the_window_weighs_a_partial_last_bin_by_its_width():
    assert series.time_mean([2.0, 4.0], since=0, until=15, bin_sec=10) == pytest.approx((20 + 20) / 15)
    assert math.isclose(series.time_mean([], 0, 0, 10), 0.0)
