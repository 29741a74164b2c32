"""``balsamd app create`` and ``balsamd app ls``."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.transfers.states import stage

PY_APP = textwrap.dedent(
    '''\
    from balsamd.apps import ApplicationDefinition


    class Sim(ApplicationDefinition):
        """Simulates a thing."""

        name = "sim"

        def run(self, x, steps=10, label="a b"):
            return x * steps
    '''
)


def test_app_create_writes_a_python_file(run) -> None:
    result = run("app", "create", "hello", "--command", "echo {{ name }} > out.txt")
    target = run.site / "apps" / "hello.py"
    assert result.stdout == f"Created app hello in {target} (parameters: name)\n"
    assert result.stderr == ""
    assert target.read_text() == (
        "from balsamd.apps import ApplicationDefinition\n\n\n"
        "class hello(ApplicationDefinition):\n"
        "    'Runs: echo {{ name }} > out.txt'\n\n"
        "    command_template = 'echo {{ name }} > out.txt'\n"
    )
    assert sorted(p.name for p in target.parent.iterdir()) == ["hello.py"]


def test_app_create_without_parameters_and_with_a_description(run) -> None:
    result = run("app", "create", "date_now", "--command", "date", "--description", "Prints the date.")
    assert result.stdout.endswith("(parameters: none)\n")
    assert run.json("app", "ls")[0]["description"] == "Prints the date."


def test_app_ls_table(hello) -> None:
    (hello.site / "apps" / "sim.py").write_text(PY_APP)
    assert hello("app", "ls").stdout == (
        "NAME   KIND     PARAMETERS                RUNS\n"
        "hello  command  name                      echo {{ name }}\n"
        "sim    python   x, steps=10, label='a b'  Sim.run()\n"
    )


def test_app_ls_json_is_a_list_of_apps(hello) -> None:
    (hello.site / "apps" / "sim.py").write_text(PY_APP)
    apps = hello.json("app", "ls")
    assert [a["name"] for a in apps] == ["hello", "sim"]
    assert apps[0] == {
        "name": "hello",
        "kind": "command",
        "command_template": "echo {{ name }}",
        "parameters": {"name": {"required": True, "default": None, "help": ""}},
        "environment": {},
        "cleanup_files": [],
        "shell_preamble": "",
        "preamble_per_job": False,
        "transfers": {},
        "description": "Runs: echo {{ name }}",
        "hooks": [],
        "source": "hello.py",
        "class_name": "hello",
        "warnings": [],
        "error": "",
    }
    assert apps[1]["kind"] == "python"
    assert apps[1]["description"] == "Simulates a thing."
    assert apps[1]["parameters"] == {
        "x": {"required": True, "default": None, "help": ""},
        "steps": {"required": False, "default": 10, "help": ""},
        "label": {"required": False, "default": "a b", "help": ""},
    }


def test_app_ls_with_no_apps(run) -> None:
    assert run("app", "ls").stdout == ("no apps yet; create one with `balsamd app create NAME --command TEMPLATE`\n")
    assert run.json("app", "ls") == []


def test_app_create_refuses_a_bad_name(run) -> None:
    assert run.fails("app", "create", "2fast", "--command", "true") == (
        "Error: app name '2fast' is not usable: use letters, digits and _, not starting with a digit\n"
    )
    assert run.fails("app", "create", "my-app", "--command", "true") == (
        "Error: app name 'my-app' is not usable: use letters, digits and _, not starting with a digit\n"
    )
    assert run.fails("app", "create", "class", "--command", "true") == (
        "Error: app name 'class' is a Python keyword; pick another name, e.g. class_app\n"
    )
    assert list((run.site / "apps").iterdir()) == []


def test_app_create_refuses_a_duplicate_name(hello) -> None:
    before = (hello.site / "apps" / "hello.py").read_text()
    assert hello.fails("app", "create", "hello", "--command", "echo other") == (
        "Error: app hello already exists (in apps/hello.py); pick another name\n"
    )
    assert (hello.site / "apps" / "hello.py").read_text() == before


def test_app_create_refuses_a_name_taken_by_a_python_app(run) -> None:
    (run.site / "apps" / "models.py").write_text(PY_APP)
    assert run.fails("app", "create", "sim", "--command", "true") == (
        "Error: app sim already exists (in apps/models.py); pick another name\n"
    )
    assert not (run.site / "apps" / "sim.py").exists()


def test_app_create_refuses_an_empty_template(run) -> None:
    assert run.fails("app", "create", "blank", "--command", "  ") == (
        "Error: the command template is empty; give the command to run, e.g. 'echo {{ msg }}'\n"
    )
    assert list((run.site / "apps").iterdir()) == []


def test_app_create_refuses_a_quoted_placeholder(run) -> None:
    assert run.fails("app", "create", "q", "--command", 'echo "{{ msg }}"') == (
        'Error: app q: placeholder {{ msg }} is inside " quotes in the command template; '
        "remove those quotes (every value is shell-quoted already)\n"
    )
    assert list((run.site / "apps").iterdir()) == []


def test_app_create_needs_a_command(run) -> None:
    result = run("app", "create", "x", code=2)
    assert "Error: Missing option '--command'." in result.stderr


def test_an_app_file_that_fails_to_import_is_listed_with_its_error_and_the_others_keep_working(hello) -> None:
    broken = hello.site / "apps" / "broken.py"
    broken.write_text(
        "import no_such_module_for_balsamd\n"
        "from balsamd.apps import ApplicationDefinition\n\n"
        "class Broken(ApplicationDefinition):\n"
        "    command_template = 'true'\n"
    )
    error = f"{broken}: error while importing: ModuleNotFoundError: No module named 'no_such_module_for_balsamd'"
    listed = hello("app", "ls")
    assert listed.stdout == (
        "NAME    KIND     PARAMETERS  RUNS\n"
        "Broken  -        -           cannot be used (below)\n"
        "hello   command  name        echo {{ name }}\n"
    )
    assert listed.stderr == f"app Broken cannot be used until its file is fixed: {error}\n"
    assert hello.json("job", "create", "--app", "hello", "--workdir", "w", "-p", "name=a")["app"] == "hello"
    assert hello.fails("job", "create", "--app", "Broken", "--workdir", "b") == (
        f"Error: job: app Broken cannot be used until its file is fixed: {error}\n"
    )
    hello("app", "create", "other", "--command", "true")
    assert [a["name"] for a in hello.json("app", "ls") if not a["error"]] == ["hello", "other"]


def test_an_app_with_both_template_and_run_is_listed_as_broken(run) -> None:
    (run.site / "apps" / "both.py").write_text(
        "from balsamd.apps import ApplicationDefinition\n\n"
        "class Both(ApplicationDefinition):\n"
        "    command_template = 'echo hi'\n\n"
        "    def run(self):\n"
        "        return 1\n"
    )
    assert run("app", "ls").stderr == (
        "app Both cannot be used until its file is fixed: "
        "apps/both.py: app Both: define either command_template or run(), not both\n"
    )


def test_app_ls_shows_each_apps_transfer_slots(hello, tmp_path: Path) -> None:
    stage(hello.site, tmp_path / "far")
    assert hello("app", "ls").stdout == (
        "NAME    KIND     PARAMETERS  RUNS\n"
        "hello   command  name        echo {{ name }}\n"
        "staged  command              true\n"
        "\n"
        "APP     SLOT    DIR  LOCAL PATH     REQUIRED  RECURSIVE  DESCRIPTION\n"
        "staged  input   in   in.dat         yes       no         the data\n"
        "staged  result  out  (item's name)  no        yes        -\n"
    )
    [staged] = [a for a in hello.json("app", "ls") if a["name"] == "staged"]
    assert staged["transfers"] == {
        "input": {"direction": "in", "local_path": "in.dat", "description": "the data", "required": True,
                  "recursive": False},
        "result": {"direction": "out", "local_path": "", "description": "", "required": False, "recursive": True},
    }  # fmt: skip
    assert staged["warnings"] == [], "the daemon's transfer service moves the items: nothing to warn of"
