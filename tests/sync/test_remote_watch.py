"""Watching a campaign through the central database: ``job wait`` and ``events`` with their
filters and ``--follow``, as a central user types them, while the site runs the jobs (a real
launcher) and syncs when the test says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.models import Event
from balsamd.states import JobState
from balsamd.store.queries import EventFilter

from .conftest import Central, SyncSite
from .test_remote_cli import Laptop

S = JobState
FAILED_EXIT, TIMED_OUT_EXIT = 4, 124


@pytest.fixture
def alpha(make_site) -> SyncSite:
    site = make_site("alpha")
    site.sync()
    return site


@pytest.fixture
def alice(central: Central) -> Laptop:
    central.add_user("alice")
    return Laptop(central.dsn_for("alice"))


def squares(*xs: int, **tags: str) -> list[dict]:
    return [{"app": "Square", "workdir": f"sq/{x}", "parameters": {"x": x}, "tags": tags} for x in xs]


def test_wait_through_central_ends_with_how_the_jobs_ended(central: Central, alpha: SyncSite, alice: Laptop) -> None:
    with central.remote("alice") as conn:
        good, bad = conn.jobs.bulk_create(squares(2, -1, run="a"), site="alpha")
        [left] = conn.jobs.bulk_create(squares(3, run="b"), site="alpha")
        alpha.sync()
        out = alice("job", "wait", "--tag", "run=a", "--timeout", "0.5", code=TIMED_OUT_EXIT).stdout
        assert out.startswith("timed out: 2 job(s): 0 finished, 0 failed, 0 killed, 2 not ended (0:00:0")
        conn.jobs.kill([left])
        alpha.sync()
        alpha.launch()
        alpha.sync()
        lines = alice("job", "wait", "--tag", "run=a", code=FAILED_EXIT).stdout.splitlines()
        assert lines[0].startswith("2 job(s): 1 finished, 1 failed, 0 killed, 0 not ended (0:00:0")
        assert lines[1].startswith(f"  FAILED {bad.id}: ") and "cannot square negative -1" in lines[1]
        assert alice("job", "wait", good.id).stdout.startswith("1 job(s): 1 finished, 0 failed, 0 killed")
        outcome = conn.jobs.wait_for(tags={"run": "b"}, site="alpha")
    assert (outcome.total, outcome.killed, outcome.succeeded) == (1, 1, False)


def test_events_through_central_are_filtered_as_at_the_site(central: Central, alpha: SyncSite, alice: Laptop) -> None:
    with central.remote("alice") as conn:
        jobs = conn.jobs.bulk_create(squares(1, 2, run="a") + squares(3, run="b"), site="alpha")
        alpha.sync()
        conn.jobs.kill([jobs[2]])
        alpha.sync()
        alpha.launch()
        alpha.sync()
    at_site = {(e.job_id, str(e.to_state)) for e in alpha.events()}
    assert [(e["job_id"], e["to_state"]) for e in alice.json("events", "--state", "KILLED")] == [(jobs[2].id, "KILLED")]
    finished = alice.json("events", "--from-state", "STAGED_OUT", "--tag", "run=a")
    assert {e["job_id"] for e in finished} == {jobs[0].id, jobs[1].id} and len(finished) == 2
    assert {(e["job_id"], e["to_state"]) for e in alice.json("events", "--since", "1h")} == at_site
    assert alice.json("events", "--until", "1h") == []
    everything = alice.json("events")
    assert alice.json("events", "--latest", "3") == everything[-3:]
    assert alice.json("events", "--app", "Square", "--job", jobs[2].id)[-1]["to_state"] == "KILLED"
    said = alice("events", "--latest", "1", "--limit", "1", code=1).stderr
    assert said.endswith("events: give latest (the last N) or limit (the first N), not both\n")


def test_follow_through_central_yields_what_a_later_sync_brings(central: Central, alpha: SyncSite) -> None:
    with central.remote("alice") as conn:
        [first] = conn.jobs.bulk_create(squares(1), site="alpha")
        alpha.sync()
        rounds: list[str] = []

        def between_polls(_seconds: float) -> None:
            """What happens while the follower sleeps: the job is killed, then the site syncs."""
            rounds.append("poll")
            if len(rounds) == 2:
                conn.jobs.kill([first])
                alpha.sync()

        followed: Iterator[Event] = conn.follow_events(where=EventFilter(latest=1), sleep=between_polls)
        assert next(followed).to_state == S.PREPROCESSED  # the newest before
        killed = next(followed)
        assert (killed.job_id, killed.to_state, len(rounds)) == (first.id, S.KILLED, 2)
        [second] = conn.jobs.bulk_create(squares(2), site="alpha")
        rounds.clear()
        alpha.sync()
        arrived = [next(followed) for _ in range(3)]
        assert [(e.job_id, e.to_state) for e in arrived] == [
            (second.id, S.READY), (second.id, S.STAGED_IN), (second.id, S.PREPROCESSED),
        ]  # fmt: skip
        followed.close()


def test_wait_json_through_central(central: Central, alpha: SyncSite, alice: Laptop) -> None:
    with central.remote("alice") as conn:
        [job] = conn.jobs.bulk_create(squares(4), site="alpha")
    alpha.sync()
    alpha.launch()
    alpha.sync()
    outcome = json.loads(alice("job", "wait", job.id, "--json").stdout)
    assert (outcome["total"], outcome["finished"], outcome["failures"]) == (1, 1, [])


def test_a_file_of_jobs_through_central_is_created_all_or_none(
    central: Central, alpha: SyncSite, alice: Laptop, tmp_path: Path
) -> None:
    lines = [{"workdir": f"f/{n}", "parameters": {"x": n}} for n in range(50)]
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert alice("job", "create", "--from", str(path), "--app", "Square").stdout == "created 50 job(s)\n"
    alpha.sync()
    assert len(alpha.jobs_by_id()) == 50
    lines[30]["parameters"] = {"x": 1, "y": 2}  # Square takes no y: only the site's app knows
    lines[40]["num_nodes"] = 1000
    path.write_text("".join(json.dumps({**line, "workdir": f"g/{n}"}) + "\n" for n, line in enumerate(lines)))
    said = alice("job", "create", "--from", str(path), "--app", "Square", code=1).stderr.splitlines()
    assert said[0].endswith("2 line(s) of the file are wrong; no job was created:")
    assert said[1].startswith("  line 31: ") and "y" in said[1]
    assert said[2].startswith("  line 41: ") and "num_nodes" in said[2]
    assert len(central.jobs("alpha")) == 50
