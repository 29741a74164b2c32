"""A private sshd on 127.0.0.1: the "remote" host of the transfer tests and benchmarks.

``private_sshd`` starts ``sshd`` as a child process with its own configuration, host key and
free port, accepting only a client key made for the run (no passwords), and yields how to
reach it.  It raises SshdUnavailable, saying why, when sshd, ssh or rsync is missing or sshd
cannot start (scripts/services.sh installs them as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD_START_TIMEOUT = 30.0
# a port picked free may be taken before sshd binds it; another is tried then
SSHD_PORT_ATTEMPTS = 5


class SshdUnavailable(Exception):
    """No private sshd could be started; the message says why."""


@dataclass(frozen=True)
class SshHost:
    """How to reach the private sshd: ``ssh_command`` logs in as ``user`` with ``key`` and
    accepts only the host key in ``known_hosts``; ``rsh`` is the same as one string for
    ``rsync -e``."""

    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    ssh_command: tuple[str, ...]
    pid: int

    @property
    def rsh(self) -> str:
        return shlex.join(self.ssh_command)

    def ssh(self, *remote: str, key: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``remote`` on the host (``key`` instead of the run's client key, if given)."""
        argv = list(self.ssh_command)
        if key is not None:
            argv[argv.index(str(self.key))] = str(key)
        return subprocess.run(
            [*argv, self.host, *remote], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )


def find_sshd() -> Path | None:
    # sshd lives in /usr/sbin, which a user's PATH may lack; sshd re-executes itself, so the
    # path must be absolute
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin")
    return Path(found).resolve() if found else None


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sshd_config(run_dir: Path, port: int) -> str:
    return "\n".join([
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {run_dir / 'host_key'}",
        f"PidFile {run_dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {run_dir / 'authorized_keys'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # PAM would need a service file and, as root, would set up real login sessions
        "UsePAM no",
        # the run's files lie under the world-writable temporary directory, which StrictModes refuses
        "StrictModes no",
        # as root this logs in as root, with the run's key only
        "PermitRootLogin prohibit-password",
        f"AllowUsers {pwd.getpwuid(os.getuid()).pw_name}",
        "LogLevel VERBOSE",
        "",
    ])  # fmt: skip


def wait_for_banner(proc: subprocess.Popen[bytes], port: int) -> bool:
    """True once sshd on ``port`` greets a connection with its banner; False if it exits first
    or does not within ``SSHD_START_TIMEOUT``."""
    deadline = time.monotonic() + SSHD_START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if s.recv(64).startswith(b"SSH-2.0-"):
                return True
        time.sleep(0.1)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def private_sshd(run_dir: Path) -> Iterator[SshHost]:
    """An sshd for as long as the block runs, its keys and configuration in ``run_dir``."""
    sshd = find_sshd()
    missing = [name for name in ("ssh", "ssh-keygen", "rsync") if shutil.which(name) is None]
    if sshd is None:
        missing.insert(0, "sshd")
    if missing:
        raise SshdUnavailable(f"{', '.join(missing)} not found (scripts/services.sh installs them as root)")
    assert sshd is not None
    if os.geteuid() == 0:
        # as root sshd confines its unprivileged half there; the system's service would make it
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    keygen(run_dir / "host_key", "balsamd test host")
    keygen(run_dir / "client_key", "balsamd test client")
    (run_dir / "authorized_keys").write_text((run_dir / "client_key.pub").read_text())
    host_key = (run_dir / "host_key.pub").read_text().split()
    log = run_dir / "sshd.log"

    for _ in range(SSHD_PORT_ATTEMPTS):
        port = free_port()
        (run_dir / "sshd_config").write_text(sshd_config(run_dir, port))
        check = subprocess.run([str(sshd), "-t", "-f", str(run_dir / "sshd_config")], capture_output=True, text=True)
        if check.returncode != 0:
            raise SshdUnavailable(f"sshd -t refused the configuration: {check.stderr.strip()}")
        # -D: stay a child of the test run; -e: log to stderr, kept in the run's directory
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(sshd), "-D", "-e", "-f", str(run_dir / "sshd_config")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        if wait_for_banner(proc, port):
            break
        stop(proc)
        if "Address already in use" not in log.read_text():
            raise SshdUnavailable(f"sshd did not start; its log {log}:\n{log.read_text()[-3000:]}")
    else:
        raise SshdUnavailable(f"sshd found no free port in {SSHD_PORT_ATTEMPTS} attempts; its log {log}")

    user = pwd.getpwuid(os.getuid()).pw_name
    known_hosts = run_dir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    command = (
        "ssh",
        # the user's own ssh configuration, agent and keys are not the test's
        "-F", "none",
        "-p", str(port),
        "-l", user,
        "-i", str(run_dir / "client_key"),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
    )  # fmt: skip
    host = SshHost(
        host="127.0.0.1", port=port, user=user, key=run_dir / "client_key", known_hosts=known_hosts,
        ssh_command=command, pid=proc.pid,
    )  # fmt: skip
    try:
        yield host
    finally:
        stop(proc)
