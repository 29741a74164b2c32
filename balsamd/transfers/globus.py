"""The Globus backend: a task of items becomes one Globus transfer task, started exactly once.

Exactly once: the submission id Globus hands out is recorded (``record``) before anything is
submitted, and a resumed task (``task.external_id``) submits the same document with that id
again.  Globus runs a submission id at most once and answers a repeat with the original task
("Duplicate"), so a daemon killed anywhere, before or after Globus heard it, starts no second
transfer.  The backend then polls the task until it ends.  On cancel (the daemon stopping) it
returns without cancelling the Globus task, which goes on; the next start finds it again the
same way and collects its results.

Credentials: the site's saved login (``globus_auth``); globus-sdk is imported only when a task
runs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balsamd.config import GlobusSettings, TransferSettings
from balsamd.transfers.backend import Arrived, ItemResult, Task, TransferError
from balsamd.transfers.globus_auth import LOGIN, api_error, needs_sdk, transfer_authorizer
from balsamd.transfers.globus_items import Planned, failure_message, outcomes, plan

if TYPE_CHECKING:
    import globus_sdk

log = logging.getLogger(__name__)

POLL_S = 10.0
FINISHED = ("SUCCEEDED", "FAILED")
# what Globus accepts in a label (commas would split a task-list filter), at most 128 characters
_NOT_LABEL = re.compile(r"[^A-Za-z0-9 _-]")
EVENTS_READ = 20  # a failed task's most recent events read for its reason


def globus_backend(settings: TransferSettings, site_dir: Path, *, poll_interval: float = POLL_S) -> GlobusBackend:
    """The backend for ``globus://`` locations of the site in ``site_dir``."""
    return GlobusBackend(settings.globus, site_dir, poll_interval=poll_interval)


def cancelled(planned: list[Planned]) -> list[ItemResult]:
    return [ItemResult(item_id=p.item.item_id, ok=False, error="cancelled") for p in planned]


def task_label(task: Task, submission_id: str) -> str:
    """The Globus task's label: the balsamd task and its submission id, which no other
    submission of any site shares (a lost answer is found again by it)."""
    return _NOT_LABEL.sub("_", f"balsamd {task.direction} {task.task_id} {submission_id}")[:128]


