"""Apps: describing ApplicationDefinition classes, loading SITE/apps, rendering commands."""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balsamd.apps import (
    AppError,
    ApplicationDefinition,
    command_app_source,
    describe,
    job_preamble,
    load_apps,
    render_command,
)
from balsamd.models import AppKind, AppParameter, Job
from balsamd.states import JobState

NASTY = [
    "two words",
    "it's",
    'say "hi"',
    "a; rm -rf /",
    "$(touch pwned)",
    "`touch pwned`",
    "$HOME",
    "back\\slash",
    "line\nbreak",
    "*",
    "",
    "-n",
    "tab\there",
    "ünïcødé ✓",
]

# ----- render_command: every value is exactly one shell word ----------------------------


@pytest.mark.parametrize("value", NASTY)
def test_rendered_value_stays_one_word_under_sh(value: str, tmp_path: Path) -> None:
    command = render_command("printf '[%s]\\n' {{ value }} {{value}}", {"value": value})
    out = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout == f"[{value}]\n[{value}]\n"
    assert list(tmp_path.iterdir()) == []  # nothing the value said was executed


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0")))
def test_rendered_value_splits_back_to_itself(value: str) -> None:
    assert shlex.split(render_command("prog --x {{ x }} end", {"x": value})) == ["prog", "--x", value, "end"]


def test_render_command_with_non_text_values() -> None:
    assert render_command("run {{ n }} {{ f }} {{ b }}", {"n": 5, "f": 2.5, "b": True}) == "run 5 2.5 True"


def test_render_command_with_a_missing_parameter() -> None:
    with pytest.raises(AppError, match=r"command template needs parameter 'y', which the job does not have"):
        render_command("echo {{ x }} {{ y }}", {"x": 1})


# ----- describe: command apps -----------------------------------------------------------


class Echo(ApplicationDefinition):
    """Echoes twice.

    More words here."""

    command_template = "echo {{ msg }} {{msg}} {{ count }}"
    parameters = {"count": {"default": 1, "help": "how many"}}


def test_command_app_parameters_come_from_placeholders_and_declarations() -> None:
    app = describe(Echo, "echo.py")
    assert app.name == "Echo"
    assert app.kind == AppKind.COMMAND
    assert app.description == "Echoes twice."
    assert app.source == "echo.py"
    assert app.class_name == "Echo"
    assert app.parameters == {
        "msg": AppParameter(required=True),
        "count": AppParameter(required=False, default=1, help="how many"),
    }
    assert app.hooks == []


def test_declared_parameter_required_flag() -> None:
    class A(ApplicationDefinition):
        command_template = "x {{ a }} {{ b }} {{ c }}"
        parameters = {
            "a": {"help": "needed"},
            "b": {"required": False},
            "c": {"required": True, "default": 3},
        }

    params = describe(A).parameters
    assert params["a"] == AppParameter(required=True, help="needed")
    assert params["b"] == AppParameter(required=False, default=None)
    assert params["c"] == AppParameter(required=True, default=3)


def test_name_and_description_attributes_win() -> None:
    class A(ApplicationDefinition):
        """Doc."""

        name = "short"
        description = "Says it."
        command_template = "true"

    app = describe(A)
    assert (app.name, app.description, app.class_name) == ("short", "Says it.", "A")


def test_declared_parameter_not_in_the_template() -> None:
    class A(ApplicationDefinition):
        command_template = "echo {{ a }}"
        parameters = {"b": {"default": 1}}

    with pytest.raises(AppError, match=r"^app A: parameters \['b'\] are not used in command_template$"):
        describe(A)


def test_parameter_spec_must_be_a_dict_with_known_keys() -> None:
    class A(ApplicationDefinition):
        command_template = "echo {{ a }}"
        parameters = {"a": 1}

    class B(ApplicationDefinition):
        command_template = "echo {{ a }}"
        parameters = {"a": {"defualt": 1}}

    with pytest.raises(AppError, match=r"app A: parameters\['a'\] must be a dict like"):
        describe(A)
    with pytest.raises(AppError, match=r"app B: parameters\['a'\] has unknown keys \['defualt'\]"):
        describe(B)


