"""Reading which files an rsync has finished, and their sizes, from its output while it writes it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from balsamd.transfers.arrivals import ARRIVED, Arrivals, Finished


@contextlib.contextmanager
def written(tmp_path: Path, text: str) -> Iterator[Arrivals]:
    """Arrivals read from an output rsync has written ``text`` to."""
    output = tmp_path / "rsync.out"
    output.write_bytes(text.encode())
    arrivals = Arrivals(str(output))
    try:
        yield arrivals
    finally:
        arrivals.close()


def test_a_named_file_is_finished_once_the_next_is_named(tmp_path: Path) -> None:
    output = tmp_path / "rsync.out"
    output.write_bytes(b"")
    arrivals = Arrivals(str(output))
    try:
        with output.open("ab", buffering=0) as rsync:
            assert arrivals.finished() == []
            rsync.write(f"{ARRIVED}11 in/1/in.dat\n".encode())
            assert arrivals.finished() == []  # being written, perhaps
            rsync.write(
                f'{ARRIVED}22 in/2/in.dat\nrsync: [sender] link_stat "/b/in/3/in.dat" failed\n{ARRIVED}4 in/'.encode()
            )
            assert arrivals.finished() == [Finished("in/1/in.dat", 11, quiet=True)]
            rsync.write(b"4/in.dat\n")
            assert arrivals.finished() == [Finished("in/2/in.dat", 22, quiet=False)]
    finally:
        arrivals.close()


def test_a_name_rsync_escaped_is_read_back(tmp_path: Path) -> None:
    output = f"{ARRIVED}5 in/caf\\#303\\#251\\#012/a b\n{ARRIVED}1.2K in/b\n{ARRIVED}0 in/c\n"
    with written(tmp_path, output) as arrivals:
        # a size written otherwise than in digits (rsync's --human-readable) is not taken
        assert arrivals.finished() == [Finished("in/café\n/a b", 5, quiet=True), Finished("in/b", None, quiet=True)]


def test_a_file_rsync_said_something_of_after_naming_it_is_not_quiet(tmp_path: Path) -> None:
    """What rsync's receiver says of a file comes after its name and before the next name; a line
    before a file's name is not about it."""
    output = (
        f'rsync: [sender] link_stat "/b/in/0.dat" failed\n{ARRIVED}1 in/1.dat\n'
        f"WARNING: in/1.dat failed verification -- update retained (will try again).\n"
        f"{ARRIVED}2 in/2.dat\n{ARRIVED}3 in/3.dat\n{ARRIVED}1 in/1.dat\n"
    )
    with written(tmp_path, output) as arrivals:
        assert arrivals.finished() == [
            Finished("in/1.dat", 1, quiet=False), Finished("in/2.dat", 2, quiet=True),
            Finished("in/3.dat", 3, quiet=True),
        ]  # fmt: skip


def test_once_rsync_ended_well_the_last_file_it_named_is_finished_too(tmp_path: Path) -> None:
    with written(tmp_path, f"{ARRIVED}1 in/1.dat\n{ARRIVED}2 in/2.dat\n") as arrivals:
        assert arrivals.finished() == [Finished("in/1.dat", 1, quiet=True)]
        assert arrivals.finished(ended=True) == [Finished("in/2.dat", 2, quiet=True)]
        assert arrivals.finished(ended=True) == []


def test_the_last_file_is_not_quiet_when_rsync_said_something_after_naming_it(tmp_path: Path) -> None:
    with written(tmp_path, f"{ARRIVED}1 in/1.dat\nWARNING: in/1.dat failed verification\n") as arrivals:
        assert arrivals.finished(ended=True) == [Finished("in/1.dat", 1, quiet=False)]
