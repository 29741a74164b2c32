"""Every command and option explains itself; the documented commands and options exist."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from balsamd.cli import cli
from balsamd.cli.common import EXIT_MEANINGS, ExitCode


def walk(group: click.Group, path: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))


COMMANDS = dict(walk(cli))


def test_the_documented_commands_exist() -> None:
    documented = {
        ("site", "init"), ("app", "create"), ("app", "ls"), ("job", "create"), ("job", "ls"),
        ("job", "show"), ("job", "retry"), ("job", "kill"), ("job", "rm"), ("events",), ("transfer", "ls"),
    }  # fmt: skip
    assert documented <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_and_option_has_help(path: tuple[str, ...]) -> None:
    command = COMMANDS[path]
    assert (command.help or "").strip(), f"`balsamd {' '.join(path)}` has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"`balsamd {' '.join(path)}` option {param.opts} has no help"
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="balsamd", catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: balsamd {' '.join(path)} ")


def test_the_top_level_options_have_help() -> None:
    for param in cli.params:
        assert (param.help or "").strip(), param.opts


def options(*path: str) -> set[str]:
    return {opt for p in COMMANDS[path].params for opt in p.opts}


def test_the_documented_options_exist() -> None:
    assert {"--site", "--central", "--site-name"} <= {opt for p in cli.params for opt in p.opts}
    assert {"--name"} <= options("site", "init")
    assert {"--command"} <= options("app", "create")
    assert {"--json"} <= options("app", "ls")
    assert {
        "--app", "--workdir", "-p", "-t", "--num-nodes", "--ranks-per-node", "--threads-per-rank",
        "--gpus-per-rank", "--node-packing-count", "--wall-time-min", "--parent", "--json",
    } <= options("job", "create")  # fmt: skip
    assert {"--state", "--tag", "--app", "--by-state", "--json"} <= options("job", "ls")
    assert {"--json"} <= options("job", "show")
    assert {"--state"} <= options("job", "rm")
    assert {"--job", "--json"} <= options("events")
    assert {"--state", "--job", "--task", "--direction", "--location", "--limit", "--by-state", "--json"} <= options(
        "transfer", "ls"
    )


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith("balsamd ")
    assert "Python 3." in result.stdout


def test_every_exit_code_is_explained_in_the_help_and_the_readme() -> None:
    help_text = CliRunner().invoke(cli, ["--help"], prog_name="balsamd", catch_exceptions=False).stdout
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for code in ExitCode:
        assert f"  {int(code):<3} {EXIT_MEANINGS[code]}" in help_text, code
        assert f"| {int(code)} |" in readme, code
