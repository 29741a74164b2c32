"""A frame as text, from frames given here: sections, changes, widths and cut lines."""

from __future__ import annotations

import datetime

from balsamd.states import JobState
from balsamd.store.watch import Failure
from balsamd.top.frame import BatchLoad, Frame, Rate, ServiceLag, StateCount, View
from balsamd.top.render import clip, render
from balsamd.transfers.records import TransferBacklog

AT = 1_800_000_030.0
WHEN = datetime.datetime.fromtimestamp(AT).strftime("%Y-%m-%d %H:%M:%S")


def frame(**fields) -> Frame:
    values = {
        "site": "theta", "at": AT, "view": View(), "first": False,
        "states": [
            StateCount(state="PREPROCESSED", count=1_200_000, change=-340),
            StateCount(state="RUNNING", count=64, change=0),
            StateCount(state="JOB_FINISHED", count=35_000, change=340),
        ],
        "total": 1_235_064,
        "throughput": [
            Rate(minutes=1, finished=150, per_sec=5.0), Rate(minutes=5, finished=1200, per_sec=4.44),
            Rate(minutes=60, finished=15000, per_sec=4.2),
        ],
        "batch_jobs": [
            BatchLoad(id="b1", scheduler_id="4242", num_nodes=8, running_jobs=60, busy_nodes=7.5, idle_nodes=0.5),
            BatchLoad(id="", scheduler_id=None, num_nodes=None, running_jobs=4, busy_nodes=1.0, idle_nodes=None),
        ],
        "failures": [
            Failure(job_id="01J0", app="sim", state=JobState.FAILED, reason="exit code 2: out of memory\nkilled",
                    at=AT - 30),
            Failure(job_id="01J1", app="sim", state=JobState.RUN_TIMEOUT, reason="wall time", at=AT - 3 * 3600),
        ],
        "transfers": {"in": TransferBacklog(items=3, since=AT - 40)},
        "daemon": "running",
        "services": [
            ServiceLag(name="sync", healthy=True, lag="12 change(s) not yet central, last round 3 s ago"),
            ServiceLag(name="transfers", healthy=False, lag="1 task(s) running, 0 item(s) to retry",
                       last_error="ssh: connect to host far: Connection refused"),
        ],
    }  # fmt: skip
    values.update(fields)
    return Frame(**values)


def test_a_frame_reads_as_sections_of_counts_throughput_services_batch_jobs_and_failures() -> None:
    assert render(frame(), 200) == [
        f"balsamd top   site theta   {WHEN}   all jobs",
        "",
        "JOBS  1,235,064   (change since the last frame)",
        "  STATE         JOBS       CHANGE",
        "  PREPROCESSED  1,200,000  -340",
        "  RUNNING       64",
        "  JOB_FINISHED  35,000     +340",
        "",
        "FINISHED  1 min: 150 (5.00/s)   5 min: 1,200 (4.44/s)   1 h: 15,000 (4.20/s)",
        "",
        "DAEMON  running",
        "  sync ok: 12 change(s) not yet central, last round 3 s ago",
        "  transfers FAILING: 1 task(s) running, 0 item(s) to retry; ssh: connect to host far: Connection refused",
        "  transfer items: in: 3 waiting, oldest 40 s ago",
        "",
        "BATCH JOBS RUNNING",
        "  ID              SCHEDULER  NODES  BUSY  IDLE  JOBS",
        "  b1              4242       8      7.50  0.50  60",
        "  (no batch job)  -          -      1     -     4",
        "",
        "FAILURES  (latest first)",
        "  JOB   APP  STATE        WHEN      REASON",
        "  01J0  sim  FAILED       30 s ago  exit code 2: out of memory | killed",
        "  01J1  sim  RUN_TIMEOUT  3 h ago   wall time",
    ]


def test_a_first_frame_shows_counts_without_a_change() -> None:
    lines = render(frame(first=True), 200)
    assert lines[2] == "JOBS  1,235,064"
    assert lines[3:7] == [
        "  STATE         JOBS",
        "  PREPROCESSED  1,200,000",
        "  RUNNING       64",
        "  JOB_FINISHED  35,000",
    ]


def test_a_narrow_terminal_cuts_each_line_to_its_width_and_marks_the_cut() -> None:
    wide = render(frame(), 200)
    for width in (80, 40, 12):
        narrow = render(frame(), width)
        assert len(narrow) == len(wide)
        assert all(len(line) <= width for line in narrow)
        for full, cut in zip(wide, narrow, strict=True):
            assert cut == full if len(full) <= width else cut == full[: width - 1] + ">"
    assert render(frame(), 40)[-2] == "  01J0  sim  FAILED       30 s ago  exi>"


def test_clip_keeps_what_fits_and_marks_what_it_cut() -> None:
    assert clip("abcdef", 6) == "abcdef"
    assert clip("a\x1b[2Jb\tc", 20) == "a?[2Jb?c", "a reason must not steer the terminal"
    assert clip("abcdef", 4) == "abc>"
    assert clip("abcdef", 1) == ">"
    assert clip("abcdef", 0) == ""


def test_empty_sections_say_none_and_a_view_names_its_filter() -> None:
    lines = render(
        frame(view=View(app="sim", tags={"run": "a"}), states=[], total=0, batch_jobs=[], failures=[], transfers={},
              daemon="the daemon is not running", services=[]),
        200,
    )  # fmt: skip
    assert lines[0] == f"balsamd top   site theta   {WHEN}   app=sim run=a"
    assert lines[2:4] == ["JOBS  0   (change since the last frame)", "  none"]
    assert "DAEMON  the daemon is not running" in lines
    assert "  transfer items: none waiting" in lines
    assert lines[-5:] == ["BATCH JOBS RUNNING", "  none", "", "FAILURES  (latest first)", "  none"]
