"""``balsamd completion``: the scripts are click's, and completing a word asks balsamd itself."""

from __future__ import annotations

import pytest
from click.shell_completion import get_completion_class
from click.testing import CliRunner

from balsamd.cli import cli


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash is offered for the last word of ``words``, asked the way the bash script asks."""
    parts = words.split(" ")
    env = {"_BALSAMD_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1), **(env or {})}
    result = CliRunner().invoke(cli, [], prog_name="balsamd", env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_printed_script_is_what_click_makes_for_balsamd(run, shell: str) -> None:
    printed = run("completion", shell, site=False).stdout
    expected = get_completion_class(shell)(cli, {}, "balsamd", "_BALSAMD_COMPLETE").source()  # type: ignore[misc]
    assert printed == expected
    assert "_BALSAMD_COMPLETE" in printed
    # and it is what the completion variable itself prints, as click documents it
    sourced = CliRunner().invoke(cli, [], prog_name="balsamd", env={"_BALSAMD_COMPLETE": f"{shell}_source"})
    assert sourced.stdout == printed


def test_an_unknown_shell_is_refused_with_the_known_ones(run) -> None:
    err = run.fails("completion", "tcsh", code=2, site=False)
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in err


def test_commands_complete() -> None:
    assert complete("balsamd jo") == ["job"]
    assert complete("balsamd job mo") == ["modify"]
    assert complete("balsamd qs") == ["qsub"]
    assert set(complete("balsamd job ")) >= {"create", "ls", "rm", "dep", "modify"}
    assert complete("balsamd job ls --tr") == ["--tree"]


def test_job_states_complete_in_any_state_option() -> None:
    assert complete("balsamd job ls --state RUN_") == ["RUN_DONE", "RUN_ERROR", "RUN_TIMEOUT"]


def test_app_names_come_from_the_site(hello) -> None:
    hello("app", "create", "hello_again", "--command", "echo again")
    assert complete(f"balsamd --site {hello.site} job ls --app hel") == ["hello", "hello_again"]
    # without a site, nothing is offered and nothing is printed as an error
    assert complete("balsamd --site /nonexistent job ls --app hel") == []
