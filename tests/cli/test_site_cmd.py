"""``balsamd site init``, ``site info`` and how every command finds its site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from balsamd.cli import cli
from balsamd.site import init_site


def invoke(*args: str, code: int = 0, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, list(args), prog_name="balsamd", catch_exceptions=False, env=env)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def edit_settings(site: Path, old: str, new: str) -> int:
    """Replace the line ``old`` of the site's settings.toml; returns its line number."""
    path = site / "settings.toml"
    lines = path.read_text().splitlines()
    number = lines.index(old)
    lines[number] = new
    path.write_text("\n".join(lines) + "\n")
    return number + 1


def test_site_init_creates_the_layout_and_says_what_next(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    result = invoke("site", "init", str(target), "--scheduler", "local")
    assert result.stdout == (
        f"Created site proj at {target}\n"
        f"  scheduler: local (chosen); batch job script template: {target}/job-template.sh\n"
        f"  settings: {target}/settings.toml  (node shape, scheduler, launcher)\n"
        f"  next: balsamd --site {target} app create NAME --command 'TEMPLATE'\n"
    )
    assert result.stderr == ""
    assert listing(target) == [
        "apps", "balsamd.db", "balsamd.db-fullmark", "data", "job-template.sh", "log", "secret", "settings.toml",
    ]  # fmt: skip
    assert (target / "secret").stat().st_mode & 0o777 == 0o600
    assert 'name = "proj"' in (target / "settings.toml").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["proj"]  # no staging directory left behind


def test_site_init_with_name_into_an_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    result = invoke("site", "init", str(target), "--name", "theta")
    assert result.stdout.startswith(f"Created site theta at {target}\n")
    info = invoke("--site", str(target), "site", "info", "--json")
    assert json.loads(info.stdout)["name"] == "theta"


def test_site_init_refuses_an_existing_site(tmp_path: Path) -> None:
    target = tmp_path / "s"
    invoke("site", "init", str(target))
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    result = invoke("site", "init", str(target), code=1)
    assert result.stdout == ""
    assert result.stderr == f"Error: {target} is already a balsamd site; use it with --site {target}\n"
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before


def test_site_init_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = invoke("site", "init", str(target), code=1)
    assert result.stderr == (f"Error: {target} exists and is not empty; choose a new directory for the site\n")
    assert listing(tmp_path) == ["busy", "busy/notes.txt"]


def test_site_init_refuses_a_name_with_spaces_and_writes_nothing(tmp_path: Path) -> None:
    result = invoke("site", "init", str(tmp_path / "s"), "--name", "my site", code=1)
    assert result.stderr == (
        "Error: site name 'my site' must be 1-64 characters without spaces, quotes, backslashes or control "
        "characters; give another with --name\n"
    )
    assert listing(tmp_path) == []


def test_site_info(tmp_path: Path) -> None:
    site = init_site(tmp_path / "s", name="polaris").root
    edit_settings(site, next(line for line in (site / "settings.toml").read_text().splitlines()
                             if line.startswith("cpus_per_node")), "cpus_per_node = 64")  # fmt: skip
    result = invoke("--site", str(site), "site", "info")
    assert result.stdout == (
        f"site polaris at {site}\n"
        "nodes: 64 CPUs, 0 GPUs, at most 1 per job\n"
        "scheduler: local; MPI launch: mpich\n"
        "central: (standalone)\n"
    )
    data = json.loads(invoke("--site", str(site), "site", "info", "--json").stdout)
    assert data["name"] == "polaris"
    assert data["path"] == str(site)
    assert data["settings"]["nodes"] == {"cpus_per_node": 64, "gpus_per_node": 0, "max_nodes": 1}


# ----- finding the site: --site, then $BALSAMD_SITE, then the current directory or a parent


@pytest.fixture
def three_sites(tmp_path: Path) -> dict[str, Path]:
    return {name: init_site(tmp_path / name, name=name).root for name in ("flag", "env", "cwd")}


def site_name(*args: str, env: dict[str, str] | None = None) -> str:
    return json.loads(invoke(*args, "site", "info", "--json", env=env).stdout)["name"]


def test_site_flag_wins_over_environment_and_cwd(three_sites, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(three_sites["cwd"])
    env = {"BALSAMD_SITE": str(three_sites["env"])}
    assert site_name("--site", str(three_sites["flag"]), env=env) == "flag"


def test_environment_wins_over_cwd(three_sites, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(three_sites["cwd"])
    assert site_name(env={"BALSAMD_SITE": str(three_sites["env"])}) == "env"


def test_site_found_from_cwd_or_a_parent(three_sites, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(three_sites["cwd"])
    assert site_name() == "cwd"
    deep = three_sites["cwd"] / "data" / "run1" / "sub"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert site_name() == "cwd"


def test_no_site_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("job", "ls", code=1)
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: no balsamd site found in {tmp_path.resolve()} or its parents; pass --site PATH, "
        "set BALSAMD_SITE, or create one with `balsamd site init PATH`\n"
    )


def test_site_flag_pointing_nowhere(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = invoke("--site", str(missing), "job", "ls", code=1)
    assert result.stderr == (
        f"Error: {missing} (from --site) does not exist or is not a directory; "
        f"create a site there with `balsamd site init {missing}`\n"
    )


def test_environment_pointing_at_a_plain_directory(tmp_path: Path) -> None:
    result = invoke("job", "ls", code=1, env={"BALSAMD_SITE": str(tmp_path)})
    assert result.stderr == (
        f"Error: {tmp_path} (from $BALSAMD_SITE) is not a balsamd site: {tmp_path}/settings.toml is "
        "missing; create a site with `balsamd site init DIR`\n"
    )


def test_missing_settings_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = init_site(tmp_path / "s").root
    (site / "settings.toml").unlink()
    expected = (
        f"{site}/settings.toml: settings file not found, but {site} (from {{}}) has a site store; "
        "restore the settings file (`balsamd site init` in an empty directory writes a fresh one to copy)\n"
    )
    result = invoke("--site", str(site), "job", "ls", code=1)
    assert result.stderr == "Error: " + expected.format("--site")
    monkeypatch.chdir(site / "data")
    result = invoke("job", "ls", code=1)
    assert result.stderr == "Error: " + expected.format("the current directory")


# ----- a malformed settings file: every error names file:line and the key


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return init_site(tmp_path / "s").root


def test_settings_with_bad_toml(site: Path) -> None:
    line = edit_settings(site, "gpus_per_node = 0", "gpus_per_node = ")
    result = invoke("--site", str(site), "job", "ls", code=1)
    assert result.stderr == (
        f"Error: {site}/settings.toml:{line}: key nodes.gpus_per_node: not valid TOML: Invalid value (column 17); "
        "put strings in double quotes, numbers and true/false without\n"
    )


def test_settings_with_a_wrong_type(site: Path) -> None:
    line = edit_settings(site, "max_nodes = 1", 'max_nodes = "two"')
    result = invoke("--site", str(site), "job", "ls", code=1)
    assert result.stderr == (
        f"Error: {site}/settings.toml:{line}: key nodes.max_nodes: expected a whole number, got a "
        "string; give a whole number, or remove the line to use the default (max_nodes = 1)\n"
    )


def test_settings_with_a_value_out_of_range(site: Path) -> None:
    line = edit_settings(site, "max_nodes = 1", "max_nodes = 0")
    result = invoke("--site", str(site), "job", "ls", code=1)
    assert result.stderr == (
        f"Error: {site}/settings.toml:{line}: key nodes.max_nodes: expected a whole number of at least 1 "
        "(got 0); give a value of at least 1, or remove the line to use the default (max_nodes = 1)\n"
    )


def test_settings_with_an_unknown_key(site: Path) -> None:
    line = edit_settings(site, "max_nodes = 1", "max_node = 4")
    result = invoke("--site", str(site), "job", "ls", code=1)
    assert result.stderr == (
        f"Error: {site}/settings.toml:{line}: key nodes.max_node: unknown key; "
        "did you mean max_nodes? remove it or correct its name (known keys: cpus_per_node, gpus_per_node, max_nodes)\n"
    )


def test_settings_with_an_unknown_choice(site: Path) -> None:
    line = edit_settings(site, 'mpi = "mpich"', 'mpi = "intelmpi"')
    result = invoke("--site", str(site), "job", "ls", code=1)
    assert result.stderr == (
        f"Error: {site}/settings.toml:{line}: key launcher.mpi: 'intelmpi' is not one of its values; "
        "use one of 'mpich', 'openmpi', 'srun', 'aprun', 'jsrun', 'pbs-cray'\n"
    )


def test_site_info_hides_the_database_password(tmp_path: Path) -> None:
    site = init_site(tmp_path / "s").root
    edit_settings(site, 'central = ""', 'central = "postgresql://balsam:hunter2@db.example:5432/balsam"')
    result = invoke("--site", str(site), "site", "info")
    assert "central: postgresql://balsam:***@db.example:5432/balsam\n" in result.stdout
    data = json.loads(invoke("--site", str(site), "site", "info", "--json").stdout)
    assert data["settings"]["sync"]["central"] == "postgresql://balsam:***@db.example:5432/balsam"
    edit_settings(
        site,
        'central = "postgresql://balsam:hunter2@db.example:5432/balsam"',
        "central = \"host=db user=balsam password='hunter 2' dbname=b\"",
    )
    assert "hunter" not in invoke("--site", str(site), "site", "info").stdout


def test_site_init_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    for target in (tmp_path / "f", tmp_path / "f" / "sub"):
        result = invoke("site", "init", str(target), code=1)
        assert (
            result.stderr == f"Error: {tmp_path / 'f'} is a file, not a directory; choose another path for the site\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def fake_path(tmp_path: Path, *commands: str) -> str:
    """A PATH holding only these (do-nothing) commands."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in commands:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return str(folder)


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        ((), "local"),
        (("sbatch", "squeue"), "slurm"),
        (("qsub", "pbsnodes"), "pbs"),
        (("qsub", "nodelist"), "cobalt"),
        (("bsub", "bjobs"), "lsf"),
    ],
)
def test_site_init_detects_the_scheduler_from_path_and_says_so(tmp_path: Path, commands, expected) -> None:
    target = tmp_path / "s"
    result = invoke("site", "init", str(target), env={"PATH": fake_path(tmp_path, *commands)})
    how = "no batch scheduler found on PATH" if expected == "local" else "detected from the commands on PATH"
    assert f"  scheduler: {expected} ({how});" in result.stdout
    assert f'kind = "{expected}"' in (target / "settings.toml").read_text()
