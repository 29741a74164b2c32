"""What hooks print goes to the daemon's log, and follows it when it rotates."""

from __future__ import annotations

from pathlib import Path

from balsamd.daemon.hooks import HookPool, hook_task
from balsamd.store.store import SiteStore
from tests.conftest import make_jobs

PRINTER = """
from balsamd import ApplicationDefinition


class Printer(ApplicationDefinition):
    command_template = "true"

    def preprocess(self):
        print("preprocess of", self.job.workdir, flush=True)
"""


def test_a_hook_worker_prints_into_the_current_log_after_it_rotated(tmp_path: Path, store: SiteStore) -> None:
    source = tmp_path / "printer.py"
    source.write_text(PRINTER)
    log = tmp_path / "daemon.log"
    log.touch()
    first, second = make_jobs(store, 2)
    pool = HookPool(size=1, time_limit=60, stdio_log=log)
    try:
        [(_, done)] = pool.run(
            [("preprocess", hook_task(first, "preprocess", source, "Printer", str(tmp_path / first.workdir)))]
        )
        assert done.ok, done.error
        log.rename(tmp_path / "daemon.log.1")  # as the daemon's handler rotates it
        log.touch()
        [(_, done)] = pool.run(
            [("preprocess", hook_task(second, "preprocess", source, "Printer", str(tmp_path / second.workdir)))]
        )
        assert done.ok, done.error
    finally:
        pool.close()
    assert (tmp_path / "daemon.log.1").read_text() == f"preprocess of {first.workdir}\n"
    assert log.read_text() == f"preprocess of {second.workdir}\n"
