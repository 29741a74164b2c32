"""The private sshd the transfer tests use as a remote host: rsync reaches it with the run's key
only, it is known by its own host key, and nothing off this machine can reach it."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from pathlib import Path

from tests.transfers.conftest import SshHost, keygen


def make_tree(root: Path) -> None:
    """Files of a few sizes (one empty, one named with spaces), nested and empty directories,
    and a mode other than the default."""
    (root / "in" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty dir").mkdir()
    for i, size in enumerate([0, 1, 4096, 1 << 20]):
        (root / f"f{i}.bin").write_bytes(os.urandom(size))
    (root / "in" / "a name with spaces.txt").write_text("spaces survive the remote shell\n")
    (root / "in" / "deep" / "deeper" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "in" / "deep" / "deeper" / "run.sh").chmod(0o750)


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every entry under ``root``: its mode and, for files, the sha256 of its bytes."""
    entries = {}
    for path in sorted(root.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "directory"
        entries[str(path.relative_to(root))] = (path.stat().st_mode, digest)
    return entries


def rsync(ssh_host: SshHost, source: str, destination: str) -> None:
    done = subprocess.run(
        ["rsync", "-a", "-e", ssh_host.rsh, source, destination],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, f"rsync {source} {destination}: {done.stderr}"


def test_rsync_copies_a_tree_to_the_host_and_back_unchanged(ssh_host: SshHost, tmp_path: Path) -> None:
    local, remote, back = tmp_path / "local", tmp_path / "remote", tmp_path / "back"
    local.mkdir()
    make_tree(local)

    rsync(ssh_host, f"{local}/", f"{ssh_host.host}:{remote}/")
    rsync(ssh_host, f"{ssh_host.host}:{remote}/", f"{back}/")

    assert len(tree(local)) == 10
    assert tree(remote) == tree(local)
    assert tree(back) == tree(local)


def test_a_command_runs_on_the_host_as_the_user(ssh_host: SshHost) -> None:
    done = ssh_host.ssh("id", "-un")

    assert (done.returncode, done.stdout) == (0, f"{ssh_host.user}\n"), done.stderr


def test_a_key_the_host_was_not_given_is_refused_and_no_password_is_asked(ssh_host: SshHost, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger", "a key the host was not given")

    done = ssh_host.ssh("true", key=tmp_path / "stranger")

    assert done.returncode == 255
    # the methods the server still offers after the key failed: public keys only
    assert "Permission denied (publickey)." in done.stderr


def test_a_host_whose_key_is_not_the_known_one_is_refused(ssh_host: SshHost, tmp_path: Path) -> None:
    keygen(tmp_path / "impostor", "another host key")
    impostor = (tmp_path / "impostor.pub").read_text().split()
    ssh_host.known_hosts.rename(tmp_path / "known_hosts.real")
    try:
        ssh_host.known_hosts.write_text(f"[127.0.0.1]:{ssh_host.port} {impostor[0]} {impostor[1]}\n")
        done = ssh_host.ssh("true")
    finally:
        (tmp_path / "known_hosts.real").replace(ssh_host.known_hosts)

    assert done.returncode == 255
    assert "Host key verification failed." in done.stderr


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The (address, port) of every listening TCP socket process ``pid`` holds, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            # the kernel prints the address as 32-bit words in host (little-endian) order
            raw = bytes.fromhex(address)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((str(ipaddress.ip_address(words)), int(port, 16)))
    return found


def test_the_host_listens_on_the_loopback_address_only(ssh_host: SshHost) -> None:
    assert listening_addresses(ssh_host.pid) == {("127.0.0.1", ssh_host.port)}
