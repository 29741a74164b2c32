"""Starting, stopping and asking after the daemon, from the command line of any host."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import anyio

from balsamd.config import Settings
from balsamd.daemon.main import AlreadyRunning, Daemon, log_file
from balsamd.diskspace import is_full
from balsamd.logs import FORMAT, SiteLogHandler
from balsamd.modes import Modes, open_file, site_modes
from balsamd.rpc.client import RpcClient, RpcRefused, RpcUnavailable
from balsamd.rpc.protocol import DaemonStatus, ServiceHealth
from balsamd.rpc.record import (
    DaemonRecord,
    check_secret,
    connect_host,
    pid_is_daemon,
    read_record,
    read_secret,
    record_path,
    this_host,
)
from balsamd.site import SiteLayout
from balsamd.store.errors import DiskFull

START_TIMEOUT = 30.0


class NotRunning(Exception):
    """No daemon answers for this site; the message says what was found."""


def client_for(layout: SiteLayout, record: DaemonRecord, timeout: float = 60.0) -> RpcClient:
    """A client of the recorded daemon; RpcRefused if the site's secret is not the daemon's."""
    secret = read_secret(layout.root)
    check_secret(record, secret)
    site = layout.name(layout.load_settings())
    return RpcClient(connect_host(record), record.port, secret, f"cli@{this_host()}", timeout, site=site)


def check_not_running(layout: SiteLayout) -> None:
    """Refuse to start next to a live daemon, wherever it runs; a stale record is ignored."""
    record = read_record(layout.root)
    if record is None:
        return
    where = f"{record.host}:{record.port} (pid {record.pid})"
    try:
        client_for(layout, record, timeout=3.0).call("ping")
    except (RpcUnavailable, RpcRefused):
        pass
    else:
        raise AlreadyRunning(f"a balsamd daemon already serves this site on {where}; stop it with `balsamd stop`")
    if record.host == this_host() and is_site_daemon(layout, record.pid):
        raise AlreadyRunning(
            f"a balsamd daemon process (pid {record.pid}) still runs for this site but does not answer; "
            f"stop it with `balsamd stop` or `kill {record.pid}`"
        )


def is_site_daemon(layout: SiteLayout, pid: int) -> bool:
    """Whether ``pid`` is this site's daemon: a balsamd process while a daemon holds the site's
    lock (after a crash the recorded pid may belong to another process, even a balsamd one)."""
    return pid_is_daemon(pid) and site_locked(layout.root / "daemon.lock") is not False


def site_locked(path: Path) -> bool | None:
    """Whether some process holds a flock on ``path``, from /proc/locks (None: cannot tell)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(len(f) >= 6 and f[1] == "FLOCK" and f[5] == inode for f in map(str.split, lines))


def _configure_logging(layout: SiteLayout, settings: Settings, to_stderr: bool) -> None:
    """The daemon's log, rotated by size; in the background (not ``to_stderr``) the daemon's
    own stdout and stderr follow it, and so what its hook workers print."""
    root = logging.getLogger("balsamd")
    root.setLevel(logging.INFO)
    mode = site_modes(settings.site.group_readable).file
    # no echo of dropped warnings: stderr is the log itself, or shows every record already
    log = SiteLogHandler(log_file(layout), settings.logging, mode, stdio=not to_stderr, echo=False)
    handlers: list[logging.Handler] = [log]
    if to_stderr:
        handlers.append(logging.StreamHandler())
        handlers[-1].setFormatter(logging.Formatter(FORMAT))
    for h in handlers:
        root.addHandler(h)


def run_foreground(layout: SiteLayout, on_ready=None) -> None:
    check_not_running(layout)
    settings = layout.load_settings()
    in_background = on_ready is not None
    _configure_logging(layout, settings, to_stderr=not in_background)
    anyio.run(Daemon(layout, settings, log_file(layout) if in_background else None).run, on_ready)


