"""`balsamd launcher` decides its exit code from why the launcher stopped."""

from __future__ import annotations

from balsamd.cli.common import ExitCode
from balsamd.cli.launcher import EXIT_CODES
from balsamd.launch.leader.summary import ExitReason


def test_every_way_a_launcher_stops_has_an_exit_code() -> None:
    assert set(EXIT_CODES) == set(ExitReason)


def test_only_a_lost_session_is_an_error() -> None:
    errors = {reason for reason, code in EXIT_CODES.items() if code != ExitCode.OK}
    assert errors == {ExitReason.SESSION_LOST}
    assert EXIT_CODES[ExitReason.SESSION_LOST] == ExitCode.ERROR
