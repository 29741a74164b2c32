"""The handshake: neither side sends the secret, each proves it knows it, and a client refuses
whatever holds the daemon's port without knowing it.

The impostor is a program listening on the port recorded in daemon.json after the daemon was
killed; it captures every byte the owner's clients send it, and answers as an attacker would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

import balsamd
from balsamd.rpc import protocol as p
from balsamd.rpc.client import RpcClient, RpcImpostor, RpcRefused
from balsamd.rpc.record import read_record
from tests.daemon.conftest import DaemonSite, alive, child_env, running, wait_until

IMPOSTOR = r"is not this site's daemon: "


ANSWERS: dict[str, Callable[[bytes], bytes]] = {
    # shaped like the daemon's answer, with a proof that proves nothing
    "a forged challenge": lambda hello: p.frame(p.Challenge("daemontest", p.nonce(), p.nonce())),
    "a welcome without a challenge": lambda hello: p.frame(p.Welcome(p.VERSION, "daemontest")),
    "a frame of 64 MiB announced": lambda hello: p.HEADER.pack(64 * 1024 * 1024) + b"\x00" * 1024,
    "an http error": lambda hello: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "garbage": lambda hello: os.urandom(256),
}


class Impostor:
    """Listens on ``port``; for each connection, reads the first frame, sends ``answer(frame)``
    (nothing if None), then records whatever else arrives until the client hangs up."""

    def __init__(self, port: int) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(0.05)
        self.answer: Callable[[bytes], bytes] | None = None
        self.received: list[bytes] = []  # per connection, everything it sent
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop)
        self._thread.start()

    @contextlib.contextmanager
    def answering(self, answer: Callable[[bytes], bytes] | None) -> Iterator[Impostor]:
        self.answer = answer
        self.received = []
        yield self

    def _loop(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.05)
                data = b""
                answered = False
                while not self._done.is_set():
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not chunk:
                        break
                    data += chunk
                    if not answered and self.answer is not None and _whole_frame(data):
                        answered = True
                        with contextlib.suppress(OSError):
                            conn.sendall(self.answer(data))
                self.received.append(data)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.server.close()


def _whole_frame(data: bytes) -> bool:
    return len(data) >= p.HEADER.size and len(data) >= p.HEADER.size + p.HEADER.unpack(data[: p.HEADER.size])[0]


def assert_only_a_hello(received: list[bytes], secret: str) -> None:
    """Each connection sent one Hello (a version and a nonce) and nothing derived from the secret."""
    assert received, "no client connected"
    for data in received:
        for form in (secret.encode(), secret.encode().hex().encode(), bytes.fromhex(secret)):
            assert form not in data
        length = p.HEADER.unpack(data[: p.HEADER.size])[0]
        assert len(data) == p.HEADER.size + length, "the client sent more than its Hello"
        hello = msgspec.msgpack.decode(data[p.HEADER.size :], type=p.Message)
        assert isinstance(hello, p.Hello) and hello.version == p.VERSION
        assert hello.nonce != secret


@pytest.fixture(scope="module")
def dead(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonSite]:
    """A site whose daemon was killed: its daemon.json still names its port."""
    with running(tmp_path_factory.mktemp("impostor")) as site:
        pid = site.daemon_pid()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid), "the daemon is gone")
        assert site.record() is not None
        yield site


def _listening(port: int) -> Impostor | None:
    """An impostor on ``port``, or None while some connection of this host still uses the port
    (the kernel may have given it to one as its local port once the daemon died)."""
    try:
        return Impostor(port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        return None


@pytest.fixture(scope="module")
def holder(dead: DaemonSite) -> Iterator[Impostor]:
    """The impostor on the dead daemon's port, from the moment it is free to the module's end."""
    made = wait_until(lambda: _listening(dead.record().port), "the dead daemon's port can be taken")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def secret(dead: DaemonSite) -> str:
    return (dead.root / "secret").read_text().strip()


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_the_owners_status_sends_an_impostor_nothing_secret_and_says_what_holds_the_port(
    dead: DaemonSite, holder: Impostor, secret: str, answer: str
) -> None:
    port = dead.record().port
    with holder.answering(ANSWERS[answer]) as fake:
        proc = dead.balsamd("status", code=1)
        wait_until(lambda: fake.received, "the impostor saw the client hang up")
    assert IMPOSTOR in proc.stderr
    assert f"127.0.0.1:{port} is not this site's daemon" in proc.stderr
    assert "nothing secret was sent to it" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert_only_a_hello(fake.received, secret)


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_a_client_sends_an_impostor_nothing_secret_and_refuses_it(
    dead: DaemonSite, holder: Impostor, secret: str, answer: str
) -> None:
    port = dead.record().port
    with holder.answering(ANSWERS[answer]) as fake, contextlib.closing(dead.client()) as client:
        with pytest.raises(RpcImpostor, match=rf"^127.0.0.1:{port} {IMPOSTOR}"):
            client.call("ping")
        wait_until(lambda: fake.received, "the impostor saw the client hang up")
    assert_only_a_hello(fake.received, secret)


def test_a_client_waits_for_a_silent_impostor_no_longer_than_its_timeout(
    dead: DaemonSite, holder: Impostor, secret: str
) -> None:
    with holder.answering(None) as fake, contextlib.closing(dead.client(timeout=0.5)) as client:
        with pytest.raises(ConnectionError, match=r"^cannot reach the daemon at .*timed out"):
            client.call("ping")
        wait_until(lambda: fake.received, "the impostor saw the client hang up")
    assert_only_a_hello(fake.received, secret)


def test_a_launcher_over_rpc_sends_an_impostor_nothing_secret(dead: DaemonSite, holder: Impostor, secret: str) -> None:
    with holder.answering(ANSWERS["a forged challenge"]) as fake:
        launcher = dead.start_launcher("--job-mode", "serial", "--idle-ttl", "1")
        wait_until(lambda: fake.received, "the launcher reached the impostor")
        launcher.kill()
        launcher.wait()
    assert_only_a_hello(fake.received, secret)


def test_an_impostors_text_is_shown_escaped(dead: DaemonSite, holder: Impostor) -> None:
    def deny(_hello: bytes) -> bytes:
        return p.frame(p.Denied("\x1b[2J\x1b]0;owned\x07wrong secret"))

    with holder.answering(deny):
        proc = dead.balsamd("status", code=1)
    assert "\x1b" not in proc.stderr
    assert r"'\x1b[2J\x1b]0;owned\x07wrong secret'" in proc.stderr


# ----- a wrong secret, another site ----------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonSite]:
    with running(tmp_path_factory.mktemp("handshake")) as site:
        yield site


def test_a_client_given_another_secret_takes_the_daemon_for_an_impostor(live: DaemonSite) -> None:
    record = live.record()
    client = RpcClient("127.0.0.1", record.port, "0" * 64, "test")
    with (
        contextlib.closing(client),
        pytest.raises(RpcImpostor, match=IMPOSTOR + "it could not prove it knows the site's secret"),
    ):
        client.call("ping")


def test_a_changed_secret_file_is_refused_as_a_wrong_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(tmp_path) as site:
        (site.root / "secret").write_text("f" * 64 + "\n")
        proc = site.balsamd("status", code=1)
        assert "wrong secret: the site's daemon was started with another secret than this one" in proc.stderr
        monkeypatch.setenv("BALSAMD_RPC", "1")
        with balsamd.connect(site.root) as opened, pytest.raises(RpcRefused, match=r"^wrong secret: "):
            opened.jobs.count()


def test_a_daemon_of_another_site_with_the_same_secret_is_refused(live: DaemonSite) -> None:
    record = live.record()
    secret = (live.root / "secret").read_text().strip()
    client = RpcClient("127.0.0.1", record.port, secret, "test", site="elsewhere")
    with (
        contextlib.closing(client),
        pytest.raises(RpcImpostor, match=IMPOSTOR + "it is the daemon of site 'daemontest', not 'elsewhere'"),
    ):
        client.call("ping")


def test_the_honest_flow_is_welcomed(live: DaemonSite, monkeypatch: pytest.MonkeyPatch) -> None:
    assert live.status()["site"] == "daemontest"
    with contextlib.closing(live.client()) as client:
        assert client.call("ping") == "pong"
        assert client.site == "daemontest"
    monkeypatch.setenv("BALSAMD_RPC", "1")
    with balsamd.connect(live.root) as opened:
        assert opened.jobs.count() == 0
    record = read_record(live.root)
    assert record is not None and len(record.secret_id) == 64
    env = child_env(BALSAMD_RPC="1")
    assert live.balsamd("job", "ls", env=env).returncode == 0


# ----- the proofs ----------------------------------------------------------------------------


def test_a_proof_is_bound_to_the_version_the_role_the_site_and_both_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = p.nonce(), p.nonce()
    made = p.proof("s" * 64, "client", "site", a, b)
    assert p.proven(made, "s" * 64, "client", "site", a, b)
    for other in (
        ("t" * 64, "client", "site", a, b),
        ("s" * 64, "daemon", "site", a, b),
        ("s" * 64, "client", "elsewhere", a, b),
        ("s" * 64, "client", "site", b, a),
        ("s" * 64, "client", "site", a, p.nonce()),
    ):
        assert not p.proven(made, *other)
    monkeypatch.setattr(p, "VERSION", p.VERSION + 1)
    assert not p.proven(made, "s" * 64, "client", "site", a, b)


def test_nonces_are_fresh() -> None:
    assert len({p.nonce() for _ in range(1000)}) == 1000