@pytest.mark.parametrize(
    ("glob", "message"),
    [
        ("../*", r"cleanup_files glob '\.\./\*' goes up with '\.\.'; it may name files in the workdir only"),
        ("out/../../x", r"cleanup_files glob 'out/\.\./\.\./x' goes up with '\.\.'"),
        ("/etc/*", r"cleanup_files glob '/etc/\*' is absolute; name files relative to the job's workdir"),
        ("**/*.tmp", r"cleanup_files glob '\*\*/\*\.tmp' uses '\*\*'; name each level"),
        ("", r"cleanup_files glob '' must be 1 to 1024 characters"),
    ],
)
def test_a_cleanup_glob_that_could_leave_the_workdir_is_refused_naming_app_and_glob(glob: str, message: str) -> None:
    cls = type("Tidy", (ApplicationDefinition,), {"command_template": "true", "cleanup_files": ["*.tmp", glob]})
    with pytest.raises(AppError, match=rf"^app Tidy: {message}"):
        describe(cls)


def test_cleanup_files_given_as_one_string_is_refused() -> None:
    cls = type("Tidy", (ApplicationDefinition,), {"command_template": "true", "cleanup_files": "*.tmp"})
    with pytest.raises(AppError, match=r"^app Tidy: cleanup_files must be a list of globs, e.g. \['\*\.tmp'\]$"):
        describe(cls)


def test_cleanup_globs_inside_the_workdir_are_recorded() -> None:
    cls = type("Tidy", (ApplicationDefinition,), {"command_template": "true", "cleanup_files": ["*.tmp", "scratch/*"]})
    assert describe(cls).cleanup_files == ["*.tmp", "scratch/*"]


@pytest.mark.parametrize("template", ["echo '{{ a }}'", 'echo "{{ a }}"', 'echo "x {{ a }} y"', 'sh -c "cat {{ a }}"'])
def test_placeholders_inside_quotes_are_refused(template: str) -> None:
    cls = type("Q", (ApplicationDefinition,), {"command_template": template})
    with pytest.raises(AppError, match=r"^app Q: placeholder \{\{ a \}\} is inside . quotes"):
        describe(cls)


@pytest.mark.parametrize(
    "template", ["echo '{{' {{ a }}", 'echo "it\'s" {{ a }}', 'echo \\"{{ a }}\\"', "echo 'x' {{ a }} 'y'"]
)
def test_placeholders_outside_quotes_are_fine(template: str) -> None:
    cls = type("Q", (ApplicationDefinition,), {"command_template": template})
    assert list(describe(cls).parameters) == ["a"]


# ----- describe: Python apps ------------------------------------------------------------


class Sim(ApplicationDefinition):
    def run(self, x, steps=10, *args, scale: float = 1.5, label, **kwargs):
        return x


def test_python_app_parameters_come_from_run() -> None:
    app = describe(Sim)
    assert app.kind == AppKind.PYTHON
    assert app.command_template == ""
    assert app.parameters == {
        "x": AppParameter(required=True),
        "steps": AppParameter(required=False, default=10),
        "scale": AppParameter(required=False, default=1.5),
        "label": AppParameter(required=True),
    }


def test_python_app_declared_parameters_add_help_and_defaults() -> None:
    class P(ApplicationDefinition):
        parameters = {"x": {"default": 0, "help": "start"}}

        def run(self, x, y=2):
            return x + y

    assert describe(P).parameters == {
        "x": AppParameter(required=False, default=0, help="start"),
        "y": AppParameter(required=False, default=2),
    }


def test_python_app_declared_parameter_must_be_an_argument_of_run() -> None:
    class P(ApplicationDefinition):
        parameters = {"z": {"default": 0}}

        def run(self, x):
            return x

    class K(ApplicationDefinition):
        parameters = {"z": {"default": 0}}

        def run(self, x, **extra):
            return x

    with pytest.raises(AppError, match=r"^app P: parameters \['z'\] are not arguments of run\(\); add them"):
        describe(P)
    assert set(describe(K).parameters) == {"x", "z"}


def test_hooks_that_are_overridden_are_detected() -> None:
    class Base(ApplicationDefinition):
        command_template = "true"

        def preprocess(self):
            self.job.state = JobState.PREPROCESSED

    class Child(Base):
        def handle_error(self):
            self.job.state = JobState.RESTART_READY

    assert describe(Base).hooks == ["preprocess"]
    assert describe(Child).hooks == ["preprocess", "handle_error"]


def test_template_and_run_together_are_refused() -> None:
    class Both(ApplicationDefinition):
        command_template = "true"

        def run(self):
            return 1

    with pytest.raises(AppError, match=r"^app Both: define either command_template or run\(\), not both$"):
        describe(Both)


def test_neither_template_nor_run_is_refused() -> None:
    class Empty(ApplicationDefinition):
        pass

    with pytest.raises(AppError, match=r"^app Empty: set command_template or define a run\(self, \.\.\.\) method$"):
        describe(Empty)


# ----- loading SITE/apps ----------------------------------------------------------------