def start(layout: SiteLayout) -> DaemonRecord:
    """Start the daemon in the background; returns once it serves, or raises why it could not."""
    check_not_running(layout)
    settings = layout.load_settings()  # a broken settings file is reported here, not in a log
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # first child: detach, fork the daemon, leave
        os.close(read_fd)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _daemon_child(layout, site_modes(settings.site.group_readable), write_fd)
    os.close(write_fd)
    os.waitpid(pid, 0)
    message = _read_all(read_fd, START_TIMEOUT)
    if message.startswith("full "):  # its store's disk is full: said as any command says it
        raise DiskFull(message.removeprefix("full "))
    if message.startswith("ok"):
        record = read_record(layout.root)
        if record is not None:
            return record
    raise RuntimeError(
        (message.removeprefix("error ") or "the daemon did not report back in time") + f" (see {log_file(layout)})"
    )


def _daemon_child(layout: SiteLayout, modes: Modes, write_fd: int) -> NoReturn:
    """The daemon process: whatever happens here ends here, told to `start` through the pipe."""
    code = 1

    def ready(_record: DaemonRecord) -> None:
        os.write(write_fd, b"ok\n")
        os.close(write_fd)

    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        log = open_file(log_file(layout), os.O_WRONLY | os.O_APPEND, modes.file)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(layout.root)
        run_foreground(layout, on_ready=ready)
        code = 0
    except BaseException as exc:
        full = _full_path(exc)
        with contextlib.suppress(OSError):
            os.write(write_fd, (f"error {exc}" if full is None else f"full {full}").encode())
        if full is None:  # a full disk is said by `start`; its log could not take a traceback
            logging.getLogger("balsamd.daemon").exception("daemon failed")
    finally:
        with contextlib.suppress(OSError):  # a full disk must not keep this child from exiting
            sys.stdout.flush()
        os._exit(code)


def _full_path(exc: BaseException) -> str | None:
    """What a daemon that failed to start for lack of space could not write, if that is why."""
    if isinstance(exc, DiskFull):
        return exc.path
    if is_full(exc):
        assert isinstance(exc, OSError)
        return str(exc.filename or ".")
    return None


def _read_all(fd: int, timeout: float) -> str:
    import select

    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk or chunk.endswith(b"\n"):
            chunks.append(chunk)
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace").strip()


def stop(layout: SiteLayout, timeout: float = 60.0) -> str:
    record = read_record(layout.root)
    if record is None:
        raise NotRunning(f"no daemon is recorded for this site ({record_path(layout.root)} is absent)")
    if record.host == this_host():
        if not is_site_daemon(layout, record.pid):
            record_path(layout.root).unlink(missing_ok=True)
            return f"the daemon (pid {record.pid}) was not running; removed its stale record"
        os.kill(record.pid, signal.SIGTERM)
        if not _wait_gone(record.pid, timeout):
            raise RuntimeError(
                f"the daemon (pid {record.pid}) did not stop within {timeout:g} s; see {log_file(layout)}"
            )
        return f"stopped the daemon (pid {record.pid})"
    try:
        client_for(layout, record).call("shutdown")
    except RpcUnavailable as exc:
        raise NotRunning(f"the daemon recorded on {record.host}:{record.port} does not answer: {exc}") from None
    return f"asked the daemon on {record.host} (pid {record.pid}) to stop"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def status(layout: SiteLayout) -> DaemonStatus:
    return _ask(layout, "status", 10.0)


def services(layout: SiteLayout, timeout: float = 10.0) -> list[ServiceHealth]:
    """The daemon's services and their health, as ``status`` has them, without its counts."""
    return _ask(layout, "services", timeout)


def _ask(layout: SiteLayout, method: str, timeout: float) -> Any:
    record = read_record(layout.root)
    if record is None:
        raise NotRunning("the daemon is not running (no daemon.json in the site); start it with `balsamd start`")
    try:
        client = client_for(layout, record, timeout=timeout)
        try:
            return client.call(method)
        finally:
            client.close()
    except RpcUnavailable as exc:
        raise NotRunning(
            f"the daemon recorded on {record.host}:{record.port} (pid {record.pid}) does not answer: {exc}; "
            "start it with `balsamd start`"
        ) from None
