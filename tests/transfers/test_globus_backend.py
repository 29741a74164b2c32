"""The Globus backend against Globus's API as globus-sdk's own testing responses play it: one
transfer per task, submitted exactly once, polled to its end, one result per item."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from globus_sdk import TransferClient
from globus_sdk.testing import RegisteredResponse, get_last_request, get_response_set, load_response
from globus_sdk.transport import RetryConfig

from balsamd.config import GlobusSettings, TransferSettings
from balsamd.transfers.backend import Item, ItemResult, Task, TransferError
from balsamd.transfers.globus import GlobusBackend, globus_backend
from balsamd.transfers.globus_auth import TOKENS_FILE, StoredTokens, TokenFile
from balsamd.transfers.globus_items import collection_path
from balsamd.transfers.locations import parse_location

CLIENT_ID = "0c1d2e3f-0000-4000-8000-00000000c11e"
SITE = "5e5e5e5e-0000-4000-8000-000000005173"
FAR = "fa4fa4fa-0000-4000-8000-0000000000fa"
ACCESS = "ACCESS-9f8e7d-never-shown"
REFRESH = "REFRESH-1a2b3c-never-shown"
NEW_ACCESS = "ACCESS-RENEWED-4d5e6f-never-shown"
TOKENS = (ACCESS, REFRESH, NEW_ACCESS)
SUBMISSION_ID = get_response_set(TransferClient.get_submission_id).metadata["submission_id"]
GLOBUS_TASK = get_response_set(TransferClient.submit_transfer).metadata["task_id"]


@pytest.fixture(autouse=True)
def globus_api() -> Iterator[None]:
    """Globus's API as registered responses; a request nobody registered fails the test."""
    responses.start()
    yield
    responses.stop()
    responses.reset()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "data" / "j1").mkdir(parents=True)
    save_tokens(root)
    return root


def save_tokens(root: Path, expires_at: float | None = None) -> None:
    TokenFile(root).save(StoredTokens(
        client_id=CLIENT_ID, scope="urn:globus:auth:scope:transfer.api.globus.org:all", access_token=ACCESS,
        refresh_token=REFRESH, expires_at_seconds=int(expires_at if expires_at is not None else time.time() + 3600),
    ))  # fmt: skip


def backend(site: Path, **globus: Any) -> GlobusBackend:
    settings = {"client_id": CLIENT_ID, "endpoint": SITE, "path_map": {str(site / "data"): "/~/site/data"}, **globus}
    # the SDK's own retries without its backing off
    quick = RetryConfig(backoff=lambda _ctx: 0.0)
    return GlobusBackend(GlobusSettings(**settings), site, poll_interval=0.01, retry_config=quick)


def task(site: Path, direction: str = "in", external_id: str = "", items: tuple[Item, ...] = ()) -> Task:
    workdir = str(site / "data" / "j1")
    return Task(
        task_id="17", direction=direction, location=parse_location(f"globus://{FAR}/proj"), staging=str(site / "stg"),
        items=items or (
            Item(item_id=1, remote="/proj/in/a.dat", workdir=workdir, local="a.dat"),
            Item(item_id=2, remote="/proj/in/set", workdir=workdir, local="inputs/set", recursive=True),
        ),
        external_id=external_id,
    )  # fmt: skip


class Recorder:
    """``record`` for a task: keeps what the backend recorded, and whether Globus had been asked
    to transfer anything by then."""

    def __init__(self) -> None:
        self.recorded: list[str] = []
        self.submitted_before: list[bool] = []

    def __call__(self, external_id: str) -> None:
        self.recorded.append(external_id)
        self.submitted_before.append(bool(transfer_posts()))


def calls(path: str, method: str = "GET") -> list[Any]:
    return [c for c in responses.calls if c.request.method == method and c.request.path_url.split("?")[0] == path]


def transfer_posts() -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in calls("/v0.10/transfer", "POST")]


def globus_task(*statuses: str, task_id: str = GLOBUS_TASK, **fields: Any) -> None:
    """get_task answers each status in turn (the last one from then on)."""
    for status in statuses:
        doc = {"DATA_TYPE": "task", "task_id": task_id, "status": status, **fields}
        RegisteredResponse(service="transfer", path=f"/v0.10/task/{task_id}", json=doc).add()


def listing(kind: str, data: list[dict[str, Any]], task_id: str = GLOBUS_TASK) -> None:
    """The task's skipped_errors or successful_transfers, one page."""
    RegisteredResponse(service="transfer", path=f"/v0.10/task/{task_id}/{kind}",
                       json={"DATA_TYPE": f"{kind}_list", "DATA": data, "next_marker": None}).add()  # fmt: skip


