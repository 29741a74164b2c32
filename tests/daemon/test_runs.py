"""Campaigns through the daemon: launchers in processes of their own, forced onto the RPC path
(BALSAMD_RPC=1) as launchers on compute nodes are, while the daemon owns the store."""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import re
import signal
import socket
import threading
from pathlib import Path

import msgspec

from balsamd.models import Event
from balsamd.rpc import protocol as p
from balsamd.states import JobState
from tests.daemon.conftest import DaemonSite, alive, new_site, running, wait_until

S = JobState


def rpc_connection_of(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection to 127.0.0.1:``port``."""
    try:
        inodes = {
            target[len("socket:[") : -1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if (target := _readlink(f"/proc/{pid}/fd/{fd}")).startswith("socket:[")
        }
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    wanted = f"0100007F:{port:04X}"
    return any(f[2] == wanted and f[3] == "01" and f[9] in inodes for f in (line.split() for line in table))


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def histories(site: DaemonSite, job_ids: list[str]) -> dict[str, list[Event]]:
    by_job: dict[str, list[Event]] = collections.defaultdict(list)
    for event in site.events():
        by_job[event.job_id].append(event)
    return {job_id: by_job[job_id] for job_id in job_ids}


def assert_ran_once_and_finished(site: DaemonSite, job_ids: list[str]) -> None:
    """Every job JOB_FINISHED, once, with no event repeated: one RUNNING and one RUN_DONE each
    (a run that timed out was rerun: then one RUNNING more per RUN_TIMEOUT)."""
    states = collections.Counter(str(j.state) for j in site.jobs(job_ids))
    assert states == {"JOB_FINISHED": len(job_ids)}, states
    for job_id, events in histories(site, job_ids).items():
        path = [str(e.to_state) for e in events]
        counts = collections.Counter(path)
        assert counts["JOB_FINISHED"] == 1, (job_id, path)
        assert counts["RUN_DONE"] == 1, (job_id, path)
        assert counts["RUNNING"] == 1 + counts["RUN_TIMEOUT"], (job_id, path)
        assert path[-5:] == ["RUNNING", "RUN_DONE", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"], path
        keys = [(e.from_state, e.to_state, e.ts) for e in events]
        assert len(keys) == len(set(keys)), (job_id, path)
        # each event starts where the previous one ended
        assert all(a.to_state == b.from_state for a, b in itertools.pairwise(events)), path


def summary(stderr: str) -> dict[str, int]:
    match = re.search(r"(\d+) started, (\d+) done, (\d+) errors, (\d+) timed out, (\d+) killed", stderr)
    assert match, stderr
    return dict(zip(("started", "done", "errors", "timeouts", "killed"), map(int, match.groups()), strict=True))


def test_a_dag_finishes_through_the_daemon(daemon: DaemonSite) -> None:
    daemon.command_app("Step", "echo step")
    # the join finishes through the daemon's processing service, which runs its postprocess
    daemon.app(
        "Gather",
        """
command_template = "echo gather"

def postprocess(self):
    self.job.data["gathered"] = len(self.job.parent_ids)
    self.job.state = JobState.POSTPROCESSED
""",
    )
    (a,) = daemon.create("Step")
    (b,) = daemon.create("Step", parent_ids=[a])
    (c,) = daemon.create("Step", parent_ids=[b])
    fan = daemon.create("Step", 3)
    (join,) = daemon.create("Gather", parent_ids=fan)
    (after_join,) = daemon.create("Step", parent_ids=[join, c])
    everything = [a, b, c, *fan, join, after_join]
    assert [str(j.state) for j in daemon.jobs([b, c, join, after_join])] == ["AWAITING_PARENTS"] * 4

    port = daemon.record().port
    # the launcher stays while the join's hook (a worker process starts for it) releases the last
    # job, however long that takes, and is told to leave once everything has finished
    proc = daemon.start_launcher("--job-mode", "serial", "--idle-ttl", "600")
    wait_until(lambda: rpc_connection_of(proc.pid, port), "the launcher talks to the daemon")
    wait_until(lambda: all(j.state == S.JOB_FINISHED for j in daemon.jobs(everything)), "the DAG has finished")
    proc.send_signal(signal.SIGTERM)
    err = daemon.finish(proc)
    assert summary(err)["done"] == len(everything), err

    assert_ran_once_and_finished(daemon, everything)
    assert daemon.job(join).data == {"gathered": 3}
    first = {}
    finished = {}
    for job_id, events in histories(daemon, everything).items():
        first[job_id] = next(e.id for e in events if e.to_state == S.RUNNING)
        finished[job_id] = next(e.id for e in events if e.to_state == S.JOB_FINISHED)
    for child, parents in [(b, [a]), (c, [b]), (join, fan), (after_join, [join, c])]:
        for parent in parents:
            assert first[child] > finished[parent], f"{child} ran before its parent {parent} finished"


def test_a_launcher_on_the_rpc_path_completes_a_campaign(daemon: DaemonSite) -> None:
    daemon.command_app("Tiny", "echo {{ n }}")
    job_ids = daemon.create_each("Tiny", [{"parameters": {"n": n}, "node_packing_count": 4} for n in range(300)])

    port = daemon.record().port
    proc = daemon.start_launcher("--job-mode", "serial", "--idle-ttl", "1")
    wait_until(lambda: rpc_connection_of(proc.pid, port), "the launcher talks to the daemon")
    err = daemon.finish(proc)
    assert summary(err) == {"started": 300, "done": 300, "errors": 0, "timeouts": 0, "killed": 0}, err

    assert_ran_once_and_finished(daemon, job_ids)
    assert (daemon.root / "data").joinpath(daemon.job(job_ids[-1]).workdir, "job.out").read_text() == "299\n"
    status = daemon.status()
    assert status["healthy"]
    assert status["job_counts"] == {"JOB_FINISHED": 300}
    assert status["sessions"] == []


def test_kill_9_of_the_daemon_mid_campaign_loses_and_repeats_nothing(tmp_path: Path) -> None:
    with running(tmp_path) as site:
        # each run leaves a file in its workdir when it ends
        site.command_app("Nap", "sleep 0.1; touch ended")
        job_ids = site.create("Nap", 160, node_packing_count=8)
        record = site.record()
        proc = site.start_launcher("--job-mode", "serial", "--idle-ttl", "1")
        wait_until(lambda: rpc_connection_of(proc.pid, record.port), "the launcher talks to the daemon")

        def ended() -> int:
            return len(list((site.root / "data" / "Nap").glob("*/ended")))

        def finished() -> int:
            with site.store() as store:
                return store.counts_by_state().get("JOB_FINISHED", 0)

        wait_until(lambda: finished() >= 20, "a part of the campaign is done")
        os.kill(record.pid, signal.SIGKILL)
        wait_until(lambda: not alive(record.pid), "the daemon is gone")
        ended_at_kill = ended()
        with site.store() as store:
            last_event = store.events()[-1].id
        assert finished() < len(job_ids)

        # the launcher goes on running jobs while the daemon is away, and keeps their reports
        wait_until(lambda: ended() >= ended_at_kill + 4, "more runs end while the daemon is away")
        wait_until(lambda: "waiting to be resent" in site.launcher_logs(), "the launcher keeps its reports")
        assert proc.poll() is None
        stale = site.record()
        assert stale is not None and stale.pid == record.pid
        proc_status = site.balsamd("status", code=1)
        assert f"the daemon recorded on {record.host}:{record.port} (pid {record.pid}) does not answer" in (
            proc_status.stderr
        )

        site.start()
        new = site.record()
        assert new is not None and new.pid != record.pid
        assert new.port == record.port  # where the running launcher looks for it
        err = site.finish(proc)
        assert summary(err)["done"] == len(job_ids), err

        assert_ran_once_and_finished(site, job_ids)
        # runs that ended before the new daemon existed were recorded by it: the launcher kept them
        late = [e for e in site.events() if e.id > last_event and e.to_state == S.RUN_DONE and e.ts < new.started_at]
        assert len(late) >= 4, late
        assert site.status()["sessions"] == []
        with site.store() as store:
            (session,) = store.sessions()
        assert str(session.state) == "closed"


def test_a_killed_launchers_runs_are_recovered_once_by_the_daemon(tmp_path: Path) -> None:
    settings = {"launcher.session_expiry_sec": 2.0, "launcher.heartbeat_sec": 0.3}
    with new_site(tmp_path, settings) as site:
        site.start()
        # the first attempt of each job hangs; a rerun finishes at once
        site.command_app("Once", "test -e started && exit 0; touch started; sleep 60")
        job_ids = site.create("Once", 3, node_packing_count=4)
        first = site.start_launcher("--job-mode", "serial", "--idle-ttl", "30")
        wait_until(lambda: all(j.state == S.RUNNING for j in site.jobs(job_ids)), "the first launcher runs every job")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        for job_id in job_ids:
            site.wait_state(job_id, S.RESTART_READY, timeout=30)
        second = site.start_launcher("--job-mode", "serial", "--idle-ttl", "1")
        site.finish(second)
        for events in histories(site, job_ids).values():
            path = [str(e.to_state) for e in events]
            assert path.count("RUN_TIMEOUT") == 1, path
            assert path.count("RUNNING") == 2, path
            assert path.count("JOB_FINISHED") == 1, path
            timeout = next(e for e in events if e.to_state == S.RUN_TIMEOUT)
            assert timeout.reason == "launcher session expired"
        states = sorted(str(s.state) for s in _sessions(site))
        assert states == ["closed", "expired"]


def _sessions(site: DaemonSite):
    with site.store() as store:
        return store.sessions()


class DroppingProxy:
    """A TCP relay in front of the daemon that loses the reply to the first claim that handed
    out jobs, and the connection with it, as a daemon killed right after committing would."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.dropped: list[int] = []
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._accept)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            methods: dict[int, str] = {}
            for args in ((client, upstream, methods, False), (upstream, client, methods, True)):
                thread = threading.Thread(target=self._pump, args=args)
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket, methods: dict[int, str], replies: bool) -> None:
        try:
            while True:
                header = _recv_exactly(src, p.HEADER.size)
                body = _recv_exactly(src, p.frame_length(header))
                message = msgspec.msgpack.decode(body, type=p.Message)
                if isinstance(message, p.Call):
                    methods[message.id] = message.method
                if (
                    replies
                    and not self.dropped
                    and isinstance(message, p.Reply)
                    and methods.get(message.id) == "claim"
                    and msgspec.msgpack.decode(message.value)
                ):
                    self.dropped.append(message.id)
                    break
                dst.sendall(header + body)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._done.set()
        self._threads[0].join()
        self.server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads[1:]:
            thread.join()
        for sock in self._sockets:
            sock.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_a_launcher_runs_the_jobs_of_a_claim_whose_reply_was_lost(daemon: DaemonSite) -> None:
    daemon.command_app("Hello", "echo hello")
    job_ids = daemon.create("Hello", 4, node_packing_count=4)
    record = daemon.record()
    proxy = DroppingProxy(record.port)
    try:
        # the launcher finds the daemon where daemon.json says: at the relay
        (daemon.root / "daemon.json").write_bytes(msgspec.json.encode(msgspec.structs.replace(record, port=proxy.port)))
        proc = daemon.start_launcher("--job-mode", "serial", "--idle-ttl", "2")
        daemon.finish(proc)
    finally:
        proxy.close()
        (daemon.root / "daemon.json").write_bytes(msgspec.json.encode(record))
    assert proxy.dropped, "no claim reply was dropped"
    states = collections.Counter(str(j.state) for j in daemon.jobs(job_ids))
    assert states == {"JOB_FINISHED": len(job_ids)}, states
