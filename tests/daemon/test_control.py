"""`balsamd start | stop | status` as users type them, each in a subprocess."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import apsw
import msgspec

from balsamd.rpc.record import DaemonRecord, this_host
from tests.daemon.conftest import DaemonSite, alive, child_env, cmdline, wait_until

NOT_RUNNING = "Error: the daemon is not running (no daemon.json in the site); start it with `balsamd start`\n"


def started_line(stdout: str) -> tuple[int, str, int]:
    match = re.match(r"daemon started: pid (\d+), serving on (\S+):(\d+)\n", stdout)
    assert match, stdout
    return int(match.group(1)), match.group(2), int(match.group(3))


def processes_of(site: DaemonSite) -> list[int]:
    """Live processes whose command line names the site (the daemon, or a start left behind)."""
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [pid for pid in pids if str(site.root) in cmdline(pid) and alive(pid)]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_record(site: DaemonSite, pid: int, port: int) -> None:
    record = DaemonRecord(pid=pid, host=this_host(), port=port, started_at=time.time() - 100)
    (site.root / "daemon.json").write_bytes(msgspec.json.encode(record))


# ----- start -------------------------------------------------------------------------------


def test_start_prints_pid_and_address_and_records_them(site: DaemonSite) -> None:
    proc = site.start()
    pid, host, port = started_line(proc.stdout)
    assert proc.stdout.endswith(f"log: {site.root / 'log' / 'daemon.log'}\n")
    assert host == this_host()
    record = site.record()
    assert record is not None
    assert (record.pid, record.host, record.port) == (pid, host, port)
    assert alive(pid)
    assert "daemon serving site daemontest on" in (site.root / "log" / "daemon.log").read_text()
    status = site.status()
    assert (status["pid"], status["host"], status["port"]) == (pid, host, port)


def test_a_second_start_refuses_and_names_the_address_and_the_stop_command(daemon: DaemonSite) -> None:
    record = daemon.record()
    assert record is not None
    proc = daemon.balsamd("start", code=1)
    assert proc.stdout == ""
    assert proc.stderr == (
        f"Error: a balsamd daemon already serves this site on {record.host}:{record.port} "
        f"(pid {record.pid}); stop it with `balsamd stop`\n"
    )
    assert daemon.record() == record
    assert daemon.status()["pid"] == record.pid
    assert processes_of(daemon) == [record.pid]


def test_a_stale_record_of_a_dead_daemon_does_not_block_start(site: DaemonSite) -> None:
    stale = dead_pid()
    write_record(site, stale, free_port())
    proc = site.start()
    pid, _, _ = started_line(proc.stdout)
    assert pid != stale
    assert site.record() is not None and site.record().pid == pid
    assert site.status()["pid"] == pid


def test_a_stale_record_naming_a_recycled_pid_does_not_block_start(site: DaemonSite) -> None:
    # the recorded pid now belongs to a process that is no daemon: start goes ahead, and the
    # process is left alone
    other = subprocess.Popen(["sleep", "60"])
    try:
        write_record(site, other.pid, free_port())
        pid, _, _ = started_line(site.start().stdout)
        assert pid != other.pid
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_stop_of_a_stale_record_removes_it(site: DaemonSite) -> None:
    stale = dead_pid()
    write_record(site, stale, free_port())
    proc = site.stop()
    assert proc.stdout == f"the daemon (pid {stale}) was not running; removed its stale record\n"
    assert site.record() is None


def test_start_with_broken_settings_fails_fast_and_leaves_no_daemon(site: DaemonSite) -> None:
    settings = site.root / "settings.toml"
    lines = settings.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("processing_period_sec ="))
    lines[line - 1] = 'processing_period_sec = "often"'
    settings.write_text("\n".join(lines) + "\n")
    proc = site.start(code=1)
    # refused before forking: a forked daemon opens its log before anything else
    assert not (site.root / "log" / "daemon.log").exists()
    assert proc.stdout == ""
    assert proc.stderr == (
        f"Error: {settings}:{line}: key daemon.processing_period_sec: expected a number, got a string; give a "
        "number, or remove the line to use the default (processing_period_sec = 1.0)\n"
    )
    assert site.record() is None
    assert processes_of(site) == []
    site.status(code=1)


def test_a_daemon_that_cannot_listen_reports_why_and_leaves_nothing(site: DaemonSite) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site.configure({"daemon.port": port})
        proc = site.start(code=1)
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: the daemon did not start: ")
    assert "address already in use" in proc.stderr.lower()
    assert f"(see {site.root / 'log' / 'daemon.log'})" in proc.stderr
    assert site.record() is None
    wait_until(lambda: processes_of(site) == [], "the failed daemon is gone")
    # nothing was left holding the site: a start on a free port now works
    site.configure({"daemon.port": 0})
    started_line(site.start().stdout)


# ----- stop and status ---------------------------------------------------------------------


def test_stop_ends_the_daemon_and_status_then_exits_1(daemon: DaemonSite) -> None:
    pid = daemon.daemon_pid()
    assert daemon.stop().stdout == f"stopped the daemon (pid {pid})\n"
    assert not alive(pid)
    assert daemon.record() is None
    proc = daemon.balsamd("status", code=1)
    assert (proc.stdout, proc.stderr) == ("", NOT_RUNNING)
    proc = daemon.balsamd("status", "--json", code=1)
    assert json.loads(proc.stdout) == {"running": False, "error": NOT_RUNNING[len("Error: ") : -1]}
    proc = daemon.balsamd("stop", code=1)
    assert proc.stderr == (f"Error: no daemon is recorded for this site ({daemon.root / 'daemon.json'} is absent)\n")
    # the lock died with it: the site starts again
    started_line(daemon.start().stdout)


def test_a_foreground_daemon_stops_on_ctrl_c(site: DaemonSite) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "balsamd", "--site", str(site.root), "start", "--foreground"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
    )  # fmt: skip
    try:
        record = wait_until(site.record, "the foreground daemon records itself")
        assert record.pid == proc.pid
        assert site.status()["healthy"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"daemon stopped" in err
    assert site.record() is None


def test_status_exits_0_when_healthy_and_shows_jobs_and_sessions(daemon: DaemonSite) -> None:
    daemon.command_app("Hello", "echo hello")
    daemon.create("Hello", 3)
    with daemon.remote() as remote:
        session = remote.open_session(label="status test")
        text = daemon.balsamd("status").stdout
        status = daemon.status()
    record = daemon.record()
    assert record is not None
    assert re.match(
        rf"daemon of site daemontest: pid {record.pid} on {record.host}:{record.port}, up \d+ s, healthy\n",
        text,
    ), text
    assert re.search(r"(?m)^processing +ok +[\d.]+ s ago +0 +-$", text), text
    assert re.search(r"(?m)^session-reaper +ok ", text), text
    assert "jobs: PREPROCESSED=3\n" in text
    assert f"open sessions: 1\n  {session.id} status test on " in text

    assert status["running"] is True
    assert status["healthy"] is True
    assert (status["site"], status["pid"], status["port"]) == ("daemontest", record.pid, record.port)
    assert {"host", "started_at", "services", "job_counts", "sessions", "batch_jobs", "sync"} <= set(status)
    services = {s["name"]: s for s in status["services"]}
    assert {"processing", "session-reaper"} <= set(services)
    for service in services.values():
        assert {"name", "healthy", "last_tick", "last_error", "last_error_at", "restarts", "detail"} <= set(service)
        assert service["healthy"] is True
    assert services["processing"]["restarts"] == 0
    assert status["job_counts"] == {"PREPROCESSED": 3}
    assert [s["id"] for s in status["sessions"]] == [session.id]
    assert status["sessions"][0]["label"] == "status test"


def test_status_exits_3_while_a_service_fails_and_0_once_it_recovers(daemon: DaemonSite) -> None:
    # A damaged store: the table of job dependencies is gone, so every step of the processing
    # service fails (it releases jobs whose parents finished); the other services go on.
    db = apsw.Connection(str(daemon.root / "balsamd.db"))
    db.set_busy_timeout(10_000)
    try:
        db.execute("ALTER TABLE job_parents RENAME TO job_parents_lost")
        failing = wait_until(
            lambda: (p := daemon.balsamd("status", "--json", code=None)).returncode == 3 and json.loads(p.stdout),
            "status reports the failing service",
        )
        text = daemon.balsamd("status", code=3).stdout
    finally:
        db.execute("ALTER TABLE job_parents_lost RENAME TO job_parents")
        db.close()
    assert failing["running"] is True
    assert failing["healthy"] is False
    services = {s["name"]: s for s in failing["services"]}
    processing = services["processing"]
    assert processing["healthy"] is False
    assert processing["restarts"] >= 1
    assert "no such table: job_parents" in processing["last_error"]
    assert processing["last_error_at"] is not None
    assert services["session-reaper"]["healthy"] is True
    assert ", UNHEALTHY\n" in text.splitlines(keepends=True)[0]
    assert re.search(r"(?m)^processing +FAILING .*no such table: job_parents", text), text
    assert "service processing failed" in (daemon.root / "log" / "daemon.log").read_text()
    # repaired: the next attempt succeeds and status is 0 again
    wait_until(lambda: daemon.balsamd("status", code=None).returncode == 0, "the service recovers")
    assert daemon.daemon_pid() == failing["pid"]


def test_stop_waits_for_the_daemon_to_exit_and_frees_its_port(daemon: DaemonSite) -> None:
    record = daemon.record()
    assert record is not None
    daemon.stop()
    assert not alive(record.pid)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", record.port)) != 0


def test_stop_from_another_host_asks_the_daemon_over_its_rpc(daemon: DaemonSite) -> None:
    # daemon.json names a host other than this one (127.0.0.1 reaches the daemon all the same):
    # stop cannot signal the pid, it asks over the RPC
    record = daemon.record()
    assert record is not None
    elsewhere = msgspec.structs.replace(record, host="127.0.0.1")
    (daemon.root / "daemon.json").write_bytes(msgspec.json.encode(elsewhere))
    assert daemon.status()["pid"] == record.pid
    proc = daemon.stop()
    assert proc.stdout == f"asked the daemon on 127.0.0.1 (pid {record.pid}) to stop\n"
    wait_until(lambda: not alive(record.pid), "the daemon stops")
    # its record names another host, so it was left for that host; it no longer answers
    proc = daemon.balsamd("status", code=1)
    assert proc.stderr.startswith(
        f"Error: the daemon recorded on 127.0.0.1:{record.port} (pid {record.pid}) does not answer: "
    )
    assert proc.stderr.endswith("; start it with `balsamd start`\n")
    started_line(daemon.start().stdout)


def lookalike() -> subprocess.Popen[bytes]:
    """A live process whose command line says balsamd, as a launcher or CLI command that got
    the pid of a crashed daemon would."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "balsamd", "launcher"])


def test_stop_never_signals_a_process_that_only_reused_the_daemons_pid(site: DaemonSite) -> None:
    other = lookalike()
    try:
        write_record(site, other.pid, free_port())
        proc = site.stop()
        assert proc.stdout == f"the daemon (pid {other.pid}) was not running; removed its stale record\n"
        assert other.poll() is None
        assert site.record() is None
    finally:
        other.kill()
        other.wait()


def test_start_is_not_blocked_by_a_process_that_only_reused_the_daemons_pid(site: DaemonSite) -> None:
    other = lookalike()
    try:
        write_record(site, other.pid, free_port())
        pid, _, _ = started_line(site.start().stdout)
        assert pid != other.pid
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
