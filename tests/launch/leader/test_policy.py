"""The launcher's pure decisions: what to claim, and how a finished run is reported."""

from __future__ import annotations

import pytest

from balsamd.config import LauncherSettings
from balsamd.launch.leader.policy import (
    CLAIM_AHEAD_SEC,
    MAX_FOLLOWERS,
    MEAN_WEIGHT,
    QUEUED_WORK_SEC,
    claim_limits,
    finished_update,
    followers,
    short_runs,
    updated_mean,
)
from balsamd.launch.leader.resources import FreeCapacity
from balsamd.models import ClaimLimits, JobMode
from balsamd.states import JobState

SETTINGS = LauncherSettings(claim_batch=100, stop_claiming_min=1.0)
IDLE_FOUR = FreeCapacity(idle_nodes=4, aggregate_free=4.0, max_free_cpus=8.0)
FULL = FreeCapacity(idle_nodes=0, aggregate_free=0.0, max_free_cpus=0.0)
TAGS = {"campaign": "a"}


# ----- claim_limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(JobMode))
@pytest.mark.parametrize("remaining", [1.0, 0.5, 0.0, -2.0])
def test_no_claims_within_stop_claiming_min_of_the_wall_time(mode: JobMode, remaining: float) -> None:
    assert claim_limits(mode, IDLE_FOUR, 0, remaining, SETTINGS, {}) is None


def test_serial_claims_a_full_batch_of_single_rank_jobs_when_the_backlog_is_empty() -> None:
    limits = claim_limits(JobMode.SERIAL, FULL, 0, None, SETTINGS, TAGS)
    assert limits == ClaimLimits(max_jobs=100, serial_only=True, max_wall_time_min=None, filter_tags=TAGS)


def test_serial_claims_only_jobs_that_fit_the_remaining_wall_time() -> None:
    limits = claim_limits(JobMode.SERIAL, IDLE_FOUR, 0, 30.0, SETTINGS, {})
    assert limits is not None and limits.max_wall_time_min == 30.0


def test_serial_refills_the_backlog_only_once_it_is_half_empty() -> None:
    assert claim_limits(JobMode.SERIAL, IDLE_FOUR, 51, None, SETTINGS, {}) is None
    refill = claim_limits(JobMode.SERIAL, IDLE_FOUR, 50, None, SETTINGS, {})
    assert refill is not None and refill.max_jobs == 50
    assert claim_limits(JobMode.SERIAL, IDLE_FOUR, 100, None, SETTINGS, {}) is None


def test_serial_keeps_claim_ahead_seconds_of_runs_in_hand_at_a_high_run_rate() -> None:
    # 2,000 runs/s: 0.2 s of runs is 400 jobs, four batches of 100
    rate = 400 / CLAIM_AHEAD_SEC
    first = claim_limits(JobMode.SERIAL, IDLE_FOUR, 0, None, SETTINGS, {}, rate)
    assert first is not None and first.max_jobs == 400
    topping_up = claim_limits(JobMode.SERIAL, IDLE_FOUR, 300, None, SETTINGS, {}, rate)
    assert topping_up is not None and topping_up.max_jobs == 100
    assert claim_limits(JobMode.SERIAL, IDLE_FOUR, 351, None, SETTINGS, {}, rate) is None


def test_serial_claims_a_batch_at_least_however_slowly_runs_end() -> None:
    limits = claim_limits(JobMode.SERIAL, IDLE_FOUR, 0, None, SETTINGS, {}, run_rate=1.0)
    assert limits is not None and limits.max_jobs == 100


def test_mpi_claims_only_what_fits_the_free_nodes_now() -> None:
    free = FreeCapacity(idle_nodes=2, aggregate_free=2.5, max_free_cpus=8.0)
    limits = claim_limits(JobMode.MPI, free, 0, 12.0, SETTINGS, TAGS)
    assert limits == ClaimLimits(
        max_jobs=100, max_nodes_per_job=2, max_aggregate_nodes=2.5, max_wall_time_min=12.0, filter_tags=TAGS
    )
    assert not limits.serial_only


def test_mpi_without_idle_nodes_still_claims_single_node_jobs_for_partly_used_nodes() -> None:
    free = FreeCapacity(idle_nodes=0, aggregate_free=0.5, max_free_cpus=2.0)
    limits = claim_limits(JobMode.MPI, free, 0, None, SETTINGS, {})
    assert limits is not None
    assert (limits.max_nodes_per_job, limits.max_aggregate_nodes) == (1, 0.5)