def write(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def test_load_apps_finds_subclasses_defined_in_each_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.py",
        """\
        from balsamd.apps import ApplicationDefinition

        class Helper:
            pass

        class One(ApplicationDefinition):
            command_template = "true"

        class Two(ApplicationDefinition):
            name = "two"
            def run(self):
                return 2
        """,
    )
    write(tmp_path, "b.py", "from balsamd.apps import ApplicationDefinition\n")
    write(tmp_path, "notes.txt", "class Not(ApplicationDefinition): ...\n")
    found = load_apps(tmp_path)
    assert sorted(found) == ["One", "two"]
    assert found["One"].source == "a.py"
    assert found["two"].class_name == "Two"


def test_imported_app_classes_are_not_counted_twice(tmp_path: Path) -> None:
    write(tmp_path / "lib", "shared.py", "from balsamd.apps import ApplicationDefinition\n\n"
          "class Shared(ApplicationDefinition):\n    command_template = 'true'\n")  # fmt: skip
    write(tmp_path / "apps", "uses.py", f"""\
        import sys
        sys.path.insert(0, {str(tmp_path / "lib")!r})
        from shared import Shared
        from balsamd.apps import ApplicationDefinition

        class Mine(ApplicationDefinition):
            command_template = "true"
        """)  # fmt: skip
    try:
        assert sorted(load_apps(tmp_path / "apps")) == ["Mine"]
    finally:
        sys.path.remove(str(tmp_path / "lib"))
        sys.modules.pop("shared", None)