def finished(skipped: list[dict[str, Any]] = [], transferred: list[dict[str, Any]] = []) -> None:  # noqa: B006
    listing("skipped_errors", skipped)
    listing("successful_transfers", transferred)


def deliver(site: Path) -> None:
    """What Globus writes into the job's workdir on a stage-in."""
    workdir = site / "data" / "j1"
    (workdir / "a.dat").write_bytes(b"12345")
    (workdir / "inputs" / "set" / "sub").mkdir(parents=True)
    (workdir / "inputs" / "set" / "x").write_bytes(b"xx")
    (workdir / "inputs" / "set" / "sub" / "y").write_bytes(b"yyy")


def test_a_task_is_one_transfer_submitted_with_the_id_recorded_before_it(site: Path) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    globus_task("ACTIVE", "ACTIVE", "SUCCEEDED")
    finished()
    deliver(site)
    record = Recorder()

    results = backend(site).run(task(site), record, threading.Event())

    assert record.recorded == [SUBMISSION_ID]
    assert record.submitted_before == [False]
    [body] = transfer_posts()
    assert body["submission_id"] == SUBMISSION_ID
    assert (body["source_endpoint"], body["destination_endpoint"]) == (FAR, SITE)
    assert [(i["source_path"], i["destination_path"], i["recursive"]) for i in body["DATA"]] == [
        ("/proj/in/a.dat", "/~/site/data/j1/a.dat", False),
        ("/proj/in/set", "/~/site/data/j1/inputs/set", True),
    ]
    assert body["skip_source_errors"] is True
    assert "17" in body["label"] and SUBMISSION_ID in body["label"]
    assert len(calls(f"/v0.10/task/{GLOBUS_TASK}")) == 3
    assert results == [ItemResult(item_id=1, ok=True, bytes=5), ItemResult(item_id=2, ok=True, bytes=5)]
    assert get_last_request().headers["Authorization"] == f"Bearer {ACCESS}"


def test_a_stage_out_goes_from_the_site_s_collection_to_the_location_s(site: Path) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    globus_task("SUCCEEDED")
    finished()
    items = (Item(item_id=5, remote="/proj/out/r.txt", workdir=str(site / "data" / "j1"), local="r.txt"),)
    (site / "data" / "j1" / "r.txt").write_text("result")

    results = backend(site).run(task(site, "out", items=items), Recorder(), threading.Event())

    [body] = transfer_posts()
    assert (body["source_endpoint"], body["destination_endpoint"]) == (SITE, FAR)
    assert [(i["source_path"], i["destination_path"]) for i in body["DATA"]] == [
        ("/~/site/data/j1/r.txt", "/proj/out/r.txt")
    ]
    assert results == [ItemResult(item_id=5, ok=True, bytes=6)]


def test_a_resumed_task_submits_again_with_its_recorded_id_and_follows_the_duplicate(site: Path) -> None:
    original = "0d0d0d0d-0000-4000-8000-00000000d0d0"
    RegisteredResponse(service="transfer", method="POST", path="/v0.10/transfer", status=200, json={
        "DATA_TYPE": "transfer_result", "code": "Duplicate", "message": "A transfer with id ... was already submitted",
        "submission_id": "recorded-before", "task_id": original,
    }).add()  # fmt: skip
    globus_task("SUCCEEDED", task_id=original)
    finished_for(original)
    deliver(site)
    record = Recorder()

    results = backend(site).run(task(site, external_id="recorded-before"), record, threading.Event())

    assert record.recorded == []
    assert calls("/v0.10/submission_id") == []
    assert [body["submission_id"] for body in transfer_posts()] == ["recorded-before"]
    assert [r.ok for r in results] == [True, True]


def finished_for(task_id: str) -> None:
    listing("skipped_errors", [], task_id)
    listing("successful_transfers", [], task_id)


