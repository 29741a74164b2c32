"""Tasks to one host share one ssh login ([transfers] ssh_multiplex), through a socket in a
directory only the site's owner may enter."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.config import TransferSettings
from balsamd.transfers.backends import backend_for
from balsamd.transfers.locations import Location
from balsamd.transfers.rsync import RsyncBackend
from balsamd.transfers.sshmux import MAX_DIR, control_dir
from tests.transfers.conftest import SshHost, keygen
from tests.transfers.contract import Harness, write
from tests.transfers.test_rsync_backend import ssh_options


@pytest.fixture
def short_site() -> Iterator[Path]:
    """A site directory whose path is short enough for a socket beside it."""
    with tempfile.TemporaryDirectory(prefix="mux") as path:
        yield Path(path)


def logins(ssh_host: SshHost) -> int:
    """Logins the private sshd accepted so far (its log lies beside its keys)."""
    return (ssh_host.key.parent / "sshd.log").read_text().count("Accepted publickey")


def stage_in_twice(site: Path, ssh_host: SshHost, multiplex: bool) -> int:
    """Two tasks of one file each through the backend the site's settings give; the logins."""
    base = site / "base"
    write(base / "in.dat", b"data\n")
    location = Location(scheme="rsync", base=str(base), host="127.0.0.1", user=ssh_host.user, port=ssh_host.port)
    settings = TransferSettings(ssh=ssh_options(ssh_host), ssh_multiplex=multiplex)
    before = logins(ssh_host)
    for n in (1, 2):
        harness = Harness(backend=backend_for(location, settings, site), location=location, base=base, root=site)
        task = harness.task("in", harness.item(1, "in.dat", "in.dat", workdir=f"w{n}"), task_id=f"t{n}")
        [result] = harness.run(task).values()
        assert result.ok, result.error
    if multiplex:  # the master connection would stay a minute
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={site}/ssh/cm-%C", "-p", str(ssh_host.port),
                        "-l", ssh_host.user, "127.0.0.1"], capture_output=True)  # fmt: skip
    return logins(ssh_host) - before


def test_two_tasks_to_one_host_log_in_once(short_site: Path, ssh_host: SshHost) -> None:
    assert stage_in_twice(short_site, ssh_host, multiplex=True) == 1


def test_tasks_started_together_log_in_once(short_site: Path, ssh_host: SshHost) -> None:
    """The first opens the shared connection, the others wait for it (each would log in, and
    each ask for a second factor where a host wants one)."""
    base = short_site / "base"
    write(base / "in.dat", b"data\n")
    location = Location(scheme="rsync", base=str(base), host="127.0.0.1", user=ssh_host.user, port=ssh_host.port)
    settings = TransferSettings(ssh=ssh_options(ssh_host), ssh_multiplex=True)
    before = logins(ssh_host)
    results: list[bool] = []

    def stage(n: int) -> None:
        harness = Harness(backend=backend_for(location, settings, short_site), location=location, base=base,
                          root=short_site)  # fmt: skip
        task = harness.task("in", harness.item(1, "in.dat", "in.dat", workdir=f"w{n}"), task_id=f"t{n}")
        results.extend(r.ok for r in harness.run(task).values())

    tasks = [threading.Thread(target=stage, args=(n,)) for n in range(4)]
    for task in tasks:
        task.start()
    for task in tasks:
        task.join()
    subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={short_site}/ssh/cm-%C", "-p", str(ssh_host.port),
                    "-l", ssh_host.user, "127.0.0.1"], capture_output=True)  # fmt: skip

    assert results == [True] * 4
    assert logins(ssh_host) - before == 1


def test_logins_that_waited_for_the_shared_one_ask_ssh_no_more(short_site: Path, ssh_host: SshHost) -> None:
    """The service logs in as it records tasks, and each task then logs in: one that waited
    while the connection was opened starts no ``ssh -O check`` on its way to rsync."""
    calls = short_site / "ssh-calls"
    ssh = short_site / "ssh-logged"
    ssh.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(calls))}\n'
                   'case " $* " in (*" -N "*) sleep 1;; esac\nexec ssh "$@"\n')  # fmt: skip
    ssh.chmod(0o755)
    location = Location(scheme="rsync", base="/", host="127.0.0.1", user=ssh_host.user, port=ssh_host.port)
    settings = TransferSettings(ssh=[str(ssh), *ssh_options(ssh_host)[1:]], ssh_multiplex=True)
    backend = backend_for(location, settings, short_site)
    assert isinstance(backend, RsyncBackend)
    before = logins(ssh_host)

    waiting = [threading.Thread(target=backend.log_in, args=(location, threading.Event())) for _ in range(4)]
    for thread in waiting:
        thread.start()
    for thread in waiting:
        thread.join()
    backend.log_in(location, threading.Event())  # later: it asks whether the connection is still open
    subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={short_site}/ssh/cm-%C", "-p", str(ssh_host.port),
                    "-l", ssh_host.user, "127.0.0.1"], capture_output=True)  # fmt: skip

    asked = calls.read_text().splitlines()
    assert [" -O check " in f" {line} " for line in asked] == [True, False, True]
    assert logins(ssh_host) - before == 1


def test_a_shared_login_the_host_refuses_fails_the_task_with_sshs_message(short_site: Path, ssh_host: SshHost) -> None:
    """The shared connection cannot be opened: the task's own ssh tries and says why."""
    keygen(short_site / "stranger", "a key the host was not given")
    ssh = ssh_options(ssh_host)
    ssh[ssh.index(str(ssh_host.key))] = str(short_site / "stranger")
    base = short_site / "base"
    write(base / "in.dat", b"data\n")
    location = Location(scheme="rsync", base=str(base), host="127.0.0.1", user=ssh_host.user, port=ssh_host.port)
    settings = TransferSettings(ssh=ssh, ssh_multiplex=True)
    harness = Harness(backend=backend_for(location, settings, short_site), location=location, base=base,
                      root=short_site)  # fmt: skip

    [result] = harness.run(harness.task("in", harness.item(1, "in.dat", "in.dat"))).values()

    assert not result.ok
    assert "Permission denied (publickey)." in result.error
    assert not (short_site / "w" / "in.dat").exists()


def test_without_multiplexing_each_task_logs_in(short_site: Path, ssh_host: SshHost) -> None:
    assert stage_in_twice(short_site, ssh_host, multiplex=False) == 2


def test_the_sockets_live_in_the_sites_own_private_directory(short_site: Path) -> None:
    found = control_dir(short_site)
    assert found == str(short_site / "ssh")
    assert os.stat(found).st_mode & 0o777 == 0o700


def test_a_directory_others_may_enter_is_never_used(short_site: Path) -> None:
    (short_site / "ssh").mkdir(mode=0o755)
    (short_site / "ssh").chmod(0o755)
    assert control_dir(short_site) != str(short_site / "ssh")


def test_a_site_path_too_long_for_a_socket_uses_another_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * MAX_DIR)
    deep.mkdir()
    found = control_dir(deep)
    assert found is None or (len(found) <= MAX_DIR and not found.startswith(str(deep)))