def test_mpi_claims_nothing_while_jobs_wait_or_nodes_are_full() -> None:
    assert claim_limits(JobMode.MPI, IDLE_FOUR, 1, None, SETTINGS, {}) is None
    assert claim_limits(JobMode.MPI, FULL, 0, None, SETTINGS, {}) is None


@pytest.mark.parametrize("batch", [1, 2, 3, 100])
def test_serial_never_asks_for_zero_jobs(batch: int) -> None:
    settings = LauncherSettings(claim_batch=batch, stop_claiming_min=0.0)
    for backlog in range(batch + 1):
        limits = claim_limits(JobMode.SERIAL, IDLE_FOUR, backlog, None, settings, {})
        assert limits is None or limits.max_jobs > 0, f"backlog {backlog}: {limits}"


# ----- finished_update --------------------------------------------------------------------------


def test_exit_zero_is_run_done_without_a_reason_and_keeps_the_result() -> None:
    update = finished_update("J1", 0, "some output", b"blob", False, 12.5)
    assert (update.job_id, update.state, update.ts) == ("J1", JobState.RUN_DONE, 12.5)
    assert (update.return_code, update.reason, update.result) == (0, "", b"blob")


def test_a_nonzero_exit_is_run_error_with_the_code_and_the_output_tail() -> None:
    update = finished_update("J1", 3, "last words\n", None, False, 1.0)
    assert update.state == JobState.RUN_ERROR
    assert update.return_code == 3
    assert update.reason == "exit code 3\nlast words\n"


def test_a_run_that_could_not_start_is_run_error_with_the_reason_alone() -> None:
    update = finished_update("J1", None, "could not start: FileNotFoundError: x", None, False, 1.0)
    assert (update.state, update.return_code) == (JobState.RUN_ERROR, None)
    assert update.reason == "could not start: FileNotFoundError: x"


def test_an_exception_of_a_python_run_is_run_error_carrying_the_packed_exception() -> None:
    update = finished_update("J1", 1, "Traceback ...", b"packed error", False, 1.0)
    assert (update.state, update.result) == (JobState.RUN_ERROR, b"packed error")


@pytest.mark.parametrize("code", [-15, -9, 0, 1, None])
def test_a_run_stopped_for_time_is_run_timeout_whatever_its_exit(code: int | None) -> None:
    update = finished_update("J1", code, "", None, True, 1.0)
    assert update.state == JobState.RUN_TIMEOUT
    assert update.return_code == code
    assert update.reason == "stopped: the launcher's wall time ran out"


def test_a_timed_out_run_keeps_its_output_tail_as_reason() -> None:
    update = finished_update("J1", -15, "got TERM\n", None, True, 1.0)
    assert (update.state, update.reason) == (JobState.RUN_TIMEOUT, "got TERM\n")


# ----- short runs: queues on workers, lazy files ----------------------------------------------


def test_an_app_whose_run_time_is_unknown_is_not_short_and_gets_no_queue() -> None:
    assert not short_runs(None)
    assert followers(None) == 0


def test_long_runs_get_no_queue_so_no_job_waits_behind_one() -> None:
    assert not short_runs(QUEUED_WORK_SEC)
    assert followers(QUEUED_WORK_SEC / 2) == 0
    assert followers(60.0) == 0


def test_short_runs_get_a_queue_of_about_queued_work_sec_of_work() -> None:
    assert short_runs(0.001)
    assert followers(0.001) == round(QUEUED_WORK_SEC / 0.001)
    assert followers(QUEUED_WORK_SEC / 4) == 4


def test_queues_never_exceed_max_followers_however_short_the_runs() -> None:
    assert followers(1e-7) == MAX_FOLLOWERS
    assert followers(0.0) == MAX_FOLLOWERS


def test_the_first_run_sets_the_mean_and_later_runs_move_it_by_their_weight() -> None:
    mean = updated_mean(None, 2.0)
    assert mean == 2.0
    assert updated_mean(mean, 1.0) == pytest.approx(2.0 - MEAN_WEIGHT)


def test_a_few_long_runs_end_an_apps_short_status() -> None:
    mean = 0.001
    for _ in range(3):
        mean = updated_mean(mean, 10.0)
    assert not short_runs(mean)
