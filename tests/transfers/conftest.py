"""A second "remote" host for the transfer tests: a private sshd on 127.0.0.1 for the session
(``benchmarks/sshd.py``, shared with the transfer benchmark).  Without sshd, ssh or rsync the
tests fail when CI is "true" and are skipped elsewhere (scripts/services.sh installs them as
root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from benchmarks.sshd import SshdUnavailable, SshHost, keygen, private_sshd

__all__ = ["SshHost", "keygen"]


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
