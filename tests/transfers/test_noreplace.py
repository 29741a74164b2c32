"""Renaming to a name only when nothing is there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.transfers import noreplace
from balsamd.transfers.noreplace import rename_new


@pytest.fixture(params=["kernel", "two calls"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each answer holds whether the kernel asks both at once or the two calls are made."""
    if request.param == "two calls":
        monkeypatch.setattr(noreplace, "_call", None)
    yield request.param


def made(path: Path, text: str = "") -> Path:
    path.mkdir(parents=True)
    if text:
        (path / "f").write_text(text)
    return path


def test_a_directory_goes_to_a_free_name(tmp_path: Path, way: str) -> None:
    source = made(tmp_path / "staged", "data")

    assert rename_new(str(source), str(tmp_path / "w"))

    assert (tmp_path / "w" / "f").read_text() == "data"
    assert not source.exists()


def test_an_empty_directory_there_is_never_replaced(tmp_path: Path, way: str) -> None:
    source = made(tmp_path / "staged", "data")
    there = made(tmp_path / "w")
    there.chmod(0o750)

    assert not rename_new(str(source), str(there))

    assert os.listdir(there) == []
    assert there.stat().st_mode & 0o777 == 0o750
    assert (source / "f").read_text() == "data"


def test_a_link_to_nothing_counts_as_something_there(tmp_path: Path, way: str) -> None:
    source = made(tmp_path / "staged", "data")
    (tmp_path / "w").symlink_to(tmp_path / "nowhere")

    assert not rename_new(str(source), str(tmp_path / "w"))

    assert (tmp_path / "w").is_symlink()
    assert not (tmp_path / "nowhere").exists()


def test_a_missing_directory_on_either_side_raises_as_rename_does(tmp_path: Path, way: str) -> None:
    source = made(tmp_path / "staged")

    with pytest.raises(FileNotFoundError):
        rename_new(str(source), str(tmp_path / "new" / "w"))
    with pytest.raises(FileNotFoundError):
        rename_new(str(tmp_path / "gone"), str(tmp_path / "w"))
    assert source.is_dir()


def test_other_errors_name_both_paths(tmp_path: Path, way: str) -> None:
    source = made(tmp_path / "staged")
    (tmp_path / "file").write_text("")

    with pytest.raises(NotADirectoryError) as raised:
        rename_new(str(source), str(tmp_path / "file" / "w"))

    assert raised.value.filename == str(source)
    assert raised.value.filename2 == str(tmp_path / "file" / "w")
