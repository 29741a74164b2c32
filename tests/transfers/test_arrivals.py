"""Reading which files an rsync has finished from its output while it writes it."""

from __future__ import annotations

from pathlib import Path

from balsamd.transfers.arrivals import ARRIVED, Arrivals


def test_a_named_file_is_finished_once_the_next_is_named(tmp_path: Path) -> None:
    output = tmp_path / "rsync.out"
    output.write_bytes(b"")
    arrivals = Arrivals(str(output))
    try:
        with output.open("ab", buffering=0) as rsync:
            assert arrivals.finished() == []
            rsync.write(f"{ARRIVED}in/1/in.dat\n".encode())
            assert arrivals.finished() == []  # being written, perhaps
            rsync.write(
                f'{ARRIVED}in/2/in.dat\nrsync: [sender] link_stat "/b/in/3/in.dat" failed\n{ARRIVED}in/'.encode()
            )
            assert arrivals.finished() == ["in/1/in.dat"]
            rsync.write(b"4/in.dat\n")
            assert arrivals.finished() == ["in/2/in.dat"]
    finally:
        arrivals.close()


def test_a_name_rsync_escaped_is_read_back(tmp_path: Path) -> None:
    output = tmp_path / "rsync.out"
    output.write_bytes(f"{ARRIVED}in/caf\\#303\\#251\\#012/a\n{ARRIVED}in/b\n".encode())
    arrivals = Arrivals(str(output))
    try:
        assert arrivals.finished() == ["in/café\n/a"]
    finally:
        arrivals.close()
