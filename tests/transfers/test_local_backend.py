"""The file:// backend: the contract every backend keeps, and what is its own (hard links, and
links under the base directory, which it checks on this host)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from balsamd.transfers import backend
from balsamd.transfers.backend import ItemResult, TransferError
from balsamd.transfers.local import LocalBackend
from balsamd.transfers.locations import Location
from tests.conftest import SmallDisk
from tests.transfers.contract import BackendContract, Harness, make_tree, write


def local_harness(root: Path, method: str = "copy") -> Harness:
    base = root / "base"
    base.mkdir()
    backend = LocalBackend("hardlink" if method == "hardlink" else "copy")
    return Harness(backend=backend, location=Location(scheme="file", base=str(base)), base=base, root=root)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return local_harness(tmp_path)


class TestLocalBackend(BackendContract):
    pass


def test_a_missing_file_is_named_as_the_item_names_it(harness: Harness) -> None:
    results = harness.run(harness.task("in", harness.item(3, "in/3.dat", "3.dat")))

    assert results[3].error == f"No such file or directory: {harness.base}/in/3.dat"


def test_each_item_in_place_is_handed_on_as_moved_while_the_task_goes_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    write(harness.base / "in" / "1.dat", b"one")
    write(harness.base / "in" / "3.dat", b"three!")
    items = [harness.item(i, f"in/{i}.dat", f"{i}.dat") for i in (1, 2, 3)]
    arrived: list[ItemResult] = []

    results = harness.run(harness.task("in", *items), arrived=arrived)

    assert arrived == [ItemResult(item_id=1, ok=True, bytes=3), ItemResult(item_id=3, ok=True, bytes=6)]
    assert not results[2].ok


def test_a_missing_base_directory_is_never_made(harness: Harness) -> None:
    harness.base.rmdir()
    write(harness.root / "w" / "result.dat", b"result")

    with pytest.raises(TransferError, match="is not a directory on this host; create it"):
        harness.run(harness.task("out", harness.item(1, "out/result.dat", "result.dat")))
    assert not harness.base.exists()


def test_hard_links_share_the_inode_both_ways(tmp_path: Path) -> None:
    harness = local_harness(tmp_path, "hardlink")
    source = write(harness.base / "in" / "1.dat", b"one")
    make_tree(harness.base / "in" / "mesh")
    result = write(harness.root / "w" / "result.dat", b"result")

    inward = [harness.item(1, "in/1.dat", "1.dat"), harness.item(2, "in/mesh", "mesh", recursive=True)]

    came = harness.run(harness.task("in", *inward, task_id="in"))
    went = harness.run(harness.task("out", harness.item(3, "out/result.dat", "result.dat"), task_id="out"))

    assert all(r.ok for r in [*came.values(), *went.values()])
    assert (harness.root / "w" / "1.dat").stat().st_ino == source.stat().st_ino
    assert (harness.root / "w" / "mesh" / "sub" / "b.bin").stat().st_ino == (
        harness.base / "in" / "mesh" / "sub" / "b.bin"
    ).stat().st_ino
    assert (harness.base / "out" / "result.dat").stat().st_ino == result.stat().st_ino


def test_hard_links_across_filesystems_are_refused_saying_to_copy(tmp_path: Path, small_disk: SmallDisk) -> None:
    harness = local_harness(tmp_path, "hardlink")
    write(harness.base / "in" / "1.dat", b"one")
    item = harness.item(1, "in/1.dat", "1.dat", workdir=str(small_disk.path / "w"))

    results = harness.run(harness.task("in", item))

    assert not results[1].ok
    assert 'file_method = "copy"' in results[1].error
    assert os.listdir(small_disk.path / "w") == []


def test_a_copy_shares_nothing_with_its_source(harness: Harness) -> None:
    source = write(harness.base / "in" / "1.dat", b"one")

    harness.run(harness.task("in", harness.item(1, "in/1.dat", "1.dat")))
    (harness.root / "w" / "1.dat").write_bytes(b"changed by the run")

    assert source.read_bytes() == b"one"


def test_stage_in_refuses_a_file_under_a_directory_that_leads_out_of_the_base(harness: Harness) -> None:
    write(harness.root / "private" / "id_rsa", b"a private key")
    (harness.base / "in").symlink_to(harness.root / "private")

    results = harness.run(harness.task("in", harness.item(1, "in/id_rsa", "key")))

    assert results[1].error == (
        f"{harness.base}/in/id_rsa leads out of the location's base directory through a symbolic link; "
        "a link out of it is never followed"
    )
    assert not (harness.root / "w" / "key").exists()


def test_stage_out_refuses_to_write_through_a_directory_that_leads_out_of_the_base(harness: Harness) -> None:
    write(harness.root / "w" / "result.dat", b"result")
    (harness.root / "elsewhere").mkdir()
    (harness.base / "out").symlink_to(harness.root / "elsewhere")

    results = harness.run(harness.task("out", harness.item(1, "out/result.dat", "result.dat")))

    assert "leads out of the location's base directory" in results[1].error
    assert list((harness.root / "elsewhere").iterdir()) == []


def test_a_link_that_stays_inside_the_base_is_followed(harness: Harness) -> None:
    write(harness.base / "data" / "v2" / "1.dat", b"version 2")
    (harness.base / "latest").symlink_to("data/v2")

    results = harness.run(harness.task("in", harness.item(1, "latest/1.dat", "1.dat")))

    assert results[1].ok
    assert (harness.root / "w" / "1.dat").read_bytes() == b"version 2"


def test_a_directory_arriving_where_one_is_merges_into_it(harness: Harness) -> None:
    make_tree(harness.base / "out" / "mesh")
    kept = write(harness.base / "out" / "mesh" / "kept.txt", b"from an earlier run")
    write(harness.root / "w" / "mesh" / "a.txt", b"new a", 0o600)

    results = harness.run(harness.task("out", harness.item(1, "out/mesh", "mesh", recursive=True)))

    assert (results[1].ok, results[1].bytes) == (True, 5)
    assert (harness.base / "out" / "mesh" / "a.txt").read_bytes() == b"new a"
    assert kept.read_bytes() == b"from an earlier run"


def test_nothing_is_left_under_a_temporary_name(harness: Harness) -> None:
    make_tree(harness.base / "in" / "mesh")
    (harness.base / "in" / "mesh" / "sub" / "fifo").mkdir()
    os.mkfifo(harness.base / "in" / "mesh" / "sub" / "fifo" / "pipe")
    write(harness.base / "in" / "1.dat", b"one")
    items = [harness.item(1, "in/1.dat", "1.dat"), harness.item(2, "in/mesh", "mesh", recursive=True)]

    results = harness.run(harness.task("in", *items))

    assert (results[1].ok, results[2].ok) == (True, False)
    assert "not a regular file or directory" in results[2].error
    assert sorted(os.listdir(harness.root / "w")) == ["1.dat"]
