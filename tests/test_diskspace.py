"""Telling a full disk, saying where it is, and when to say it again."""

from __future__ import annotations

import errno

from balsamd.diskspace import FullWatch, Notice, Say, Space, is_full, size_text, space_of
from tests.conftest import SmallDisk


def test_no_space_and_a_used_up_quota_are_a_full_disk_and_nothing_else_is() -> None:
    assert is_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_full(ValueError("no space"))


def test_sizes_for_people() -> None:
    assert [size_text(n) for n in (0, 1023, 4096, 1536 * 1024, 3 << 30)] == [
        "0 B", "1023 B", "4.0 KiB", "1.5 MiB", "3.0 GiB",
    ]  # fmt: skip


def test_the_space_of_a_path_is_its_filesystems_even_before_the_path_exists(small_disk: SmallDisk) -> None:
    space = space_of(small_disk.path / "not" / "made" / "yet")
    assert space == Space(str(small_disk.path), 16 << 20, 16 << 20)
    assert str(space) == f"filesystem {small_disk.path}: 16.0 MiB free of 16.0 MiB"
    small_disk.fill()
    space = space_of(small_disk.path)
    assert space is not None and space.free == 0


def test_a_full_disk_is_told_at_once_then_once_a_minute_then_when_it_is_over() -> None:
    watch = FullWatch(every_sec=60.0)
    assert watch.succeeded(5.0) is None  # nothing to tell before it was full
    assert watch.failed(10.0) == Say(Notice.FULL, since=10.0, held=0)
    assert [watch.failed(10.0 + t) for t in range(1, 60)] == [None] * 59
    assert watch.failed(70.0) == Say(Notice.STILL_FULL, since=10.0, held=59)
    assert watch.failed(71.0) is None
    assert watch.failures == 62
    assert watch.succeeded(80.0) == Say(Notice.SPACE_AGAIN, since=10.0, held=1)
    assert watch.succeeded(81.0) is None
    assert not watch.full


def test_a_flickering_disk_costs_at_most_two_lines_a_minute() -> None:
    watch = FullWatch(every_sec=60.0)
    said = [watch.failed(0.0), watch.succeeded(1.0)]
    for t in range(2, 60, 2):
        said += [watch.failed(float(t)), watch.succeeded(t + 1.0)]
    assert [s.notice for s in said if s is not None] == [Notice.FULL, Notice.SPACE_AGAIN]
    assert watch.failed(60.0) == Say(Notice.FULL, since=60.0, held=29)
