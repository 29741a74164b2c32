"""The daemon against the real single-node Slurm of scripts/slurm.sh: batch jobs submitted with
sbatch, followed with squeue and removed with scancel, launchers inside them running real jobs,
the elastic queue, and a scheduler that answers garbage.

Every test makes its own site with ``balsamd site init --scheduler slurm`` and runs ``balsamd
start`` as a separate process; the daemon is stopped and the site's Slurm jobs are cancelled
whatever happens.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import balsamd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first test also waits for real_slurm

SCRIPT = Path(sys.executable).with_name("balsamd")
WAIT = 60.0  # seconds any one thing may take before a test fails
POLL = 0.25
BATCH_ORDER = ["pending_submission", "queued", "running", "finished"]
T = TypeVar("T")

FAST = {
    "daemon": {"scheduler_period_sec": 0.5, "processing_period_sec": 0.5, "reaper_period_sec": 1.0},
    "launcher": {"idle_ttl_sec": 2.0, "heartbeat_sec": 2.0, "session_expiry_sec": 10.0, "timeout_grace_sec": 5.0},
    "scheduler": {"max_wall_time_min": 120},
}


def wait_for(what: str, check: Callable[[], T], timeout: float = WAIT) -> T:
    """check()'s first truthy value; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout:g} s (last: {value!r})")
        time.sleep(POLL)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def edit_settings(path: Path, changes: dict[str, dict[str, object]]) -> None:
    """Set keys of settings.toml in place, section by section; every key must be in the file."""
    left = {section: dict(keys) for section, keys in changes.items()}
    section, out = "", []
    for line in path.read_text().splitlines():
        header = re.match(r"^\[(\w+)\]\s*$", line)
        key = re.match(r"^(\w+)\s*=", line)
        if header:
            section = header.group(1)
        elif key and key.group(1) in left.get(section, {}):
            line = f"{key.group(1)} = {toml_value(left[section].pop(key.group(1)))}"
        out.append(line)
    assert not any(left.values()), f"keys not found in {path}: {left}"
    path.write_text("\n".join(out) + "\n")