def test_a_duplicate_answer_without_the_task_s_id_finds_the_task_by_its_label(site: Path) -> None:
    found = "0e0e0e0e-0000-4000-8000-00000000e0e0"
    RegisteredResponse(service="transfer", method="POST", path="/v0.10/transfer", status=409, json={
        "code": "Conflict.Duplicate", "message": "this submission id was used", "request_id": "r1",
    }).add()  # fmt: skip
    label = "balsamd in 17 recorded-before"
    RegisteredResponse(service="transfer", path="/v0.10/task_list", json={
        "DATA_TYPE": "task_list", "limit": 10, "offset": 0, "total": 2, "DATA": [
            {"DATA_TYPE": "task", "task_id": "0f0f0f0f-0000-4000-8000-00000000f0f0", "label": label + " older"},
            {"DATA_TYPE": "task", "task_id": found, "label": label},
        ],
    }).add()  # fmt: skip
    globus_task("SUCCEEDED", task_id=found)
    finished_for(found)

    results = backend(site).run(task(site, external_id="recorded-before"), Recorder(), threading.Event())

    assert [c.request.params["filter"] for c in calls("/v0.10/task_list")] == [f"label:{label}/type:TRANSFER"]
    assert calls(f"/v0.10/task/{found}") and [r.ok for r in results] == [True, True]


def test_a_failed_task_fails_the_items_it_did_not_move_with_globus_s_messages(site: Path) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    globus_task("ACTIVE", "FAILED", fatal_error={"code": "PERMISSION_DENIED", "description": "no write on /~/site"})
    workdir = str(site / "data" / "j1")
    items = (
        Item(item_id=1, remote="/proj/in/a.dat", workdir=workdir, local="a.dat"),
        Item(item_id=2, remote="/proj/in/set", workdir=workdir, local="inputs/set", recursive=True),
        Item(item_id=3, remote="/proj/in/gone.dat", workdir=workdir, local="gone.dat"),
        Item(item_id=4, remote="/proj/in/b.dat", workdir=workdir, local="b.dat"),
    )
    finished(
        skipped=[{"DATA_TYPE": "skipped_error", "source_path": "/proj/in/gone.dat", "error_code": "FILE_NOT_FOUND",
                  "error_details": "No such file or directory", "is_directory": False}],
        transferred=[{"DATA_TYPE": "successful_transfer", "source_path": "/proj/in/a.dat",
                      "destination_path": "/~/site/data/j1/a.dat"},
                     {"DATA_TYPE": "successful_transfer", "source_path": "/proj/in/set/x",
                      "destination_path": "/~/site/data/j1/inputs/set/x"}],
    )  # fmt: skip
    (site / "data" / "j1" / "a.dat").write_bytes(b"123")

    results = backend(site).run(task(site, items=items), Recorder(), threading.Event())

    fatal = f"Globus task {GLOBUS_TASK} failed: PERMISSION_DENIED: no write on /~/site"
    assert results == [
        ItemResult(item_id=1, ok=True, bytes=3),
        ItemResult(item_id=2, ok=False, error=fatal),  # partly moved: done again
        ItemResult(item_id=3, ok=False, error="FILE_NOT_FOUND at /proj/in/gone.dat: No such file or directory"),
        ItemResult(item_id=4, ok=False, error=fatal),
    ]


def test_a_succeeded_task_fails_only_the_items_globus_skipped(site: Path) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    globus_task("SUCCEEDED")
    finished(skipped=[
        {"source_path": "/proj/in/set/sub/y", "error_code": "PERMISSION_DENIED", "error_details": "open: denied"},
        {"source_path": "/proj/in/set/z", "error_code": "PERMISSION_DENIED", "error_details": "open: denied"},
    ])  # fmt: skip
    deliver(site)

    results = backend(site).run(task(site), Recorder(), threading.Event())

    assert results == [
        ItemResult(item_id=1, ok=True, bytes=5),
        ItemResult(item_id=2, ok=False, error="PERMISSION_DENIED at /proj/in/set/sub/y: open: denied (and 1 more)"),
    ]


def test_a_failed_task_without_a_fatal_error_is_explained_by_its_last_error_event(site: Path) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    globus_task("FAILED", nice_status="Queued")
    finished()
    RegisteredResponse(service="transfer", path=f"/v0.10/task/{GLOBUS_TASK}/event_list", json={
        "DATA_TYPE": "event_list", "limit": 20, "offset": 0, "total": 3, "DATA": [
            {"code": "CANCELED", "description": "deadline", "details": "the task's deadline passed",
             "is_error": True, "time": "2026-01-02T10:00:00+00:00"},
            {"code": "STARTED", "description": "started", "details": "", "is_error": False,
             "time": "2026-01-02T11:00:00+00:00"},
            {"code": "CONNECT_FAILED", "description": "connection failed", "details": "dtn01 refused",
             "is_error": True, "time": "2026-01-01T09:00:00+00:00"},
        ],
    }).add()  # fmt: skip

    results = backend(site).run(task(site), Recorder(), threading.Event())

    why = f"Globus task {GLOBUS_TASK} failed: CANCELED: deadline the task's deadline passed"
    assert [r.error for r in results] == [why, why]


