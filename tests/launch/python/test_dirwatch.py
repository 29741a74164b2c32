"""EntryWatch: whether a directory may have gained entries, asked after every short run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.launch.python import dirwatch
from balsamd.launch.python.dirwatch import EntryWatch


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[EntryWatch]:
    (tmp_path / "scratch").mkdir()
    w = EntryWatch(str(tmp_path / "scratch"))
    assert w.exact, "inotify should be available on Linux"
    yield w
    w.close()


def test_a_directory_nobody_touched_has_not_changed(watch: EntryWatch) -> None:
    assert watch.maybe_changed() is False
    assert watch.maybe_changed() is False


@pytest.mark.parametrize("make", ["file", "directory", "symlink", "moved in"])
def test_any_new_entry_is_noticed_once(watch: EntryWatch, tmp_path: Path, make: str) -> None:
    entry = tmp_path / "scratch" / "new"
    if make == "file":
        entry.write_text("x")
    elif make == "directory":
        entry.mkdir()
    elif make == "symlink":
        entry.symlink_to("/")
    else:
        (tmp_path / "elsewhere").write_text("x")
        os.rename(tmp_path / "elsewhere", entry)
    assert watch.maybe_changed() is True
    assert watch.maybe_changed() is False


def test_writing_to_an_entry_inside_a_subdirectory_is_not_a_new_entry(watch: EntryWatch, tmp_path: Path) -> None:
    (tmp_path / "scratch" / "sub").mkdir()
    assert watch.maybe_changed() is True
    (tmp_path / "scratch" / "sub" / "deep").write_text("x")
    assert watch.maybe_changed() is False  # the caller lists the top level only, which already showed "sub"


def test_after_the_directory_is_replaced_the_new_one_is_watched(watch: EntryWatch, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    (scratch / "left").write_text("x")
    os.rename(scratch, tmp_path / "moved-away")
    scratch.mkdir()
    watch.watch()
    assert watch.maybe_changed() is False  # what happened before watch() is forgotten
    (tmp_path / "moved-away" / "more").write_text("x")
    assert watch.maybe_changed() is False  # the old directory is no longer watched
    (scratch / "fresh").write_text("x")
    assert watch.maybe_changed() is True


def test_without_inotify_every_answer_is_maybe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dirwatch, "_libc", lambda: None)
    w = EntryWatch(str(tmp_path))
    assert not w.exact
    assert w.maybe_changed() is True
    w.watch()
    assert w.maybe_changed() is True
    w.close()


def test_a_directory_that_cannot_be_watched_gets_maybe(tmp_path: Path) -> None:
    w = EntryWatch(str(tmp_path / "missing"))
    assert not w.exact
    assert w.maybe_changed() is True
    w.close()
