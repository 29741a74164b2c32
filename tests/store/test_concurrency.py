"""Many processes on one store file: no job is ever claimed twice or lost."""

from __future__ import annotations

import collections
import multiprocessing
import random
import time

from balsamd import ids
from balsamd.models import ClaimLimits, JobSpec, StateUpdate
from balsamd.states import JobState
from balsamd.store.store import SiteStore
from tests.conftest import RULES, make_jobs
from tests.store import claim

S = JobState
CTX = multiprocessing.get_context("spawn")


def _claimer(path: str, start, stop, results, seed: int) -> None:
    """Claim small batches until ``stop`` is set and nothing is left; run each job at once."""
    rng = random.Random(seed)
    site_store = SiteStore(path, RULES)
    session = site_store.open_session(f"claimer-{seed}")
    got: list[str] = []
    start.wait()
    while True:
        # read the flag before claiming: once set, an empty claim means nothing is left
        stopping = stop.is_set()
        jobs = claim(site_store, session.id, ClaimLimits(max_jobs=rng.randint(1, 40)))
        if not jobs and stopping:
            break
        if not jobs:
            time.sleep(0.002)  # a launcher polls; spinning on the write lock only starves creators
            continue
        got.extend(j.id for j in jobs)
        ts = float(len(got))
        site_store.update_states(
            session.id,
            [StateUpdate(job_id=j.id, state=s, ts=ts) for j in jobs for s in (S.RUNNING, S.RUN_DONE)],
        )
    site_store.close_session(session.id)
    site_store.close()
    results.put(got)


def _creator(path: str, start, batches: int, seed: int) -> None:
    rng = random.Random(seed)
    site_store = SiteStore(path, RULES)
    start.wait()
    for _ in range(batches):
        site_store.create_jobs([JobSpec(app="noop", workdir=f"c{seed}/{w}") for w in ids.new_ids(rng.randint(1, 60))])
    site_store.close()


def run_claimers(path: str, n: int, creators: int = 0, batches: int = 0) -> list[str]:
    start = CTX.Barrier(n + creators)
    stop = CTX.Event()
    results = CTX.Queue()
    claimers = [CTX.Process(target=_claimer, args=(path, start, stop, results, s)) for s in range(n)]
    makers = [CTX.Process(target=_creator, args=(path, start, batches, 100 + s)) for s in range(creators)]
    for p in claimers + makers:
        p.start()
    for p in makers:
        p.join(90)
    assert [p.exitcode for p in makers] == [0] * creators
    stop.set()
    claimed = [job_id for _ in claimers for job_id in results.get(timeout=90)]
    for p in claimers:
        p.join(30)
    assert [p.exitcode for p in claimers] == [0] * n
    return claimed


def assert_each_claimed_once(site_store, claimed: list[str]) -> None:
    twice = [i for i, n in collections.Counter(claimed).items() if n > 1]
    assert twice == []
    assert set(claimed) == {j.id for j in site_store.filter()}
    assert site_store.counts_by_state() == {"JOB_FINISHED": len(claimed)}
    assert {j.attempts for j in site_store.filter()} == {1}
    assert len(site_store.events()) == 8 * len(claimed)


def test_processes_claiming_from_one_store_get_every_job_exactly_once(site_store):
    make_jobs(site_store, 3000)
    claimed = run_claimers(str(site_store.db.path), 4)
    assert len(claimed) == 3000
    assert_each_claimed_once(site_store, claimed)


def test_processes_creating_while_others_claim_lose_and_double_nothing(site_store):
    claimed = run_claimers(str(site_store.db.path), 3, creators=2, batches=30)
    assert claimed
    assert_each_claimed_once(site_store, claimed)
