"""Removing an app's cleanup_files from a job's workdir: real files, real links, real directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsamd.cleanup import glob_problems, remove_matching


def tree(root: Path, *files: str) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink())


def test_matching_files_are_removed_and_the_others_kept(tmp_path: Path) -> None:
    work = tmp_path / "work"
    tree(work, "a.tmp", "b.tmp", "keep.out", "job.out", ".hidden.tmp", "scratch/x.dat", "scratch/y.log", "deep/s/z.dat")
    done = remove_matching(str(work), ["*.tmp", "scratch/*.dat", "*/*/*.dat"])
    assert sorted(done.removed) == ["a.tmp", "b.tmp", "deep/s/z.dat", "scratch/x.dat"]
    assert done.failed == []
    # a leading dot is matched only by a glob that starts with one, as in the shell
    assert left(work) == [".hidden.tmp", "job.out", "keep.out", "scratch/y.log"]


def test_directories_are_never_removed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    tree(work, "scratch/x.dat")
    done = remove_matching(str(work), ["*"])
    assert done.removed == []
    assert left(work) == ["scratch/x.dat"]


def test_a_link_out_of_the_workdir_is_removed_itself_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    tree(outside, "precious.dat", "inner/precious.dat")
    work = tmp_path / "work"
    tree(work, "mine.dat")
    (work / "link.dat").symlink_to(outside / "precious.dat")
    (work / "linkdir").symlink_to(outside)
    (work / "linkinner").symlink_to(outside / "inner")
    done = remove_matching(str(work), ["*.dat", "linkdir/*", "linkinner/*.dat", "*/*.dat"])
    assert sorted(done.removed) == ["link.dat", "mine.dat"]
    assert left(outside) == ["inner/precious.dat", "precious.dat"]
    assert left(work) == ["linkdir", "linkinner"]


def test_a_workdir_that_is_a_link_has_nothing_removed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    tree(outside, "precious.dat")
    (tmp_path / "work").symlink_to(outside)
    done = remove_matching(str(tmp_path / "work"), ["*.dat"])
    assert done.removed == []
    assert done.failed == [".: a symbolic link or not a directory; nothing removed"]
    assert left(outside) == ["precious.dat"]


def test_globs_that_leave_the_workdir_are_refused_even_when_given(tmp_path: Path) -> None:
    (tmp_path / "precious.dat").write_text("x")
    work = tmp_path / "work"
    tree(work, "a.dat")
    done = remove_matching(str(work), ["../*", f"{tmp_path}/*", "*.dat"])
    assert done.removed == ["a.dat"]
    assert done.failed == ["../*: not a cleanup glob", f"{tmp_path}/*: not a cleanup glob"]
    assert (tmp_path / "precious.dat").exists()


def test_a_missing_workdir_is_nothing_to_do(tmp_path: Path) -> None:
    done = remove_matching(str(tmp_path / "never-made"), ["*"])
    assert (done.removed, done.failed) == ([], [])


@pytest.mark.parametrize("glob", ["*.tmp", "out/*.dat", "[ab]?.log", ".cache/*", "*/*/*"])
def test_globs_inside_the_workdir_are_accepted(glob: str) -> None:
    assert glob_problems(glob) == []


@pytest.mark.parametrize("glob", ["../x", "a/../b", "/etc/*", "**", "a//b", "./a", "a\0b", 3])
def test_globs_that_could_name_anything_else_are_refused(glob: object) -> None:
    assert glob_problems(glob) != []
