"""A site store that goes back in time: restored from a copy, or short of the last commits its
WAL held when the power failed.  Central has acknowledgements, job rows and events the store
no longer has; the site finds what it lost, applies lost intents again, and central follows
the store again: every intent central shows applied exists at the site with its effect, once.
"""

from __future__ import annotations

import collections
import contextlib
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from balsamd import ids
from balsamd.models import ClaimLimits, JobState, StateUpdate
from balsamd.states import IllegalTransition
from balsamd.store.queries import claimed_jobs
from balsamd.sync.continuity import Break
from balsamd.sync.engine import SyncEngine

from .conftest import Central, SyncSite, assert_converged

KILLED_BY_SIGKILL = -9
SUFFIXES = ("", "-wal", "-shm")


def store_file(site: SyncSite) -> Path:
    return site.root / "balsamd.db"


def snapshot(site: SyncSite, dest: Path) -> None:
    """A consistent copy of the store as it is now (SQLite's online backup: one read of every
    page, whatever the WAL holds), as an administrator would take it."""
    source = apsw.Connection(str(store_file(site)))
    try:
        target = apsw.Connection(str(dest))
        try:
            with target.backup("main", source, "main") as backup:
                backup.step()
        finally:
            target.close()
    finally:
        source.close()


def restore(site: SyncSite, copy: Path) -> None:
    """Put ``copy`` back as the site's store (nothing has it open)."""
    for suffix in SUFFIXES:
        Path(f"{store_file(site)}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, store_file(site))
    store_file(site).chmod(0o600)


def squares(central: Central, prefix: str, count: int) -> list[str]:
    """Jobs alice asks site alpha for through the central database."""
    specs = [{"app": "Square", "workdir": f"{prefix}/{x}", "parameters": {"x": x}} for x in range(count)]
    with central.remote("alice") as conn:
        return [j.id for j in conn.jobs.bulk_create(specs, site="alpha")]


def run_some(site: SyncSite, rng: random.Random, count: int) -> list[str]:
    """Claim up to ``count`` runnable jobs and report them run to an end, as a launcher would."""
    with site.store() as store:
        session = store.open_session(label="campaign").id
        limits = ClaimLimits(max_jobs=count)
        claimed = [j.id for j in claimed_jobs(store.claim(session, limits), limits)]
        now = time.time()
        store.update_states(session, [StateUpdate(job_id=i, state=JobState.RUNNING, ts=now) for i in claimed])
        ends = [rng.choice([JobState.RUN_DONE, JobState.RUN_ERROR]) for _ in claimed]
        store.update_states(session, [
            StateUpdate(job_id=i, state=end, ts=now + 0.5, return_code=int(end == JobState.RUN_ERROR))
            for i, end in zip(claimed, ends, strict=True)
        ])  # fmt: skip
        store.close_session(session)
    return claimed


def check_effects(site: SyncSite) -> None:
    """Every intent central shows applied is applied at the site, with its effect, once; central
    agrees with the site; the remote jobs ran."""
    central = site.central
    applied = site.applied_intents()
    acknowledged = central.rows(
        "SELECT id, kind, job_id FROM balsamd.intents WHERE site = %s AND applied_at IS NOT NULL", (site.name,)
    )
    assert acknowledged
    missing = [i for i, _, _ in acknowledged if i not in applied]
    assert not missing, f"central shows these applied, the site has no record of them: {missing}"
    jobs = site.jobs_by_id()
    took_effect: collections.Counter[tuple[str, str]] = collections.Counter()
    for intent_id, kind, job_id in acknowledged:
        outcome = applied[intent_id]
        if outcome["status"] != "applied":
            continue
        if kind == "create":
            for made in outcome["created"]:
                assert made in jobs, f"job {made} of create {intent_id} is not at the site"
                assert site.path(made).count("READY") == 1, f"job {made} was created twice"
        else:
            took_effect[kind, job_id] += 1
    remote = [job_id for job_id, job in jobs.items() if job["owner"] == "alice"]
    for job_id in remote:
        path = site.path(job_id)
        assert path.count("KILLED") == took_effect["kill", job_id], f"job {job_id}: {path}"
        assert path.count("RESTART_READY") == took_effect["retry", job_id], f"job {job_id}: {path}"
    waiting = [i for i in remote if jobs[i]["state"] in ("PREPROCESSED", "RESTART_READY", "RUNNING")]
    assert not waiting, f"remote jobs that never ran: {waiting}"
    assert_converged(site)


class Campaign:
    """Remote creates, kills, retries and edits interleaved with the site's own work and sync
    rounds, chosen by a seeded generator; copies of the store taken at chosen moments, some in
    the middle of a round."""

    def __init__(self, central: Central, site: SyncSite, seed: int, copies: Path) -> None:
        self.central, self.site = central, site
        self.rng = random.Random(seed)
        self.copies = copies
        self.snapshots: list[Path] = []
        self.remote: list[str] = []
        self.local: list[str] = []
        self.made = 0
        central.add_user("alice")

    def take(self) -> None:
        path = self.copies / f"copy-{len(self.snapshots)}.db"
        snapshot(self.site, path)
        self.snapshots.append(path)

    def remote_create(self) -> None:
        specs = []
        for _ in range(self.rng.randint(1, 2)):
            self.made += 1
            specs.append({"app": "Square", "workdir": f"r/{self.made}", "parameters": {"x": self.rng.randint(-2, 9)}})
        with self.central.remote("alice") as conn:
            self.remote += [j.id for j in conn.jobs.bulk_create(specs, site=self.site.name)]

    def remote_intent(self, kind: str) -> None:
        if not self.remote:
            return
        job_id = self.rng.choice(self.remote)
        with self.central.remote("alice") as conn:
            if kind == "update":
                conn.jobs.update(job_id, parameters={"x": self.rng.randint(0, 9)})
            else:
                getattr(conn.jobs, kind)([job_id])

    def local_create(self) -> None:
        self.local += self.site.create("Noop", self.rng.randint(1, 2))

    def local_kill(self) -> None:
        if self.local:
            # a job that had ended stays as it was
            with self.site.store() as store, contextlib.suppress(IllegalTransition):
                store.kill([self.rng.choice(self.local)])

    def sync(self) -> None:
        """A round, pushing two rows a batch; a copy may be taken after any batch."""
        snap_within = self.rng.random() < 0.3
        with self.site.store() as store:
            engine = SyncEngine(store, self.site.dsn, self.site.name, self.site.settings(), batch=2)
            if snap_within:
                engine.progress = lambda _report: self.take() if self.rng.random() < 0.3 else None
            engine.round()

    def play(self, steps: int) -> None:
        actions: list[tuple[Callable[[], object], int]] = [
            (self.remote_create, 3),
            (lambda: self.remote_intent("kill"), 1),
            (lambda: self.remote_intent("retry"), 2),
            (lambda: self.remote_intent("update"), 1),
            (self.local_create, 2),
            (self.local_kill, 1),
            (lambda: run_some(self.site, self.rng, self.rng.randint(1, 3)), 3),
            (self.sync, 4),
        ]
        self.site.sync()
        for _ in range(steps):
            [action] = self.rng.choices([a for a, _ in actions], weights=[w for _, w in actions])
            action()
            if self.rng.random() < 0.12:
                self.take()
        # the site works on after the last copy, and central receives it
        self.local_create()
        self.sync()


@pytest.mark.parametrize("seed", [11, 29])
def test_restoring_copies_of_the_store_taken_during_a_campaign_converges(
    central: Central, make_site, tmp_path: Path, seed: int
) -> None:
    site = make_site("alpha")
    campaign = Campaign(central, site, seed, tmp_path)
    campaign.play(steps=45)
    assert len(campaign.snapshots) >= 2, "the seed took too few copies to mean anything"
    site.launch()
    site.sync()
    check_effects(site)

    reapplied = 0
    for n, copy in enumerate(campaign.snapshots):
        restore(site, copy)
        acknowledged = {i for (i,) in central.rows(
            "SELECT id FROM balsamd.intents WHERE site = %s AND applied_at IS NOT NULL", (site.name,))}  # fmt: skip
        lost = acknowledged - set(site.applied_intents())
        if n % 2:  # the restored site works before its first round: its counter passes central's
            campaign.local_create()
            run_some(site, campaign.rng, 3)
        report = site.sync()
        # the first copy is of the history central followed; a later one is of a history the
        # last restore left, which central has not had for a while (its cursors are behind)
        assert report.reconciled in ((Break.STORE_OLDER,) if n == 0 else (Break.STORE_OLDER, Break.CENTRAL_LOST))
        assert report.reapplied == len(lost)
        reapplied += report.reapplied
        site.launch()
        site.sync()
        check_effects(site)
        assert site.sync().reconciled == Break.NONE
    assert reapplied, "no copy lacked an acknowledged intent: the campaign tested nothing"


@pytest.mark.parametrize("crash_at", ["intents_acked", None], ids=["before-the-push", "after-the-round"])
def test_acknowledged_intents_lost_with_the_tail_of_the_wal_are_applied_again(
    central: Central, make_site, tmp_path: Path, crash_at: str | None
) -> None:
    """The power fails after central was told: the frames the WAL took since a commit never
    reached the disk.  Simulated on the real files: the store is copied with its WAL cut back
    to that commit (the main file is untouched while the WAL is not checkpointed)."""
    site = make_site("alpha")
    central.add_user("alice")
    site.sync()
    earlier = squares(central, "e", 2)
    site.sync()
    wal = Path(f"{store_file(site)}-wal")
    # while this connection is open nobody checkpoints the WAL away on closing
    holder = apsw.Connection(str(store_file(site)))
    try:
        assert holder.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0] == 0
        main_file = store_file(site).read_bytes()
        site.create("Noop", 2)
        on_disk = wal.stat().st_size  # a commit boundary: what the disk holds when the power fails
        made = squares(central, "m", 2)
        with central.remote("alice") as conn:
            conn.jobs.kill([earlier[0]])
        proc = site.sync_cli(crash_at=crash_at, code=None)
        assert proc.returncode == (KILLED_BY_SIGKILL if crash_at else 0), proc.stderr
        assert central.rows("SELECT count(*) FROM balsamd.intents WHERE site = 'alpha' AND applied_at IS NULL") == [
            (0,)
        ]
        assert store_file(site).read_bytes() == main_file, "the WAL was checkpointed: nothing would be lost"
        lost = tmp_path / "after-the-power-loss"
        lost.mkdir()
        shutil.copyfile(store_file(site), lost / "balsamd.db")
        with wal.open("rb") as src, (lost / "balsamd.db-wal").open("wb") as dst:
            dst.write(src.read(on_disk))
    finally:
        holder.close()
    restore(site, lost / "balsamd.db")
    shutil.copyfile(lost / "balsamd.db-wal", wal)
    assert not set(made) & set(site.jobs_by_id())
    assert site.path(earlier[0])[-1] == "PREPROCESSED"

    report = site.sync()
    # pushed before the power failed: central holds a mark the store never wrote
    assert report.reconciled == (Break.NONE if crash_at else Break.STORE_OLDER)
    assert report.reapplied == 2
    site.launch()
    site.sync()
    check_effects(site)
    assert site.path(earlier[0]).count("KILLED") == 1
    assert {site.jobs_by_id()[i]["state"] for i in made} == {"JOB_FINISHED"}


