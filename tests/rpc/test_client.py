"""The RPC client: the store's contract over the daemon, with the store's errors, and a
connection that survives the daemon going away and coming back."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import balsamd
from balsamd.models import ClaimLimits, ClaimOrder, JobSpec, StateUpdate
from balsamd.rpc.client import RemoteError, RemoteStore, RpcClient, RpcUnavailable, backoff_after
from balsamd.rpc.record import read_record
from balsamd.site import SiteLayout, open_store
from balsamd.states import IllegalTransition, JobState
from balsamd.store.errors import JobNotFound, SessionGone, StoreError
from balsamd.store.queries import claimed_jobs
from balsamd.store.store import SiteStore
from balsamd.validate import JobSpecError
from tests.daemon.conftest import DaemonSite, new_site, running, wait_until

S = JobState


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonSite]:
    with running(tmp_path_factory.mktemp("client")) as made:
        made.command_app("Hello", "echo hello")
        made.create("Hello", 3)
        yield made


@pytest.fixture(scope="module")
def known(site: DaemonSite) -> dict[str, str]:
    """Ids of a finished job, a runnable job, a closed session and an open one."""
    with site.store() as store:
        finished, runnable = (j.id for j in store.filter()[:2])
        session = store.open_session(label="client test")
        store.claim(session.id, ClaimLimits(max_jobs=3))  # the document is not read: only the binding matters
        store.release(session.id, [runnable])
        store.update_states(
            session.id,
            [
                StateUpdate(job_id=finished, state=S.RUNNING, ts=1.0),
                StateUpdate(job_id=finished, state=S.RUN_DONE, ts=2.0, return_code=0),
            ],
        )
        store.close_session(session.id)
        assert store.get(finished).state == S.JOB_FINISHED
        still_open = store.open_session(label="client test, open")
    return {"finished": finished, "runnable": runnable, "closed": session.id, "open": still_open.id}


def _job(app: str, parents: tuple[str, ...] = ()) -> JobSpec:
    return JobSpec(app=app, workdir="w/x", parent_ids=list(parents))


# (what the call is, the error class expected) -> the call, given a store and the known ids
ERROR_CASES: dict[str, tuple[type[Exception], Callable[..., object]]] = {
    "get an unknown id": (JobNotFound, lambda s, k: s.get("01NOSUCHJOB")),
    "resolve an empty id": (JobNotFound, lambda s, k: s.resolve_id("  ")),
    "resolve an ambiguous prefix": (StoreError, lambda s, k: s.resolve_id("0")),
    "kill an unknown job": (JobNotFound, lambda s, k: s.kill(["01NOSUCHJOB"])),
    "kill a finished job": (IllegalTransition, lambda s, k: s.kill([k["finished"]])),
    "retry a runnable job": (IllegalTransition, lambda s, k: s.retry([k["runnable"]])),
    "create a job of an unknown app": (JobSpecError, lambda s, k: s.create_jobs([_job("Nope")])),
    "create a job of a missing parent": (StoreError, lambda s, k: s.create_jobs([_job("Hello", ("01GONE",))])),
    "heartbeat a closed session": (SessionGone, lambda s, k: s.heartbeat(k["closed"], [])),
    "claim for a closed session": (SessionGone, lambda s, k: s.claim(k["closed"], ClaimLimits())),
    "create a job in a workdir outside data/": (
        JobSpecError,
        lambda s, k: s.create_jobs([JobSpec(app="Hello", workdir="../../x")]),
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_the_remote_store_raises_what_the_store_raises(site: DaemonSite, known: dict[str, str], case: str) -> None:
    expected, action = ERROR_CASES[case]
    with site.store() as local, pytest.raises(expected) as here:
        action(local, known)
    with site.remote() as remote, pytest.raises(expected) as there:
        action(remote, known)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value)
    assert vars(there.value) == vars(here.value)


def test_a_remote_illegal_transition_keeps_its_states(site: DaemonSite, known: dict[str, str]) -> None:
    with site.remote() as remote, pytest.raises(IllegalTransition) as refused:
        remote.kill([known["finished"]])
    assert refused.value.job_id == known["finished"]
    assert refused.value.src is S.JOB_FINISHED
    assert refused.value.dst is S.KILLED


def test_the_remote_store_returns_what_the_store_returns(site: DaemonSite, known: dict[str, str]) -> None:
    with site.store() as local, site.remote() as remote:
        assert remote.get(known["finished"]) == local.get(known["finished"])
        assert remote.filter() == local.filter()
        assert remote.counts_by_state() == local.counts_by_state()
        assert remote.events(known["finished"]) == local.events(known["finished"])
        assert remote.apps() == local.apps()
        assert remote.resolve_id(known["finished"].lower()) == known["finished"]


def test_a_remote_claim_returns_the_jobs_the_store_holds_in_the_order_asked(site: DaemonSite) -> None:
    specs = [JobSpec(app="Hello", workdir=f"w/{m}", wall_time_min=m) for m in (5, 60, 30)]
    with site.store() as local, site.remote() as remote:
        made = remote.create_jobs(specs)
        session = remote.open_session(label="client test, claims")
        try:
            limits = ClaimLimits(order=ClaimOrder.LONG_LARGE_FIRST, filter_tags={})
            claimed = claimed_jobs(remote.claim(session.id, limits), limits)
            assert [j.wall_time_min for j in claimed if j.id in {m.id for m in made}] == [60, 30, 5]
            assert claimed == [local.get(j.id) for j in claimed]
        finally:
            remote.close_session(session.id)


def test_a_fault_of_the_daemon_is_a_remote_error_and_it_goes_on(site: DaemonSite) -> None:
    # an event id SQLite cannot take: an error of the daemon's own, not one of the store's
    with site.remote() as remote:
        with pytest.raises(RemoteError, match=r"^OverflowError: "):
            remote.events(after=2**63)
        assert remote.client.call("ping") == "pong"
    assert "events failed" in (site.root / "log" / "daemon.log").read_text()


def test_the_rpc_path_is_taken_when_asked(site: DaemonSite, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = SiteLayout(site.root)
    with contextlib.closing(open_store(layout, layout.load_settings())) as store:
        assert isinstance(store, SiteStore)
    monkeypatch.setenv("BALSAMD_RPC", "1")
    with contextlib.closing(open_store(layout, layout.load_settings())) as store:
        assert isinstance(store, RemoteStore)
        assert store.client.call("ping") == "pong"


# ----- the daemon away -----------------------------------------------------------------------


@contextlib.contextmanager
def hanging_up_listener(port: int = 0) -> Iterator[tuple[int, list[float]]]:
    """A port whose every connection is accepted and closed at once; yields (port, accept times)."""
    accepted: list[float] = []
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.05)
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(time.monotonic())
            conn.close()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        done.set()
        thread.join()
        server.close()


@contextlib.contextmanager
def occupied(port: int) -> Iterator[None]:
    """Hold ``port`` so that no daemon can listen there; clients that connect are hung up on."""
    with hanging_up_listener(port):
        yield


def test_the_backoff_doubles_from_a_fifth_of_a_second_to_five() -> None:
    delays = list(itertools.accumulate(range(7), lambda last, _: backoff_after(last), initial=0.0))[1:]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_a_daemon_that_is_down_makes_calls_fail_fast_and_tries_again_after_its_backoff() -> None:
    now = [100.0]
    with hanging_up_listener() as (port, accepted):
        client = RpcClient("127.0.0.1", port, "secret", clock=lambda: now[0])
        for attempt, delay in enumerate((0.2, 0.4, 0.8), start=1):
            with pytest.raises(RpcUnavailable, match=r"^cannot reach the daemon"):
                client.call("ping")  # an attempt: the daemon's port hangs up
            wait_until(lambda n=attempt: len(accepted) == n, f"attempt {attempt} reached the port")
            now[0] += delay - 0.01
            for _ in range(50):  # however often the caller calls before then: no attempt
                with pytest.raises(RpcUnavailable, match=r"unreachable; retrying soon$"):
                    client.call("ping")
            now[0] += 0.01
        assert len(accepted) == 3


def test_calls_to_a_stopped_daemon_say_it_is_unreachable(tmp_path: Path) -> None:
    with running(tmp_path) as site, contextlib.closing(site.client()) as client:
        assert client.call("ping") == "pong"
        port = site.record().port
        site.stop()
        with pytest.raises(RpcUnavailable, match=r"^lost the connection to the daemon during ping: "):
            client.call("ping")
        with pytest.raises(RpcUnavailable, match=rf"^cannot reach the daemon at 127.0.0.1:{port}: .*refused"):
            client.call("ping")
        with pytest.raises(RpcUnavailable, match=rf"^daemon at 127.0.0.1:{port} unreachable; retrying soon$"):
            client.call("ping")


def _answers(store: RemoteStore) -> bool:
    try:
        return store.client.call("ping") == "pong"
    except RpcUnavailable:
        return False


def test_a_client_reconnects_to_a_restarted_daemon(tmp_path: Path) -> None:
    with running(tmp_path) as site, site.remote() as remote:
        session = remote.open_session(label="survivor")
        port = site.record().port
        site.stop()
        with pytest.raises(RpcUnavailable):
            remote.heartbeat(session.id, [])
        site.start()
        assert site.record().port == port  # the restarted daemon serves where it served
        wait_until(lambda: _answers(remote), "the client reaches the restarted daemon")
        assert remote.heartbeat(session.id, []) == []


def _locate(root: Path) -> Callable[[], tuple[str, int] | None]:
    def locate() -> tuple[str, int] | None:
        record = read_record(root)
        return None if record is None else ("127.0.0.1", record.port)

    return locate


def test_a_daemon_whose_port_is_taken_moves_and_a_client_with_a_locator_follows(tmp_path: Path) -> None:
    with running(tmp_path) as site:
        record = site.record()
        secret = (site.root / "secret").read_text().strip()
        store = RemoteStore(RpcClient("127.0.0.1", record.port, secret, locate=_locate(site.root)))
        with contextlib.closing(store):
            assert _answers(store)
            site.stop()
            with occupied(record.port):
                site.start()
                assert site.record().port != record.port
                wait_until(lambda: _answers(store), "the client finds the daemon on its new port")
        log = (site.root / "log" / "daemon.log").read_text()
        assert f"port {record.port} of the previous daemon is taken" in log


def test_the_api_follows_a_daemon_restarted_on_another_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALSAMD_RPC", "1")
    with running(tmp_path) as site, balsamd.connect(site.root) as opened:
        assert opened.jobs.count() == 0
        port = site.record().port
        site.stop()
        with occupied(port):
            site.start()
            assert site.record().port != port

            def counted() -> bool:
                try:
                    return opened.jobs.count() == 0
                except RpcUnavailable:
                    return False

            wait_until(counted, "the site opened before the restart reaches the daemon on its new port")


def test_a_job_that_cannot_cross_the_rpc_is_refused_at_creation(tmp_path: Path) -> None:
    with new_site(tmp_path) as site:
        site.command_app("Hello", "echo hello")
        with pytest.raises(JobSpecError):
            site.create("Hello", data={"big": 2**70})
