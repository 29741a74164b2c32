"""The files an rsync bringing a task's items has finished, read from its output as it runs.

rsync's receiver takes the files one after another and names each (``--out-format``, here
``ARRIVED`` and the path below the destination) before or right after writing its data, but
before it sets the file's times and mode through its path.  A file is therefore finished once
the next one is named, or rsync has ended: its directory may then be moved while rsync goes on.
A file that fails rsync's checksum is written again at the end, with a warning that names it:
the stage-in fails such an item (its next try places it again).
"""

from __future__ import annotations

import os

from balsamd.transfers.rsync_messages import unescape

ARRIVED = "balsamd-arrived "  # no message of rsync's starts so
OUT_FORMAT = f"--out-format={ARRIVED}%n"
_PREFIX = ARRIVED.encode()


class Arrivals:
    """Reads the file rsync's output goes to while rsync appends to it."""

    def __init__(self, output: str) -> None:
        self._output = output
        self._fd: int | None = None
        self._partial = b""  # a line not ended yet
        self._last: str | None = None  # named, maybe not finished

    def finished(self) -> list[str]:
        """The paths finished since the last call."""
        if self._fd is None:
            self._fd = os.open(self._output, os.O_RDONLY)
        chunks = [self._partial]
        while chunk := os.read(self._fd, 1 << 16):
            chunks.append(chunk)
        lines = b"".join(chunks).split(b"\n")
        self._partial = lines.pop()
        named = [unescape(line[len(_PREFIX) :]).decode("utf-8", "surrogateescape") for line in lines
                 if line.startswith(_PREFIX)]  # fmt: skip
        if not named:
            return []
        done = named[:-1] if self._last is None else [self._last, *named[:-1]]
        self._last = named[-1]
        return done

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
