"""A command template's placeholders stand only where a quoted value stays one literal word."""

from __future__ import annotations

import subprocess

import pytest

from balsamd.apps import AppError, command_app_source, render_command
from balsamd.templates import template_problems

HEREDOC = "inside a here-document in the command template; pass the value as an argument or an environment variable"
ARITHMETIC = "inside arithmetic in the command template; pass numbers as plain arguments and compute in the program"
REPARSED = "in a command that runs its arguments as code in the command template; pass the value as an argument"


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ("cat <<EOF\n{{ x }}\nEOF", HEREDOC),
        ("cat <<'END'\nhello {{ x }}\nEND", HEREDOC),
        ("cat <<-EOF\n\t{{ x }}\n\tEOF", HEREDOC),
        ("echo $(( {{ n }} + 1 ))", ARITHMETIC),
        ("(( {{ n }} > 2 )) && echo big", ARITHMETIC),
        ("echo $[{{ n }}+1]", ARITHMETIC),
        ("[[ {{ n }} -eq 1 ]] && echo one", ARITHMETIC),
        ("eval {{ x }}", REPARSED),
        ("echo a; eval run {{ x }}", REPARSED),
        ("let y={{ n }}", REPARSED),
        ("trap {{ x }} EXIT", REPARSED),
        ("source {{ x }}", REPARSED),
        ("sh -c {{ x }}", REPARSED),
        ("/bin/bash -lc {{ x }}", REPARSED),
    ],
)
def test_a_placeholder_where_quoting_cannot_hold_is_refused_with_the_reason(template: str, where: str) -> None:
    [problem] = template_problems(template)
    assert where in problem
    with pytest.raises(AppError, match=r"^app t: placeholder "):
        command_app_source("t", template)


@pytest.mark.parametrize(
    "template",
    [
        "echo {{ x }}",
        "prog --in={{ x }} -o out",
        "echo {{ a }} | xargs echo",
        "cat <<EOF\nfixed text\nEOF\necho {{ x }}",
        "f() { echo {{ x }}; }; f",
        "echo ${HOME} {{ x }} && test -d {{ x }}",
    ],
)
def test_a_placeholder_that_stays_one_word_is_fine(template: str) -> None:
    assert template_problems(template) == []


ATTACK = "$(touch pwned)a[$(touch pwned)]`touch pwned`';touch pwned;'\n"


@pytest.mark.parametrize(
    "template", ["echo {{ x }}", "printf '%s\\n' {{ x }} | cat", "test -n {{ x }} && echo {{ x }}"]
)
def test_an_accepted_template_runs_any_value_as_one_literal_word(tmp_path, template: str) -> None:
    assert template_problems(template) == []
    shell = subprocess.run(["/bin/sh", "-c", render_command(template, {"x": ATTACK})], cwd=tmp_path,
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert ATTACK.strip() in shell.stdout
    assert not (tmp_path / "pwned").exists()


def test_the_refused_templates_would_have_run_the_value(tmp_path) -> None:
    """What the rules prevent, shown with the shell itself."""
    for template in ("cat <<EOF\n{{ x }}\nEOF", "echo $(( {{ x }} ))", "eval echo {{ x }}"):
        value = "a[$(touch pwned)]" if "((" in template else "$(touch pwned)"
        subprocess.run(["/bin/bash", "-c", render_command(template, {"x": value})], cwd=tmp_path, capture_output=True)
        assert (tmp_path / "pwned").exists(), template
        (tmp_path / "pwned").unlink()
