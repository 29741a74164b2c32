"""What every run of a chaos job writes from inside itself, and how the checker reads it back.

Each run appends a ``start`` line when it begins and an ``end`` line when its work is done to
``MARKERS/KEY.log`` (one ``write`` of a short line to a file opened with O_APPEND, so lines of
concurrent runs never mix).  For its whole duration it holds a non-blocking exclusive ``flock``
on ``MARKERS/KEY.rRANK.lock``; a run that cannot take it says so in its start line.  The kernel
drops a lock when the last process holding it dies, even of SIGKILL, so a busy lock means
another run of the same job (and rank) was really alive at that moment.

    start RANK HOST PID TIME held|busy
    end RANK HOST PID TIME

The marker files live outside the site's data, at a path that does not depend on the run's
working directory (a short run may start in a scratch directory beside its workdir).
Command and MPI jobs write them from a bash script (``SCRIPT``: one bash process a run, plus
``flock`` and the nap); Python jobs from the function itself (``PYTHON``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

HELD, BUSY = "held", "busy"

# usage: bash marked.sh MARKERS KEY NAP CODE; ranks of an MPI launch read their rank from PMI_RANK
SCRIPT = """\
#!/bin/bash
dir=$1 key=$2 nap=$3 code=$4
rank=${PMI_RANK:-0}
exec 9>>"$dir/$key.r$rank.lock"
if flock -n 9; then lock=held; else lock=busy; fi
read -r host < /proc/sys/kernel/hostname
echo "start $rank $host $$ $EPOCHREALTIME $lock" >> "$dir/$key.log"
if [ "$nap" != 0 ]; then sleep "$nap"; fi
echo "end $rank $host $$ $EPOCHREALTIME" >> "$dir/$key.log"
exit "$code"
"""

# the marker writers of a Python app's module: ``with marked(key): ...`` around its work
PYTHON = """\
import contextlib
import fcntl
import os
import socket
import time


def _mark(key, words):
    fd = os.open(f"{MARKERS}/{key}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, f"{words}\\n".encode())
    finally:
        os.close(fd)


@contextlib.contextmanager
def marked(key):
    lock = os.open(f"{MARKERS}/{key}.r0.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = "held"
        except BlockingIOError:
            held = "busy"
        who = f"0 {socket.gethostname()} {os.getpid()}"
        _mark(key, f"start {who} {time.time():.6f} {held}")
        yield
        _mark(key, f"end {who} {time.time():.6f}")
    finally:
        os.close(lock)
"""


def python_writers(markers: Path) -> str:
    """The marker writers for a Python app's module, writing under ``markers``."""
    return f"MARKERS = {str(markers)!r}\n{PYTHON}"


class Run(msgspec.Struct, kw_only=True):
    """One run of one rank of a job, as its markers tell it."""

    rank: int
    host: str
    pid: int
    started: float
    ended: float | None = None  # None: it died (or is still running)
    exclusive: bool = True  # False: another run of the job held its lock when it started


class Markers(msgspec.Struct, kw_only=True):
    runs: list[Run] = []
    unreadable: list[str] = []  # lines that are not markers: a finding, never a crash


def parse(text: str) -> Markers:
    """The runs in a marker file's text; an end pairs with the latest open start of its
    process (the same rank, host and pid)."""
    out = Markers()
    open_runs: dict[tuple[int, str, int], list[Run]] = {}
    for line in text.splitlines():
        words = line.split()
        try:
            what, rank, host, pid, when = words[0], int(words[1]), words[2], int(words[3]), _time(words[4])
        except (IndexError, ValueError):
            out.unreadable.append(line)
            continue
        if what == "start" and len(words) == 6 and words[5] in (HELD, BUSY):
            run = Run(rank=rank, host=host, pid=pid, started=when, exclusive=words[5] == HELD)
            out.runs.append(run)
            open_runs.setdefault((rank, host, pid), []).append(run)
        elif what == "end" and len(words) == 5 and open_runs.get((rank, host, pid)):
            open_runs[rank, host, pid].pop().ended = when
        else:
            out.unreadable.append(line)
    return out


def _time(word: str) -> float:
    # bash writes $EPOCHREALTIME with the locale's decimal separator
    return float(word.replace(",", "."))


def read(markers: Path, key: str) -> Markers:
    try:
        return parse((markers / f"{key}.log").read_text())
    except FileNotFoundError:
        return Markers()
