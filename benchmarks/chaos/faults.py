"""Carrying out a round's faults on its live processes: SIGKILL, then a restart where a person
or the system would make one (the daemon with ``balsamd start``, PostgreSQL on its port and
data directory; launchers come back as batch jobs the daemon or the runner submits)."""

from __future__ import annotations

import msgspec

from balsamd.models import JobMode
from benchmarks.bench_sync import PostgresServer, PostgresUnavailable
from benchmarks.chaos import processes
from benchmarks.chaos.central import kill_postmaster
from benchmarks.chaos.cli import CommandFailed
from benchmarks.chaos.schedule import Blast, Fault, FaultKind
from benchmarks.chaos.site import ChaosSite

MODES = {FaultKind.SERIAL: JobMode.SERIAL, FaultKind.MPI: JobMode.MPI}


class Hit(msgspec.Struct, kw_only=True):
    """A fault as it fell: when, and what it killed ("" when nothing of its kind was alive)."""

    fault: Fault
    fired_at: float
    target: str = ""


class Injector:
    def __init__(self, site: ChaosSite, server: PostgresServer) -> None:
        self.site = site
        self.server = server

    def fire(self, fault: Fault, at: float) -> Hit:
        if fault.kind == FaultKind.DAEMON:
            target = self._daemon()
        elif fault.kind == FaultKind.POSTGRES:
            pid = kill_postmaster(self.server)
            target = "" if pid is None else f"postmaster pid {pid}"
        else:
            target = self._launcher(MODES[fault.kind], fault.pick, fault.blast)
        return Hit(fault=fault, fired_at=round(at, 3), target=target)

    def _daemon(self) -> str:
        pid = self.site.daemon_pid()
        if pid is None:
            return ""
        processes.kill(pid)
        processes.wait_gone([pid])
        return f"daemon pid {pid}"

    def _launcher(self, mode: JobMode, pick: int, blast: Blast) -> str:
        launchers = self.site.launchers(mode)
        if not launchers:
            return ""
        victim = launchers[pick % len(launchers)]
        if blast == Blast.LEADER and victim.leader is not None:
            processes.kill(victim.leader)
            processes.wait_gone([victim.leader])
            return f"{mode} launcher pid {victim.leader} of batch job {victim.batch_id}"
        processes.kill_group(victim.group)
        processes.wait_gone([victim.group, *([victim.leader] if victim.leader else [])])
        return f"{mode} batch job {victim.batch_id} (process group {victim.group})"

    def restart(self, kind: FaultKind) -> str:
        """Start the daemon or PostgreSQL again; returns why it did not start ("" when it did)."""
        try:
            if kind == FaultKind.DAEMON:
                if self.site.daemon_pid() is None:
                    self.site.start_daemon()
            else:
                self.server.start()
        except (CommandFailed, PostgresUnavailable, OSError) as exc:
            return str(exc)
        return ""
