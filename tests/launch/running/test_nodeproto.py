"""The line protocol between a leader and its node workers: whole messages, one per line."""

from __future__ import annotations

import os

from balsamd.launch.running import nodeproto as nw
from balsamd.models import App, Job


def test_messages_survive_the_line_protocol():
    job = Job(id="J1", app="a", workdir="w", parameters={"x": [1, 2]})
    start = nw.StartRun(
        job=job, app=App(name="a"), hosts=["h"], gpu_ids={"h": [0]}, cpus=1.0, occupancy=0.5
    )  # fmt: skip
    assert nw.command_from_line(nw.to_line(start)) == start
    done = nw.RunFinished("J1", 3, "tail", b"\x00\xff", False)
    assert nw.report_from_line(nw.to_line(done)) == done
    assert nw.to_line(start).count(b"\n") == 1


def test_line_reader_joins_partial_lines():
    r, w = os.pipe()
    reader = nw.LineReader(r)
    os.write(w, b"abc")
    assert reader.lines() == []
    os.write(w, b"def\nxy")
    assert reader.lines() == [b"abcdef"]
    os.close(w)
    assert reader.lines() == []
    assert reader.eof