class GlobusBackend:
    """Moves each task with Globus Transfer between a location's collection and the site's
    (``[transfers.globus] endpoint``).  ``poll_interval``: seconds between looks at a task;
    ``retry_config``: how the SDK retries a request itself (None: its default, backing off for
    seconds)."""

    def __init__(
        self,
        settings: GlobusSettings,
        site_dir: Path,
        *,
        poll_interval: float = POLL_S,
        retry_config: globus_sdk.transport.RetryConfig | None = None,
    ) -> None:
        self.settings = settings
        self.site_dir = site_dir
        self.poll_interval = poll_interval
        self.retry_config = retry_config

    def run(
        self, task: Task, record: Callable[[str], None], cancel: threading.Event, arrived: Arrived | None = None
    ) -> list[ItemResult]:
        """A Globus task's files are known to be in place only when it ends: none is handed to ``arrived``."""
        if not self.settings.endpoint:
            raise TransferError(
                "[transfers.globus] endpoint is empty in settings.toml: give the UUID of this site's Globus "
                "collection, the one that shows the site's data/ directory"
            )
        planned, unmapped = plan(task.items, task.direction, self.settings.path_map)
        if not planned:
            return unmapped
        if cancel.is_set():
            return unmapped + cancelled(planned)
        with needs_sdk():
            import globus_sdk
        authorizer = transfer_authorizer(self.settings.client_id, self.site_dir)
        transfer = globus_sdk.TransferClient(authorizer=authorizer, retry_config=self.retry_config)
        with transfer as client, authorizer.auth_client:  # each closes its connections after the task
            try:
                return unmapped + self._run(client, task, planned, record, cancel)
            except globus_sdk.AuthAPIError as exc:
                raise TransferError(
                    f"Globus refused the site's login ({api_error(exc)}): run `{LOGIN}` again"
                ) from None
            except globus_sdk.GlobusAPIError as exc:
                if exc.code == "ConsentRequired":
                    raise TransferError(
                        f"Globus needs a consent the site's login lacks ({exc.message}): run `{LOGIN}` again"
                    ) from None
                raise TransferError(f"Globus refused task {task.task_id}: {api_error(exc)}") from None
            except globus_sdk.NetworkError as exc:
                raise TransferError(
                    f"Globus could not be reached ({type(exc).__name__}); the task is resumed, not submitted twice"
                ) from None

    def _run(
        self,
        client: globus_sdk.TransferClient,
        task: Task,
        planned: list[Planned],
        record: Callable[[str], None],
        cancel: threading.Event,
    ) -> list[ItemResult]:
        submission_id = task.external_id
        if not submission_id:
            submission_id = str(client.get_submission_id()["value"])
            record(submission_id)
        globus_id = self._submit(client, task, planned, submission_id)
        done = self._wait(client, globus_id, cancel)
        if done is None:
            return cancelled(planned)
        succeeded = done["status"] == "SUCCEEDED"
        skipped = list(client.paginated.task_skipped_errors(globus_id).items())
        transferred: list[str] = []
        failure = ""
        if not succeeded:
            transferred = [str(t["source_path"]) for t in client.paginated.task_successful_transfers(globus_id).items()]
            events = [] if done.get("fatal_error") else list(client.task_event_list(globus_id, limit=EVENTS_READ))
            failure = failure_message(done, events)
        log.info("Globus task %s of task %s ended %s", globus_id, task.task_id, done["status"])
        return outcomes(planned, succeeded, skipped, transferred, failure)

    def _submit(self, client: globus_sdk.TransferClient, task: Task, planned: list[Planned], submission_id: str) -> str:
        """The id of the Globus task this submission is: a new one, or the one a submission with
        the same id made before."""
        import globus_sdk

        site, far = self.settings.endpoint, task.location.endpoint
        source, destination = (far, site) if task.direction == "in" else (site, far)
        label = task_label(task, submission_id)
        data = globus_sdk.TransferData(
            source, destination, label=label, submission_id=submission_id, verify_checksum=True,
            # a missing or unreadable source fails its item, not the whole task (skipped errors)
            skip_source_errors=True, fail_on_quota_errors=True,
            notify_on_succeeded=False, notify_on_failed=False,
        )  # fmt: skip
        for p in planned:
            data.add_item(p.source, p.destination, recursive=p.item.recursive)
        try:
            answer: dict[str, Any] = client.submit_transfer(data).data or {}
        except globus_sdk.TransferAPIError as exc:
            if "Duplicate" not in (exc.code or ""):
                raise
            answer = exc.raw_json or {}
        found = answer.get("task_id") or self._find(client, label)
        if answer.get("code") == "Duplicate":
            log.info("Globus had task %s's submission %s already: resuming its Globus task %s",
                     task.task_id, submission_id, found)  # fmt: skip
        else:
            log.info("submitted task %s (%d items) as Globus task %s", task.task_id, len(planned), found)
        return str(found)

    def _find(self, client: globus_sdk.TransferClient, label: str) -> str:
        """The Globus task of a submission whose answer named none, by its label."""
        for doc in client.task_list(filter={"label": label, "type": "TRANSFER"}, limit=10):
            if doc.get("label") == label:
                return str(doc["task_id"])
        raise TransferError(f"Globus answered a submission without its task id and has no task labelled {label!r}")

    def _wait(
        self, client: globus_sdk.TransferClient, globus_id: str, cancel: threading.Event
    ) -> dict[str, Any] | None:
        """The task document once the task has ended; None when cancelled first.  A failed look
        that may pass (the network, Globus busy) is tried again at the next poll."""
        import globus_sdk

        inactive = False
        while True:
            doc: dict[str, Any] = {}
            try:
                doc = client.get_task(globus_id).data or {}
            except globus_sdk.NetworkError as exc:
                log.warning("Globus task %s: no answer (%s); asking again", globus_id, type(exc).__name__)
            except globus_sdk.GlobusAPIError as exc:
                if exc.http_status < 500 and exc.http_status != 429:
                    raise
                log.warning("Globus task %s: Globus is busy (%s); asking again", globus_id, api_error(exc))
            status = doc.get("status")
            if status in FINISHED:
                return doc
            if status == "INACTIVE" and not inactive:
                log.warning("Globus task %s is INACTIVE (%s): it goes on once its credentials are renewed; "
                            "run `%s` if it stays so", globus_id, doc.get("nice_status"), LOGIN)  # fmt: skip
            inactive = status == "INACTIVE"
            if cancel.wait(self.poll_interval):
                return None
