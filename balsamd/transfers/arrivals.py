"""The files an rsync bringing a task's items has finished, read from its output as it runs.

rsync's receiver takes the files one after another and names each (``--out-format``, here
``ARRIVED`` and the path below the destination) before or right after writing its data, but
before it sets the file's times and mode through its path.  A file is therefore finished once
the next one is named, or rsync has ended: its directory may then be moved while rsync goes on.
What the receiver says of a file (it could not set its times; its checksum failed, and it is
written again at the end) comes before it names the next one (``--out-format`` implies
``--info=name``, which prints the checksum's warning): a file finished with no line of
rsync's between its name and the next is ``quiet``, and done for good.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from balsamd.transfers.rsync_messages import unescape

ARRIVED = "balsamd-arrived "  # no message of rsync's starts so
OUT_FORMAT = f"--out-format={ARRIVED}%l %n"  # its size as listed, its name
_PREFIX = ARRIVED.encode()


class Finished(NamedTuple):
    path: str  # below the destination; a directory's ends with "/"
    size: int | None  # None when rsync wrote it otherwise than in digits
    quiet: bool  # rsync said nothing between its name and the next


class Arrivals:
    """Reads the file rsync's output goes to while rsync appends to it."""

    def __init__(self, output: str) -> None:
        self._output = output
        self._fd: int | None = None
        self._partial = b""  # a line not ended yet
        self._last: tuple[str, int | None] | None = None  # named, maybe not finished
        self._said = False  # a line of rsync's since it was named

    def finished(self, ended: bool = False) -> list[Finished]:
        """The files finished since the last call; ``ended``: rsync has ended, and ended well,
        so the last file it named is finished too."""
        if self._fd is None:
            self._fd = os.open(self._output, os.O_RDONLY)
        chunks = [self._partial]
        while chunk := os.read(self._fd, 1 << 16):
            chunks.append(chunk)
        lines = b"".join(chunks).split(b"\n")
        self._partial = lines.pop()
        done = []
        for line in lines:
            if not line.startswith(_PREFIX):
                self._said |= bool(line)
                continue
            if self._last is not None:
                done.append(Finished(*self._last, quiet=not self._said))
            size, _, name = line[len(_PREFIX) :].partition(b" ")
            path = unescape(name).decode("utf-8", "surrogateescape")
            self._last, self._said = (path, int(size) if size.isdigit() else None), False
        if ended and self._last is not None:
            done.append(Finished(*self._last, quiet=not (self._said or self._partial)))
            self._last = None
        return done

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
