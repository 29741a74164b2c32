"""A second "remote" host for the transfer tests: a private sshd on 127.0.0.1 for the session
(``benchmarks/sshd.py``, shared with the transfer benchmark).  Without sshd, ssh or rsync the
tests fail when CI is "true" and are skipped elsewhere (scripts/services.sh installs them as
root).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from benchmarks.sshd import SshdUnavailable, SshHost, keygen, private_sshd

__all__ = ["SshHost", "keygen", "rsync_then"]


def sshd_unavailable(reason: str) -> NoReturn:
    """Fail when CI is "true" (CI must test transfers over a real sshd), skip elsewhere."""
    message = f"the transfer tests need a private sshd on 127.0.0.1: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ssh_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    """A private sshd on 127.0.0.1 for the session, stopped at its end."""
    try:
        with private_sshd(tmp_path_factory.mktemp("sshd")) as host:
            yield host
    except SshdUnavailable as exc:
        sshd_unavailable(str(exc))


def rsync_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str, through: str = "") -> None:
    """The first rsync on PATH runs the real one (its output through the shell command
    ``through``, if given), then the shell lines ``after`` (where "$dest" is its destination),
    then exits with the real one's code."""
    real = shutil.which("rsync")
    assert real is not None
    shim = tmp_path / "late"
    shim.mkdir()
    code = tmp_path / "rsync-code"
    run = (
        f'{{ "{real}" "$@"; echo $? > "{code}"; }} 2>&1 | {through}'
        if through
        else f'"{real}" "$@"; echo $? > "{code}"'
    )
    (shim / "rsync").write_text(f'#!/bin/sh\nfor dest; do :; done\n{run}\n{after}\nexit $(cat "{code}")\n')
    (shim / "rsync").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