def slurm_jobs(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state (PENDING, RUNNING, COMPLETED, CANCELLED, ...) of each job it still knows."""
    if not job_ids:
        return {}
    done = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return dict(line.split("|", 1) for line in done.stdout.split() if "|" in line)


class SlurmSite:
    """A site on the real Slurm, driven through the ``balsamd`` command as a user would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_DEBUG", "BALSAMD_RPC")}
        # how the batch script calls balsamd: this interpreter, which has balsamd installed
        self.env["BALSAMD_COMMAND"] = shlex.join([sys.executable, "-m", "balsamd"])
        self.daemon_env = dict(self.env)

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(SCRIPT), "--site", str(self.root), *args], env=env or self.env, cwd=self.root.parent,
            capture_output=True, text=True, timeout=WAIT + 30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"balsamd {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    def start(self, path: str | None = None) -> None:
        self.daemon_env = dict(self.env)
        if path is not None:
            self.daemon_env["PATH"] = path
        self.run("start", env=self.daemon_env)

    def stop(self) -> None:
        self.run("stop")

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.run("status", "--json", check=False)
        return done.returncode, json.loads(done.stdout)

    def service(self, name: str) -> dict[str, Any]:
        _, st = self.status()
        return next(s for s in st["services"] if s["name"] == name)

    def batches(self) -> list[dict[str, Any]]:
        return self.json("queue", "ls", "--all")

    def batch(self, batch_id: str) -> dict[str, Any]:
        return next(b for b in self.batches() if b["id"] == batch_id)

    def submit(self, *args: str) -> str:
        return self.json("queue", "submit", "--num-nodes", "1", "--job-mode", "serial", *args)["id"]

    def jobs(self, specs: list[dict[str, Any]]) -> list[str]:
        with balsamd.connect(self.root) as site:
            return [j.id for j in site.jobs.bulk_create(specs)]

    def job_states(self, job_ids: list[str]) -> dict[str, str]:
        with balsamd.connect(self.root) as site:
            return {j: str(site.store.get(j).state) for j in job_ids}

    def cleanup(self) -> None:
        """Stop the daemon, then cancel every Slurm job of this site's batch jobs."""
        self.run("stop", check=False)
        listed_here = self.run("queue", "ls", "--all", "--json", check=False)
        batches = json.loads(listed_here.stdout) if listed_here.returncode == 0 else []
        names = {f"balsamd-{b['id']}" for b in batches}
        listed = subprocess.run(
            ["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        ).stdout
        mine = [i for i, name in (line.split("|", 1) for line in listed.splitlines() if "|" in line) if name in names]
        if mine:
            subprocess.run(["scancel", *mine], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


@pytest.fixture
def make_site(real_slurm, tmp_path: Path) -> Iterator[Callable[..., SlurmSite]]:
    """make_site(**sections): a fresh Slurm site with the apps Sleep and Noop, its settings made
    fast and then updated with ``sections`` ({"elastic": {"enabled": True}, ...})."""
    made: list[SlurmSite] = []

    def make(**sections: dict[str, object]) -> SlurmSite:
        root = tmp_path / f"site{len(made)}"
        site = SlurmSite(root)
        init = subprocess.run(
            [str(SCRIPT), "site", "init", str(root), "--scheduler", "slurm"], env=site.env,
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        made.append(site)
        assert (root / "job-template.sh").read_text().startswith("#!/bin/bash")
        changes = {k: dict(v) for k, v in FAST.items()}
        for section, keys in sections.items():
            changes.setdefault(section, {}).update(keys)
        edit_settings(root / "settings.toml", changes)
        site.run("app", "create", "Sleep", "--command", "sleep {{ s }}")
        site.run("app", "create", "Noop", "--command", "true")
        return site

    yield make
    for site in made:
        site.cleanup()


def states_seen(site: SlurmSite, batch_id: str, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Poll `queue ls --json` until ``until`` holds for the batch job; each change of state seen."""
    seen: list[dict[str, Any]] = []

    def look() -> dict[str, Any] | None:
        b = site.batch(batch_id)
        if not seen or seen[-1]["state"] != b["state"]:
            seen.append(b)
        return b if until(b) else None

    wait_for(f"batch job {batch_id}", look)
    return seen


def assert_ordered(states: list[str]) -> None:
    assert states == sorted(states, key=BATCH_ORDER.index), states
    assert len(set(states)) == len(states), states


def ticks(site: SlurmSite, service: str, count: int) -> None:
    """Wait until ``service`` has ticked ``count`` more times: each new last_tick seen is at least one
    tick, and all but the first began after this call."""
    seen = {site.service(service)["last_tick"]}

    def more() -> bool:
        seen.add(site.service(service)["last_tick"])
        return len(seen) > count

    wait_for(f"{count} more ticks of {service}", more)


def decided(site: SlurmSite, after: int) -> dict[str, Any] | None:
    """The elastic queue's detail once it has made more than ``after`` decisions."""
    detail = site.service("elastic-queue")["detail"]
    return detail if detail.get("decisions", 0) > after else None


def test_batch_job_runs_its_launcher_to_the_end(make_site) -> None:
    site = make_site()
    site.start()
    noops = site.jobs([{"app": "Noop", "workdir": f"noop/{i}"} for i in range(20)])
    sleeps = site.jobs([{"app": "Sleep", "workdir": f"sleep/{i}", "parameters": {"s": 3}} for i in range(2)])
    submitted = math.floor(time.time())  # Slurm's times are whole seconds
    batch_id = site.submit("--wall-time-min", "5")

    seen = states_seen(site, batch_id, lambda b: b["state"] == "finished")
    looked = time.time()
    states = [b["state"] for b in seen]
    assert_ordered(states)
    assert "running" in states and states[-1] == "finished"
    last = seen[-1]
    assert last["scheduler_id"] and last["scheduler_id"].isdigit()
    assert any(b["scheduler_id"] for b in seen if b["state"] == "queued") or states[0] != "queued"
    assert last["status_info"] == "COMPLETED"
    assert last["start_time"] is not None and last["end_time"] is not None
    assert submitted <= last["start_time"] <= last["end_time"] <= looked
    assert slurm_jobs([last["scheduler_id"]]) == {last["scheduler_id"]: "COMPLETED"}
    row = next(line for line in site.run("queue", "ls", "--all").stdout.splitlines() if line.startswith(batch_id))
    assert row.split()[1:3] == ["finished", last["scheduler_id"]]
    # the batch job's output: the launcher's summary
    out = (site.root / "batch" / f"{batch_id}.out").read_text()
    assert "launcher finished" in out and "22 done" in out, out

    assert site.job_states(noops + sleeps) == dict.fromkeys(noops + sleeps, "JOB_FINISHED")
    with balsamd.connect(site.root) as s:
        for job_id in noops + sleeps:
            job = s.jobs.get(job_id)
            assert job.batch_job_id == batch_id
            trail = [str(e.to_state) for e in job.events()]
            assert trail.index("RUNNING") < trail.index("RUN_DONE") < trail.index("JOB_FINISHED"), trail
        for job_id in sleeps:
            run = {str(e.to_state): e.ts for e in s.jobs.get(job_id).events()}
            assert run["RUN_DONE"] - run["RUNNING"] >= 2.5
            # it ran inside the batch job (give or take Slurm's whole seconds)
            assert last["start_time"] - 1 <= run["RUNNING"] < run["RUN_DONE"] <= last["end_time"] + 1


def test_queue_rm_cancels_a_queued_batch_job(make_site) -> None:
    site = make_site()
    site.start()
    # the "short" partition allows 30 minutes: Slurm keeps a 60-minute job pending for good
    batch_id = site.submit("--wall-time-min", "60", "--queue", "short")
    queued = wait_for("queued with a Slurm id", lambda: (b := site.batch(batch_id))["scheduler_id"] and b)
    assert queued["state"] == "queued"
    slurm_id = queued["scheduler_id"]
    assert wait_for("pending in Slurm", lambda: slurm_jobs([slurm_id]).get(slurm_id) == "PENDING")
    ticks(site, "scheduler (slurm)", 3)  # steps that saw it pending: still queued
    assert site.batch(batch_id)["state"] == "queued"

    removed = site.run("queue", "rm", batch_id)
    assert removed.stdout.split() == [batch_id, "pending_deletion"]
    ended = wait_for("finished", lambda: (b := site.batch(batch_id))["state"] == "finished" and b)
    assert ended["status_info"] == "CANCELLED (removal requested)"
    assert ended["end_time"] is not None
    assert slurm_jobs([slurm_id]) == {slurm_id: "CANCELLED"}
    assert site.run("queue", "rm", batch_id, check=False).returncode == 1  # it has ended


def test_a_batch_job_cancelled_while_queued_has_no_start_time(make_site) -> None:
    site = make_site()
    site.start()
    batch_id = site.submit("--wall-time-min", "60", "--queue", "short")
    slurm_id = wait_for("queued with a Slurm id", lambda: site.batch(batch_id)["scheduler_id"])
    wait_for("pending in Slurm", lambda: slurm_jobs([slurm_id]).get(slurm_id) == "PENDING")
    site.run("queue", "rm", batch_id)
    ended = wait_for("finished", lambda: (b := site.batch(batch_id))["state"] == "finished" and b)
    assert ended["status_info"] == "CANCELLED (removal requested)" and ended["end_time"] is not None
    assert ended["start_time"] is None


def test_queue_rm_cancels_a_running_batch_job(make_site) -> None:
    site = make_site()
    site.start()
    [sleeper] = site.jobs([{"app": "Sleep", "workdir": "long", "parameters": {"s": 600}}])
    batch_id = site.submit("--wall-time-min", "5")
    wait_for("the sleep job running", lambda: site.job_states([sleeper])[sleeper] == "RUNNING")
    running = wait_for("batch job running", lambda: (b := site.batch(batch_id))["state"] == "running" and b)
    slurm_id = running["scheduler_id"]
    assert slurm_jobs([slurm_id]) == {slurm_id: "RUNNING"}
    with balsamd.connect(site.root) as s:
        assert s.jobs.get(sleeper).batch_job_id == batch_id

    removed = site.run("queue", "rm", batch_id)
    assert removed.stdout.split() == [batch_id, "pending_deletion"]
    ended = wait_for("finished", lambda: (b := site.batch(batch_id))["state"] == "finished" and b)
    assert ended["start_time"] is not None and ended["end_time"] >= ended["start_time"]
    assert wait_for("gone from Slurm", lambda: slurm_jobs([slurm_id]).get(slurm_id) == "CANCELLED")
    # the launcher's drain (or the expiry of its session) settles the run; it is not left RUNNING
    settled = wait_for(
        "the sleep job settled",
        lambda: (st := site.job_states([sleeper])[sleeper]) in ("RUN_TIMEOUT", "RESTART_READY") and st,
    )
    assert settled == "RESTART_READY"  # the default handle_timeout asks for a rerun
    with balsamd.connect(site.root) as s:
        trail = [str(e.to_state) for e in s.jobs.get(sleeper).events()]
    assert trail[-3:] == ["RUNNING", "RUN_TIMEOUT", "RESTART_READY"], trail


ELASTIC = {
    "enabled": True, "period_sec": 1.0, "job_mode": "serial", "min_nodes": 1, "max_nodes": 1,
    "min_wall_time_min": 1, "max_wall_time_min": 10, "wall_time_pad_min": 0, "max_queued": 2,
    "max_queue_wait_min": 5.0,
}  # fmt: skip


def test_elastic_queue_follows_the_backlog(make_site) -> None:
    site = make_site(elastic=ELASTIC)
    # a job no batch job of the elastic queue can run: 20 minutes > max_wall_time_min=10
    [unfit] = site.jobs([{"app": "Noop", "workdir": "unfit", "wall_time_min": 20}])
    site.start()
    wait_for("the unfit job runnable", lambda: site.job_states([unfit])[unfit] == "PREPROCESSED")
    # the second decision from now is the first made wholly after the job was runnable
    before = site.service("elastic-queue")["detail"].get("decisions", 0)
    detail = wait_for("an elastic decision", lambda: decided(site, before + 1))
    assert detail["decision"] == "nothing to run"
    assert detail["runnable"] == 0 and detail["unfit"] == 1
    assert "max_nodes=1" in detail["unfit_note"] and "10 minutes" in detail["unfit_note"]
    assert site.batches() == []

    noops = site.jobs([{"app": "Noop", "workdir": f"noop/{i}"} for i in range(30)])
    wait_for("an elastic batch job", site.batches)
    wait_for("the backlog run", lambda: set(site.job_states(noops).values()) == {"JOB_FINISHED"}, timeout=90)
    ended = wait_for(
        "the elastic batch jobs ended",
        lambda: (bs := site.batches()) and all(b["state"] == "finished" for b in bs) and bs,
    )
    assert 1 <= len(ended) <= ELASTIC["max_queued"]
    for b in ended:
        assert b["origin"] == "elastic"
        assert (b["num_nodes"], b["wall_time_min"], b["job_mode"]) == (1, 10, "serial")
        assert b["scheduler_id"] and b["status_info"] == "COMPLETED"
        assert slurm_jobs([b["scheduler_id"]]) == {b["scheduler_id"]: "COMPLETED"}
    with balsamd.connect(site.root) as s:
        ran_in = {s.jobs.get(j).batch_job_id for j in noops}
    assert ran_in <= {b["id"] for b in ended}

    # drained: the next decisions, each carried out before it is counted, submit nothing more
    before = site.service("elastic-queue")["detail"]["decisions"]
    detail = wait_for("three more elastic decisions", lambda: decided(site, before + 2))
    assert [b["id"] for b in site.batches()] == [b["id"] for b in ended]
    assert detail["decision"] == "nothing to run" and detail["unfit"] == 1
    assert site.job_states([unfit])[unfit] == "PREPROCESSED"


def test_garbage_from_squeue_does_not_kill_the_daemon(make_site, tmp_path: Path) -> None:
    site = make_site()
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\necho 'this is not squeue output'\necho '42 ??? |'\n")
    (fake / "squeue").chmod(0o755)
    site.start(path=f"{fake}{os.pathsep}{site.env['PATH']}")
    batch_id = site.submit("--wall-time-min", "5")

    broken = wait_for(
        "the status error recorded",
        lambda: "cannot parse squeue output" in (b := site.batch(batch_id))["status_info"] and b,
    )
    assert broken["status_info"].startswith("status unknown: ")
    assert "this is not squeue output" in broken["status_info"]
    assert broken["state"] == "queued" and broken["scheduler_id"]
    slurm_id = broken["scheduler_id"]
    # Slurm runs it (the launcher finds nothing to do and leaves) while the daemon cannot tell
    assert wait_for("completed in Slurm", lambda: slurm_jobs([slurm_id]).get(slurm_id) == "COMPLETED")
    ticks(site, "scheduler (slurm)", 3)  # still ticking, each step reading the garbage
    code, st = site.status()
    assert code == 0 and st["running"] and st["healthy"]
    scheduler = next(s for s in st["services"] if s["name"] == "scheduler (slurm)")
    assert scheduler["healthy"] and scheduler["restarts"] == 0 and scheduler["last_error"] == ""
    assert site.batch(batch_id)["state"] == "queued"
    assert "cannot parse squeue output" in site.batch(batch_id)["status_info"]

    site.stop()
    site.start()  # the real squeue again
    ended = wait_for("resolved", lambda: (b := site.batch(batch_id))["state"] == "finished" and b)
    assert ended["status_info"] == "COMPLETED"
    assert ended["start_time"] is not None and ended["end_time"] >= ended["start_time"]


def test_elastic_queue_withdraws_a_batch_job_stuck_in_the_queue(make_site) -> None:
    # 60-minute batch jobs in the 30-minute "short" partition: Slurm keeps each one pending
    wait = {"queue": "short", "min_wall_time_min": 60, "max_wall_time_min": 60, "max_queued": 1}
    site = make_site(elastic={**ELASTIC, **wait, "max_queue_wait_min": 0.05})
    site.jobs([{"app": "Noop", "workdir": "one"}])
    site.start()
    first = wait_for("an elastic batch job queued", lambda: [b for b in site.batches() if b["scheduler_id"]])[0]
    assert (first["queue"], first["wall_time_min"], first["origin"]) == ("short", 60, "elastic")
    slurm_id = first["scheduler_id"]
    assert wait_for("pending in Slurm", lambda: slurm_jobs([slurm_id]).get(slurm_id) == "PENDING")
    # withdrawn after 3 s in the queue, cancelled in Slurm, and replaced while the backlog remains
    ended = wait_for("withdrawn", lambda: (b := site.batch(first["id"]))["state"] == "finished" and b)
    assert ended["end_time"] is not None
    assert wait_for("cancelled in Slurm", lambda: slurm_jobs([slurm_id]).get(slurm_id) == "CANCELLED")
    wait_for("a replacement", lambda: len(site.batches()) >= 2)
    active = [b for b in site.batches() if b["state"] != "finished"]
    assert len(active) <= 1
