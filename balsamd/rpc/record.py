"""``SITE/daemon.json``: where the site's daemon serves, so others can find or refuse it."""

from __future__ import annotations

import hmac
import os
import socket
from pathlib import Path

import msgspec

from balsamd.modes import PRIVATE, write_file
from balsamd.rpc.client import RpcRefused

RECORD_FILE = "daemon.json"


class DaemonRecord(msgspec.Struct, kw_only=True):
    pid: int
    host: str
    port: int
    started_at: float
    version: str = ""
    # the daemon's secret_id(): a client whose secret is not the daemon's is told so before it
    # connects, for over the network it could not tell the daemon from another program
    secret_id: str = ""


def record_path(site_root: Path) -> Path:
    return site_root / RECORD_FILE


def read_record(site_root: Path) -> DaemonRecord | None:
    try:
        return msgspec.json.decode(record_path(site_root).read_bytes(), type=DaemonRecord)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def write_record(site_root: Path, record: DaemonRecord) -> None:
    tmp = record_path(site_root).with_suffix(f".tmp{os.getpid()}")
    write_file(tmp, msgspec.json.encode(record), PRIVATE.file)
    tmp.rename(record_path(site_root))


def remove_record(site_root: Path, pid: int) -> None:
    """Remove the record only if it is still ours (a successor may have replaced it)."""
    current = read_record(site_root)
    if current is not None and current.pid == pid and current.host == this_host():
        record_path(site_root).unlink(missing_ok=True)


def this_host() -> str:
    return socket.gethostname()


def pid_is_daemon(pid: int) -> bool:
    """A live local process that is a balsamd daemon (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"balsamd" in cmdline


def read_secret(site_root: Path) -> str:
    return (site_root / "secret").read_text().strip()


def secret_id(secret: str) -> str:
    """Names a secret without revealing it: an HMAC of a fixed text keyed with it."""
    return hmac.new(secret.encode(), b"balsamd secret id", "sha256").hexdigest()


def check_secret(record: DaemonRecord, secret: str) -> None:
    """Refuse to use ``secret`` with the recorded daemon if it started with another one."""
    if record.secret_id and not hmac.compare_digest(record.secret_id, secret_id(secret)):
        raise RpcRefused(
            "wrong secret: the site's daemon was started with another secret than this one; use the "
            "secret file of this site (if it changed since the daemon started, restart the daemon)"
        )


def connect_host(record: DaemonRecord) -> str:
    """How a client reaches the daemon: loopback on its own host, else the host's name."""
    return "127.0.0.1" if record.host == this_host() else record.host