def test_intents_committed_out_of_the_order_of_their_ids_are_all_checked(
    central: Central, make_site, tmp_path: Path
) -> None:
    """Two users' transactions commit in the other order than their intents' ids: the site
    acknowledges the later id first.  Acknowledgements are numbered as they are made, so the
    one acknowledged last is checked after a restore, whatever its id."""
    site = make_site("alpha")
    central.add_user("alice")
    site.sync()
    first, second = squares(central, "o", 2)
    site.sync()
    older, newer = ids.new_ids(2)
    insert = "INSERT INTO balsamd.intents (id, site, kind, job_id, created_at) VALUES (%s, 'alpha', 'kill', %s, 0)"
    with central.connect("alice") as slow, central.connect("alice") as quick:
        slow.execute("BEGIN")
        slow.execute(insert, (older, first))
        quick.execute(insert, (newer, second))
        assert site.sync().applied == 1
        site.sync()  # checks that acknowledgement: the store records it as checked
        snapshot(site, tmp_path / "copy.db")
        slow.execute("COMMIT")
    assert site.sync().applied == 1
    order = dict(central.rows("SELECT id, ack_seq FROM balsamd.intents WHERE id = ANY(%s)", ([older, newer],)))
    assert order[older] > order[newer]

    restore(site, tmp_path / "copy.db")
    assert site.path(first)[-1] == "PREPROCESSED"
    assert site.sync().reapplied == 1
    assert site.path(first).count("KILLED") == 1
    assert site.path(second).count("KILLED") == 1
    site.sync()
    assert_converged(site)


def test_a_round_checks_only_the_acknowledgements_made_since_the_last(central: Central, make_site) -> None:
    """The normal case costs one query each side: acknowledgements already checked are not
    looked at again, however many there are."""
    site = make_site("alpha")
    central.add_user("alice")
    site.sync()
    jobs = squares(central, "c", 3)
    with central.remote("alice") as conn:
        conn.jobs.kill(jobs)
    site.sync()
    [(top,)] = central.rows("SELECT acked_seq FROM balsamd.sites WHERE name = 'alpha'")
    assert top == 4  # the create and three kills
    site.sync()
    with site.store() as store:
        assert store.meta_get("sync.acks_checked") == "4"
    # an acknowledgement central holds below what the store checked is never asked about again
    with site.store() as store, store.db.write() as conn:
        conn.execute("DELETE FROM applied_intents")
    report = site.sync()
    assert report.reapplied == 0
