"""Moving what a run left into its workdir, for lazy command runs and warm workers alike: what
cannot move is put aside and said, never raised."""

from __future__ import annotations

from pathlib import Path

from balsamd.launch import workdirs


def test_what_cannot_move_into_the_workdir_is_put_aside_and_said(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "result").write_text("r")
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    (workdir / "result").mkdir()  # a directory where the run's file would go
    (workdir / "result" / "keep").write_text("k")
    problems = workdirs.move_scratch(str(scratch), str(workdir), str(tmp_path / "aside"))
    assert len(problems) == 2
    assert "could not move result" in problems[0]
    assert (tmp_path / "aside" / "result").read_text() == "r"
    assert not scratch.exists()


def test_output_that_cannot_be_kept_is_said_and_left_in_the_spill_file(tmp_path: Path) -> None:
    spill = tmp_path / "spill.out"
    spill.write_text("the run's output\n")
    (tmp_path / "workdir").write_text("a file where the workdir belongs")
    problem = workdirs.keep_output(str(spill), str(tmp_path / "workdir" / "job.out"))
    assert problem is not None
    assert problem.startswith(f"could not keep the output of a run as {tmp_path / 'workdir' / 'job.out'}: ")
    assert spill.read_text() == "the run's output\n"
