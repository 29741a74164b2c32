"""Site logs rotate by size, get the site's file mode, and a full disk neither kills nor floods
the process that logs."""

from __future__ import annotations

import logging
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.config import LoggingSettings
from balsamd.logs import ECHO_PER_MIN, SiteLogHandler
from tests.conftest import SmallDisk

TINY = LoggingSettings(max_bytes=4096, backups=2)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    made = logging.getLogger("balsamd.test-logs")
    made.propagate = False
    made.setLevel(logging.INFO)
    yield made
    for handler in list(made.handlers):
        made.removeHandler(handler)
        handler.close()


def test_a_log_rotates_at_its_size_and_keeps_its_backups(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "daemon.log"
    logger.addHandler(SiteLogHandler(path, TINY, 0o640))
    for n in range(1000):
        logger.info("record %04d %s", n, "x" * 80)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.log", "daemon.log.1", "daemon.log.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= TINY.max_bytes
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
    assert "record 0999" in path.read_text().splitlines()[-1]
    newest_kept = [int(line.split()[5]) for p in sorted(tmp_path.iterdir()) for line in p.read_text().splitlines()]
    assert sorted(newest_kept) == list(range(1000 - len(newest_kept), 1000))


def test_a_log_on_a_full_disk_drops_records_says_so_once_with_a_few_warnings_and_counts_them_later(
    small_disk: SmallDisk, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_disk.path / "launcher.log"
    logger.addHandler(SiteLogHandler(path, LoggingSettings(), 0o600))
    logger.info("before")
    small_disk.fill()
    for n in range(500):
        logger.info("while full %d %s", n, "x" * 5000)
        logger.warning("warning %d", n)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"balsamd: cannot write the log {path}: [Errno 28] No space left on device; records are dropped"
    assert [line.split(": ", 1)[1] for line in err[1:]] == [f"warning {n}" for n in range(ECHO_PER_MIN)]
    small_disk.free()
    logger.info("after")
    lines = path.read_text().splitlines()
    assert lines[0].endswith("INFO balsamd.test-logs: before")
    assert lines[-2].endswith("INFO balsamd.test-logs: after")
    assert lines[-1] == "(1000 log record(s) before the last one could not be written)"


def test_stdout_and_stderr_follow_a_log_as_it_rotates(tmp_path: Path) -> None:
    """What the background daemon and its hook workers print stays within the log's size."""
    path = tmp_path / "daemon.log"
    script = textwrap.dedent(f"""
        import logging, sys
        from pathlib import Path
        from balsamd.config import LoggingSettings
        from balsamd.logs import SiteLogHandler
        log = logging.getLogger("balsamd")
        tiny = LoggingSettings(max_bytes=4096, backups=1)
        log.addHandler(SiteLogHandler(Path({str(path)!r}), tiny, 0o600, stdio=True))
        log.setLevel(logging.INFO)
        for n in range(200):
            log.info("record %d %s", n, "x" * 80)
            print("printed", n, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.log", "daemon.log.1"]
    assert path.read_text().splitlines()[-1] == "printed 199"
    assert all(p.stat().st_size <= 4096 + 200 for p in tmp_path.iterdir())


def test_what_a_process_prints_to_a_full_disk_is_dropped_and_the_process_goes_on(small_disk: SmallDisk) -> None:
    """As a hook worker prints to the daemon's log: the print must not fail the hook."""
    out = small_disk.path / "daemon.log"
    out.touch()
    small_disk.fill()
    script = textwrap.dedent("""
        import sys
        from balsamd.logs import drop_unwritable_stdio
        drop_unwritable_stdio()
        for n in range(1000):
            print("printed", n, "x" * 1000, flush=n % 10 == 0)
            sys.stderr.write("warned %d\\n" % n)
        sys.exit(7)
    """)
    with out.open("a") as sink:
        done = subprocess.run([sys.executable, "-c", script], stdout=sink, stderr=sink, timeout=60)
    assert done.returncode == 7
    small_disk.free()
    script_after = "from balsamd.logs import drop_unwritable_stdio; drop_unwritable_stdio(); print('after')"
    with out.open("a") as sink:
        subprocess.run([sys.executable, "-c", script_after], stdout=sink, stderr=sink, timeout=60, check=True)
    assert out.read_text().endswith("after\n")