def test_a_file_that_fails_to_import_lists_its_classes_as_broken_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.py", """\
        from balsamd.apps import ApplicationDefinition
        x = 1 / 0

        class Divider(ApplicationDefinition):
            command_template = "true"
        """)  # fmt: skip
    write(tmp_path, "good.py", command_app_source("Good", "true"))
    apps = load_apps(tmp_path)
    assert apps["Divider"].error == f"{path}: error while importing: ZeroDivisionError: division by zero"
    assert apps["Divider"].source == "bad.py"
    assert apps["Good"].error == ""


def test_a_syntax_error_is_listed_under_the_files_name(tmp_path: Path) -> None:
    path = write(tmp_path, "bad-one.py", "class (:\n")
    (app,) = load_apps(tmp_path).values()
    assert app.name == "bad_one"
    assert app.error.startswith(f"{path}: error while importing: SyntaxError: ")


def test_the_same_app_name_in_two_files_is_one_broken_app(tmp_path: Path) -> None:
    source = command_app_source("Dup", "true")
    write(tmp_path, "a.py", source)
    write(tmp_path, "b.py", source)
    assert load_apps(tmp_path)["Dup"].error == "app Dup is defined in apps/a.py and in apps/b.py; rename one"


def test_an_edited_app_file_is_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "echo.py"
    path.write_text(command_app_source("echo_app", "echo {{ a }}"))
    assert load_apps(tmp_path)["echo_app"].command_template == "echo {{ a }}"
    path.write_text(command_app_source("echo_app", "echo {{ b }}"))
    assert load_apps(tmp_path)["echo_app"].command_template == "echo {{ b }}"


def test_same_file_name_in_two_directories_does_not_clash(tmp_path: Path) -> None:
    write(tmp_path / "one", "app.py", command_app_source("hello", "echo one"))
    write(tmp_path / "two", "app.py", command_app_source("hello", "echo two"))
    one = load_apps(tmp_path / "one")["hello"]
    two = load_apps(tmp_path / "two")["hello"]
    assert (one.command_template, two.command_template) == ("echo one", "echo two")


def test_a_missing_apps_directory_has_no_apps(tmp_path: Path) -> None:
    assert load_apps(tmp_path / "nowhere") == {}


# ----- command_app_source ---------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "echo {{ msg }}",
        "printf '%s\\n' {{ a }} > \"out file\"",
        "a\\b '''x''' \"\" {{ c }}",
        "line1\nline2",
    ],
)
def test_command_app_source_round_trips(tmp_path: Path, template: str) -> None:
    (tmp_path / "gen.py").write_text(command_app_source("gen", template, "Generated."))
    app = load_apps(tmp_path)["gen"]
    assert app.command_template == template
    assert app.description == "Generated."
    assert app.source == "gen.py"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1st", r"app name '1st' is not usable: use letters, digits and _, not starting with a digit"),
        ("a-b", r"app name 'a-b' is not usable"),
        ("a b", r"app name 'a b' is not usable"),
        ("", r"app name '' is not usable"),
        ("import", r"app name 'import' is a Python keyword; pick another name, e\.g\. import_app"),
    ],
)
def test_command_app_source_refuses_bad_names(name: str, message: str) -> None:
    with pytest.raises(AppError, match=f"^{message}"):
        command_app_source(name, "true")


def test_command_app_source_refuses_empty_or_quoted_templates() -> None:
    with pytest.raises(AppError, match=r"^the command template is empty"):
        command_app_source("x", " \n ")
    with pytest.raises(AppError, match=r"^app x: placeholder \{\{ a \}\} is inside ' quotes"):
        command_app_source("x", "echo '{{ a }}'")


def test_workdir_outside_a_run_is_an_error_naming_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from balsamd import ApplicationDefinition
    from balsamd.models import Job

    monkeypatch.delenv("BALSAMD_SITE", raising=False)
    app = ApplicationDefinition(Job(id="j1", app="A", workdir="w/1"))
    with pytest.raises(RuntimeError, match="job j1: its working directory is known only while it runs"):
        _ = app.workdir


def test_workdir_of_a_run_is_made_under_the_sites_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from balsamd import ApplicationDefinition
    from balsamd.models import Job

    monkeypatch.setenv("BALSAMD_SITE", str(tmp_path))
    path = ApplicationDefinition(Job(id="j1", app="A", workdir="w/1")).workdir
    assert path == tmp_path / "data" / "w" / "1" and path.is_dir()


# ----- attributes of Balsam's app files -------------------------------------------------------


def test_balsam_attributes_are_recorded() -> None:
    class Sim(ApplicationDefinition):
        command_template = "sim {{ n }}"
        environment_variables = {"OMP_PLACES": "cores"}
        shell_preamble = ["module load sim", "cd /tmp"]
        cleanup_files = ("*.chk",)
        transfers = {"out": {"direction": "out", "local_path": "result.h5", "required": True}}

    app = describe(Sim, "sim.py", "here")
    assert app.environment == {"OMP_PLACES": "cores"}
    assert (app.shell_preamble, app.preamble_per_job) == ("module load sim\ncd /tmp", False)
    assert app.cleanup_files == ["*.chk"]
    assert app.transfers["out"].required and app.transfers["out"].local_path == "result.h5"
    assert app.warnings == [], "the daemon's transfer service moves the slots' items"


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"environment": {"A": "1"}, "environment_variables": {"B": "2"}},
         "set environment or environment_variables, not both (they are the same thing)"),
        ({"environment_variables": ["A=1"]},
         "environment_variables must be a dict of variable names to strings, not a list"),
        ({"cleanup_files": "*.tmp"}, "cleanup_files must be a list of globs, e.g. ['*.tmp']"),
        ({"shell_preamble": 5}, "shell_preamble is an int; give the shell text as a string (or a list of lines)"),
        ({"transfers": {"in-put": {"direction": "in"}}},
         "transfers slot 'in-put' must be a name (letters, digits and _)"),
    ],
)  # fmt: skip
def test_a_wrong_balsam_attribute_is_an_error_naming_it(attributes: dict, message: str) -> None:
    cls = type("Wrong", (ApplicationDefinition,), {"command_template": "true", **attributes})
    with pytest.raises(AppError) as info:
        describe(cls)
    assert str(info.value) == f"app Wrong: {message}"


def test_a_transfer_slot_with_an_unknown_direction_says_what_to_give() -> None:
    cls = type("Moves", (ApplicationDefinition,), {"command_template": "true", "transfers": {"x": {"direction": "up"}}})
    with pytest.raises(AppError) as info:
        describe(cls)
    assert str(info.value) == (
        "app Moves: transfers['x']: direction: 'up' is not a value it takes; use one of its values; a slot is e.g. "
        "{'direction': 'in', 'local_path': 'input.dat', 'required': True, 'description': '...'}"
    )


def test_a_preamble_method_is_called_for_each_job(tmp_path: Path) -> None:
    write(tmp_path, "pre.py", """\
        from balsamd import ApplicationDefinition

        class Pre(ApplicationDefinition):
            command_template = "true"

            def shell_preamble(self):
                if self.job.parameters.get("fail"):
                    raise RuntimeError("no module for that")
                return f"export N={self.job.workdir}"
        """)  # fmt: skip
    app = load_apps(tmp_path)["Pre"]
    assert (app.shell_preamble, app.preamble_per_job, app.error) == ("", True, "")
    job = Job(id="J1", app="Pre", workdir="w/1", state=JobState.PREPROCESSED)
    assert job_preamble(app, job, str(tmp_path)) == "export N=w/1"
    job.parameters = {"fail": True}
    with pytest.raises(
        AppError, match=r"^app Pre: shell_preamble\(\) for job J1 raised RuntimeError: no module for that$"
    ):
        job_preamble(app, job, str(tmp_path))
