"""When a launcher asks for work and with which request: at once after a full claim, a little
later after a partial one, rarely while idle, and again with the same request after a failure."""

from __future__ import annotations

from balsamd.config import LauncherSettings
from balsamd.launch.leader.claims import FLUSH_SEC, IDLE_CLAIM_SEC, Claims
from balsamd.launch.leader.resources import FreeCapacity
from balsamd.models import ClaimLimits, JobMode

SETTINGS = LauncherSettings(claim_batch=100, stop_claiming_min=1.0)
FREE = FreeCapacity(idle_nodes=1, aggregate_free=1.0, max_free_cpus=4.0)


def asked(claims: Claims, now: float, backlog: int = 0, idle: bool = True) -> ClaimLimits:
    limits = claims.ask(now, FREE, backlog, None, 0.0, idle)
    assert limits is not None
    return limits


def test_a_new_launcher_claims_at_once_and_its_claim_is_out_until_answered() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {"campaign": "a"}, now=100.0)
    assert claims.due(100.0)
    limits = asked(claims, 100.0)
    assert (limits.max_jobs, limits.filter_tags) == (100, {"campaign": "a"})
    assert claims.out
    claims.answered(limits, 10, now=100.5)
    assert not claims.out


def test_a_claim_that_got_all_it_asked_for_is_followed_at_once() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {}, now=100.0)
    limits = asked(claims, 100.0)
    claims.answered(limits, limits.max_jobs, now=100.5)
    assert claims.more and claims.next_at == 100.5


def test_a_claim_that_got_fewer_is_followed_after_a_flush() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {}, now=100.0)
    claims.answered(asked(claims, 100.0), 3, now=100.5)
    assert not claims.more and claims.next_at == 100.5 + FLUSH_SEC


def test_an_empty_claim_is_followed_after_the_idle_period_and_counts_for_idleness() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {}, now=100.0)
    assert not claims.empty_since(100.0)
    claims.answered(asked(claims, 100.0), 0, now=100.5)
    assert claims.next_at == 100.5 + IDLE_CLAIM_SEC
    assert claims.empty_since(100.5) and not claims.empty_since(100.6)


def test_a_failed_claim_is_asked_again_later_with_the_same_request() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {}, now=100.0)
    first = asked(claims, 100.0)
    claims.failed(now=100.5)
    assert not claims.out and claims.next_at == 100.5 + IDLE_CLAIM_SEC
    again = asked(claims, 101.5)
    assert again.request_id == first.request_id
    claims.answered(again, 1, now=101.6)
    assert asked(claims, 102.0).request_id != first.request_id


def test_a_claim_the_full_store_refused_counts_as_empty_for_idleness() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {}, now=100.0)
    asked(claims, 100.0)
    claims.failed(now=100.5)  # the daemon is away: work may come when it is back
    assert not claims.empty_since(100.5)
    asked(claims, 101.5)
    claims.failed(now=101.6, store_full=True)  # no work comes from a full store
    assert claims.empty_since(101.6) and claims.next_at == 101.6 + IDLE_CLAIM_SEC


def test_ending_runs_bring_the_next_claim_forward() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {}, now=100.0)
    claims.answered(asked(claims, 100.0), 0, now=100.0)  # idle: next in a second
    claims.runs_ended(now=100.2)
    assert claims.next_at == 100.0 + FLUSH_SEC
    claims.answered(asked(claims, 101.0), 100, now=101.0)  # there is more: at once
    claims.runs_ended(now=101.0)
    assert claims.next_at == 101.0


def test_nothing_to_ask_for_is_no_claim_and_counts_as_empty_only_when_idle() -> None:
    claims = Claims(JobMode.SERIAL, SETTINGS, {}, now=100.0)
    assert claims.ask(100.0, FREE, 100, None, 0.0, idle=False) is None  # a full backlog
    assert not claims.out and claims.next_at == 100.0 + FLUSH_SEC
    assert not claims.empty_since(100.0)
    assert claims.ask(101.0, FREE, 0, 0.5, 0.0, idle=True) is None  # the wall time is ending
    assert claims.empty_since(101.0)
