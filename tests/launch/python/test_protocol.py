"""What a launcher and its warm workers say: whole frames however the bytes arrive, and reports
that name each run once."""

from __future__ import annotations

from balsamd.launch.python.protocol import (
    Done,
    Drop,
    FrameBuffer,
    PyTask,
    Started,
    Tasks,
    decode_commands,
    decode_reports,
    frame,
    without_starts_of_ended,
)
from balsamd.models import Job


def task(job_id: str) -> PyTask:
    job = Job(id=job_id, app="A", workdir=f"w/{job_id}")
    return PyTask(job=job, source="/s/apps/a.py", class_name="A", cwd=f"/s/data/w/{job_id}", output="o", env={})


def test_frames_come_out_whole_whatever_the_receive_sizes() -> None:
    stream = frame(Tasks([task("a"), task("b")])) + frame(Drop()) + frame(Tasks([task("c")]))
    for size in (1, 3, 7, len(stream)):
        buffer = FrameBuffer()
        got = []
        for at in range(0, len(stream), size):
            buffer.feed(stream[at : at + size])
            got.extend(decode_commands(raw) for raw in buffer.frames())
        assert got == [Tasks([task("a"), task("b")]), Drop(), Tasks([task("c")])]


def test_a_partial_frame_waits_for_the_rest() -> None:
    whole = frame([Started("a", 1.0), Done("a", 2.0, 1.0, True, b"r")])
    buffer = FrameBuffer()
    buffer.feed(whole[:-1])
    assert buffer.frames() == []
    buffer.feed(whole[-1:])
    [raw] = buffer.frames()
    assert decode_reports(raw) == [Started("a", 1.0), Done("a", 2.0, 1.0, True, b"r")]


def test_a_task_is_eager_about_files_unless_told_otherwise() -> None:
    assert task("a").lazy is False


def test_a_run_that_ended_in_the_same_batch_is_reported_by_its_end_alone() -> None:
    batch = [Started("a", 1.0), Done("a", 1.5, 0.5, True, b""), Started("b", 1.5)]
    assert without_starts_of_ended(batch) == [Done("a", 1.5, 0.5, True, b""), Started("b", 1.5)]
    assert without_starts_of_ended([Started("b", 1.5)]) == [Started("b", 1.5)]
