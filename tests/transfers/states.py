"""Transfer items in each state, for the tests that list them: a location and an app with slots
for a site directory, and items moved through the store's own operations, as the transfer
service moves them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from balsamd.models import JobSpec
from balsamd.store.contract import Store
from balsamd.transfers.backend import ItemResult

STAGED_APP = """\
from balsamd.apps import ApplicationDefinition


class staged(ApplicationDefinition):
    command_template = "true"
    transfers = {
        "input": {"direction": "in", "local_path": "in.dat", "required": True, "description": "the data"},
        "result": {"direction": "out", "recursive": True},
    }
"""
# what rsync says when a source is missing: the cause on its first line
RSYNC_ERROR = (
    'rsync: [sender] link_stat "/in/2.dat" failed: No such file or directory (2)\n'
    "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338)"
)


def stage(root: Path, base: Path) -> None:
    """Give the site at ``root`` the location ``far`` (``base``, a directory of this host) and the
    app ``staged`` (an inbound slot ``input``, required, and an outbound one ``result``)."""
    settings = root / "settings.toml"
    settings.write_text(settings.read_text().replace('# far = "file:///data/far"', f'far = "file://{base}"'))
    (root / "apps" / "staged.py").write_text(STAGED_APP)


@dataclass
class Jobs:
    """One job of ``staged`` per state its input item is in (the id of each)."""

    done: str
    retrying: str  # pending again after a failed try
    active: str
    failed: str  # out of tries: its job failed


def items_in_each_state(store: Store) -> Jobs:
    """Create four jobs of ``staged`` (the app registered) and move their input items: one done
    (7 bytes), one failed once and waiting to try again, one in a task, one out of tries."""
    made = [
        store.create_jobs([JobSpec(app="staged", workdir=f"w/{n}", transfers={"input": f"far:/in/{n}.dat"})])[0].id
        for n in range(1, 4)
    ]
    [failed] = store.create_jobs([JobSpec(app="staged", workdir="w/4", transfers={
        "input": "far:/in/4.dat", "result": "far:/out/4"})])  # fmt: skip
    item = {i.job_id: i.id for i in store.transfer_work(10)}
    task = store.start_transfer_task("t1", "in", "far", [item[made[0]], item[made[1]]])
    results = [ItemResult(item_id=i.id, ok=i.job_id == made[0], bytes=7, error=RSYNC_ERROR) for i in task.items]
    store.finish_transfer_task("t1", results, 3, 30.0)
    store.start_transfer_task("t2", "in", "far", [item[made[2]]])
    store.start_transfer_task("t3", "in", "far", [item[failed.id]])
    store.finish_transfer_task("t3", [ItemResult(item_id=item[failed.id], ok=False, error="denied")], 1, 30.0)
    return Jobs(done=made[0], retrying=made[1], active=made[2], failed=failed.id)
