"""``balsamd job create --from FILE``: a job per line, every line checked first, all or none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import balsamd
from balsamd.cli import cli

MANY = 2000


def jobs_of(site_path: Path) -> list:
    with balsamd.connect(site_path) as site:
        return site.jobs.filter()


def json_lines(path: Path, lines: list[object]) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def test_a_json_lines_file_creates_a_job_per_line(hello, site_path: Path, tmp_path: Path) -> None:
    lines = [{"workdir": f"runs/{n}", "parameters": {"name": f"n{n}"}, "tags": {"n": str(n)}} for n in range(MANY)]
    lines[7]["tags"]["campaign"] = "own"  # type: ignore[index]
    path = json_lines(tmp_path / "jobs.jsonl", [*lines[:5], "", *lines[5:]])  # a blank line is no job
    out = hello("job", "create", "--from", path, "--app", "hello", "-t", "campaign=c1", "--num-nodes", "2").stdout
    assert out == f"created {MANY} job(s)\n"
    made = {j.workdir: j for j in jobs_of(site_path)}
    assert len(made) == MANY
    seventh = made["runs/7"]
    assert (seventh.app, seventh.parameters, seventh.num_nodes) == ("hello", {"name": "n7"}, 2)
    assert seventh.tags == {"n": "7", "campaign": "own"}  # a line's own value wins over the option
    assert made["runs/8"].tags == {"n": "8", "campaign": "c1"}


def test_a_csv_file_with_tags_parameters_and_resources(hello, site_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        "app,workdir,param.name,tag.size,num_nodes,wall_time_min\n"
        "hello,c/1,one,small,1,5\n"
        'hello,c/2,"two, quoted",big,,\n'
    )
    result = hello.json("job", "create", "--from", str(path), "--wall-time-min", "10")
    made = {j.workdir: j for j in jobs_of(site_path)}
    assert result == {"created": 2, "ids": [made["c/1"].id, made["c/2"].id]}
    one, two = made["c/1"], made["c/2"]
    assert (one.parameters, one.tags, one.wall_time_min) == ({"name": "one"}, {"size": "small"}, 5)
    # an empty cell is not given: the command line's value, else the field's default
    assert (two.parameters, two.num_nodes, two.wall_time_min) == ({"name": "two, quoted"}, 1, 10)


def test_python_apps_get_json_values_from_csv_as_from_the_command_line(run, site_path: Path, tmp_path: Path) -> None:
    (site_path / "apps" / "square.py").write_text(
        "from balsamd import ApplicationDefinition\n\n"
        "class square(ApplicationDefinition):\n"
        "    def run(self, x: int, label: str = ''):\n"
        "        return x * x\n"
    )
    path = tmp_path / "jobs.csv"
    path.write_text("workdir,param.x\nsq/1,3\nsq/2,4\n")
    run("job", "create", "--from", str(path), "--app", "square", "-p", "label=[1]")
    assert sorted((j.parameters["x"], j.parameters["label"]) for j in jobs_of(site_path)) == [(3, [1]), (4, [1])]


def test_stdin_is_a_file_too(hello, site_path: Path) -> None:
    lines = "".join(json.dumps({"workdir": f"s/{n}", "parameters": {"name": "x"}}) + "\n" for n in range(3))
    argv = ["--site", str(site_path), "job", "create", "--from", "-", "--app", "hello"]
    result = CliRunner().invoke(cli, argv, input=lines, catch_exceptions=False)
    assert (result.exit_code, result.stdout) == (0, "created 3 job(s)\n")
    assert len(jobs_of(site_path)) == 3


def test_one_bad_line_creates_nothing_and_is_named_with_its_field(hello, site_path: Path, tmp_path: Path) -> None:
    lines = [{"workdir": f"runs/{n}", "parameters": {"name": "x"}} for n in range(MANY)]
    lines[1234]["num_nodes"] = "many"
    path = json_lines(tmp_path / "jobs.jsonl", lines)
    said = hello.fails("job", "create", "--from", path, "--app", "hello")
    assert said.startswith("Error: 1 line(s) of the file are wrong; no job was created:\n  line 1235: num_nodes:")
    assert jobs_of(site_path) == []


def test_every_bad_line_is_told_at_once(hello, site_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("workdir,num_nodes,param.name\nok/1,1,a\nbad/2,two,a\nok/3,1,a\nbad/4,1\n")
    said = hello.fails("job", "create", "--from", str(path), "--app", "hello")
    assert said == (
        "Error: 2 line(s) of the file are wrong; no job was created:\n"
        "  line 3: num_nodes: 'two' is not a whole number\n"
        "  line 5: 2 cells for 3 columns; give one per column\n"
    )
    assert jobs_of(site_path) == []


def test_a_line_the_store_refuses_creates_nothing_and_is_named(hello, site_path: Path, tmp_path: Path) -> None:
    lines = [{"workdir": f"runs/{n}", "parameters": {"name": "x"}} for n in range(MANY)]
    lines[-1]["num_nodes"] = 64  # more nodes than the site has: only the store knows
    path = json_lines(tmp_path / "jobs.jsonl", lines)
    said = hello.fails("job", "create", "--from", path, "--app", "hello")
    assert said.startswith(f"Error: line {MANY}: ") and "num_nodes" in said
    assert jobs_of(site_path) == []


def test_lines_naming_parents_that_are_no_jobs_are_told_before_anything_is_made(
    hello, site_path: Path, tmp_path: Path
) -> None:
    parent = hello.job("parent")
    path = tmp_path / "jobs.csv"
    path.write_text(f"workdir,parents\nc/1,{parent}\nc/2,{parent} 7NOSUCHJOB\n")
    said = hello.fails("job", "create", "--from", str(path), "--app", "hello", "-p", "name=x")
    assert said == (
        "Error: 1 line(s) of the file are wrong; no job was created:\n"
        "  line 3: parent_ids: no job 7NOSUCHJOB; give full ids of jobs of the site (`balsamd job ls`)\n"
    )
    assert [j.id for j in jobs_of(site_path)] == [parent]
    path.write_text(f"workdir,parents\nc/1,{parent}\n")
    hello("job", "create", "--from", str(path), "--app", "hello", "-p", "name=x")
    [child] = [j for j in jobs_of(site_path) if j.id != parent]
    assert (child.parent_ids, str(child.state)) == ([parent], "AWAITING_PARENTS")


def test_every_line_the_store_would_refuse_is_told(hello, site_path: Path, tmp_path: Path) -> None:
    lines = [{"workdir": f"runs/{n}", "parameters": {"name": "x"}} for n in range(10)]
    lines[2]["num_nodes"] = 64
    lines[4]["app"] = "nope"
    path = json_lines(tmp_path / "jobs.jsonl", lines)
    said = hello.fails("job", "create", "--from", path, "--app", "hello").splitlines()
    assert said[0] == "Error: 2 line(s) of the file are wrong; no job was created:"
    assert said[1].startswith("  line 3: ") and "num_nodes" in said[1]
    assert said[2].startswith("  line 5: unknown app 'nope'")
    assert jobs_of(site_path) == []


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "Error: the file holds no job: give one per line (JSON objects, or CSV under a header)\n"),
        ('{"workdir": "a"}\n{"workdir": \n', "line 2: not JSON"),
        ('{"workdir": "a"}\n[1]\n', "line 2: a JSON list, not an object of a job's fields"),
        ("workdir,colour\na,red\n", "line 1: unknown column(s) 'colour'; the columns are app, workdir"),
        ('{"workdir": "a", "wokdir": "b"}\n', "line 1: unknown field(s) ['wokdir']"),
    ],
)
def test_files_that_hold_no_jobs_are_refused_saying_where(hello, tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "jobs"
    path.write_text(text)
    assert said in hello.fails("job", "create", "--from", str(path), "--app", "hello")


def test_without_a_file_app_and_workdir_are_still_required(hello) -> None:
    assert "Error: Missing option '--app'." in hello.fails("job", "create", "--workdir", "w", code=2)