def test_cancel_returns_unfinished_items_at_once_and_leaves_the_globus_task_running(site: Path) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    globus_task("ACTIVE")
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()

    # a poll interval far longer than the test's timeout: only cancel ends the wait
    results = GlobusBackend(backend(site).settings, site, poll_interval=3600).run(task(site), Recorder(), cancel)

    assert results == [ItemResult(item_id=1, ok=False, error="cancelled"),
                       ItemResult(item_id=2, ok=False, error="cancelled")]  # fmt: skip
    assert [c.request.method for c in responses.calls if "/cancel" in c.request.url] == []


def test_a_task_cancelled_before_it_starts_asks_globus_nothing(site: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    record = Recorder()
    results = backend(site).run(task(site), record, cancel)
    assert [r.error for r in results] == ["cancelled", "cancelled"]
    assert record.recorded == [] and len(responses.calls) == 0


def test_globus_busy_while_polling_is_asked_again(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    # the SDK tries a 503 six times itself, then the backend polls again
    for _ in range(6):
        RegisteredResponse(service="transfer", path=f"/v0.10/task/{GLOBUS_TASK}", status=503,
                           json={"code": "ServiceUnavailable", "message": "busy"}).add()  # fmt: skip
    globus_task("SUCCEEDED")
    finished()
    deliver(site)

    results = backend(site).run(task(site), Recorder(), threading.Event())

    assert [r.ok for r in results] == [True, True]
    assert "Globus is busy (503 ServiceUnavailable: busy); asking again" in caplog.text


def test_an_item_outside_the_path_map_fails_with_a_message_naming_the_setting(site: Path) -> None:
    load_response(TransferClient.get_submission_id)
    load_response(TransferClient.submit_transfer)
    globus_task("SUCCEEDED")
    finished()
    deliver(site)
    outside = Item(item_id=9, remote="/proj/in/c.dat", workdir="/elsewhere/j9", local="c.dat")

    results = backend(site).run(task(site, items=(*task(site).items, outside)), Recorder(), threading.Event())

    assert [len(body["DATA"]) for body in transfer_posts()] == [2]
    assert [r.item_id for r in results if r.ok] == [1, 2]
    [refused] = [r for r in results if not r.ok]
    assert refused.item_id == 9
    assert "/elsewhere/j9/c.dat is not under a directory of transfers.globus.path_map" in refused.error
    assert str(site / "data") in refused.error


def test_a_task_of_unmapped_items_only_is_never_submitted(site: Path) -> None:
    record = Recorder()
    results = backend(site, path_map={}).run(task(site), record, threading.Event())
    assert [r.ok for r in results] == [False, False]
    assert "(its prefixes: none)" in results[0].error
    assert record.recorded == [] and len(responses.calls) == 0


def test_the_longest_mapped_prefix_wins_and_only_whole_directories_match() -> None:
    path_map = {"/": "/root", "/data": "/~/d", "/data/site": "/gcs/site", "/data/si": "/wrong"}
    assert collection_path("/data/site/j1/a", path_map) == "/gcs/site/j1/a"
    assert collection_path("/data/site", path_map) == "/gcs/site"
    assert collection_path("/data/sitex/a", path_map) == "/~/d/sitex/a"
    assert collection_path("/opt/a", path_map) == "/root/opt/a"
    assert collection_path("/opt/a", {"/data/": "/d"}) is None
    assert collection_path("/data/a", {"/data/": "/d/"}) == "/d/a"


def test_without_a_login_the_error_says_to_log_in(site: Path) -> None:
    (site / TOKENS_FILE).unlink()
    with pytest.raises(TransferError, match=r"no Globus login yet .* run `balsamd site globus-login`"):
        backend(site).run(task(site), Recorder(), threading.Event())
    assert len(responses.calls) == 0


def test_a_login_of_another_client_or_readable_by_others_is_refused(site: Path) -> None:
    with pytest.raises(TransferError, match=r"made with client id .* run `balsamd site globus-login` again"):
        backend(site, client_id="0c1d2e3f-0000-4000-8000-00000000beef").run(task(site), Recorder(), threading.Event())
    (site / TOKENS_FILE).chmod(0o640)
    with pytest.raises(TransferError, match=r"is not yours alone \(mode 0640\)"):
        backend(site).run(task(site), Recorder(), threading.Event())


def test_a_site_without_its_collection_says_which_setting_to_fill(site: Path) -> None:
    with pytest.raises(TransferError, match=r"\[transfers.globus\] endpoint is empty"):
        backend(site, endpoint="").run(task(site), Recorder(), threading.Event())


def test_a_renewed_access_token_is_saved_and_no_token_reaches_logs_or_errors(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    save_tokens(site, expires_at=time.time() - 60)
    RegisteredResponse(service="auth", method="POST", path="/v2/oauth2/token", json={
        "access_token": NEW_ACCESS, "scope": "urn:globus:auth:scope:transfer.api.globus.org:all",
        "expires_in": 172800, "token_type": "Bearer", "resource_server": "transfer.api.globus.org",
        "other_tokens": [],
    }).add()  # fmt: skip
    load_response(TransferClient.get_submission_id)
    RegisteredResponse(service="transfer", method="POST", path="/v0.10/transfer", status=403, json={
        "code": "ConsentRequired", "message": "Missing required data_access consent", "request_id": "r2",
        "required_scopes": [f"urn:globus:auth:scope:transfer.api.globus.org:all[*https://auth.globus.org/scopes/{SITE}/data_access]"],
    }).add()  # fmt: skip

    with pytest.raises(TransferError) as refused:
        backend(site).run(task(site), Recorder(), threading.Event())

    assert "run `balsamd site globus-login` again" in str(refused.value)
    assert get_last_request().headers["Authorization"] == f"Bearer {NEW_ACCESS}"
    saved = json.loads((site / TOKENS_FILE).read_text())
    assert (saved["access_token"], saved["refresh_token"]) == (NEW_ACCESS, REFRESH)
    assert (site / TOKENS_FILE).stat().st_mode & 0o777 == 0o600
    assert caplog.records, "the SDK's debug log was captured"
    shown = caplog.text + str(refused.value) + repr(refused.value) + repr(TokenFile(site).load())
    assert [token for token in TOKENS if token in shown] == []


def test_token_files_saved_from_many_threads_at_once_stay_whole(site: Path) -> None:
    def renew(n: int) -> None:
        for i in range(50):
            TokenFile(site).save(StoredTokens(client_id=CLIENT_ID, scope="s", access_token=f"a{n}-{i}",
                                              refresh_token=REFRESH, expires_at_seconds=i))  # fmt: skip

    threads = [threading.Thread(target=renew, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert TokenFile(site).load().access_token.endswith("-49")
    assert sorted(p.name for p in site.iterdir()) == ["data", TOKENS_FILE]


def test_a_refused_renewal_says_to_log_in_again_without_the_token(site: Path) -> None:
    save_tokens(site, expires_at=time.time() - 60)
    load_response("auth.oauth2_exchange_code_for_tokens", case="invalid_grant")
    with pytest.raises(TransferError, match=r"refused the site's login \(401 invalid_grant.*globus-login` again") as e:
        backend(site).run(task(site), Recorder(), threading.Event())
    assert [token for token in TOKENS if token in str(e.value)] == []


def test_the_backend_built_from_settings_uses_the_site_s_globus_settings(site: Path) -> None:
    settings = TransferSettings(globus=GlobusSettings(client_id=CLIENT_ID, endpoint=SITE))
    made = globus_backend(settings, site, poll_interval=0.5)
    assert (made.settings, made.site_dir, made.poll_interval) == (settings.globus, site, 0.5)


def test_without_globus_sdk_balsamd_imports_and_the_error_says_how_to_install_it(site: Path) -> None:
    script = f"""
import sys, threading
sys.modules["globus_sdk"] = None  # as if it were not installed
import balsamd, balsamd.cli, balsamd.transfers.globus
from balsamd.config import TransferSettings, GlobusSettings
from balsamd.transfers.backend import Item, Task, TransferError
from balsamd.transfers.locations import parse_location
backend = balsamd.transfers.globus.globus_backend(
    TransferSettings(globus=GlobusSettings(client_id={CLIENT_ID!r}, endpoint={SITE!r}, path_map={{"/": "/"}})),
    __import__("pathlib").Path({str(site)!r}))
task = Task(task_id="1", direction="in", location=parse_location("globus://{FAR}/p"), staging="stg",
            items=(Item(item_id=1, remote="/p/a", workdir="/w", local="a"),))
try:
    backend.run(task, print, threading.Event())
except TransferError as exc:
    print(exc)
"""
    env = {k: v for k, v in os.environ.items() if k != "BALSAMD_SITE"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "globus-sdk, which is not installed: pip install 'balsamd[globus]'" in done.stdout
