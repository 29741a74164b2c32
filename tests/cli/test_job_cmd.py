"""``balsamd job create / ls / show / retry / kill / rm`` and ``balsamd events``."""

from __future__ import annotations

import textwrap

import pytest

import balsamd
from balsamd.models import StateUpdate
from balsamd.render import timestamp
from balsamd.results import pack_value
from balsamd.states import JobState

S = JobState
HELLO_W = ("--app", "hello", "--workdir", "w", "-p", "name=a")
NO_7ZZZ = "Error: no job with id 7ZZZ (list jobs with `balsamd job ls`)\n"


def count_jobs(run) -> int:
    with balsamd.connect(run.site) as site:
        return site.jobs.count()


def ts_of(run, job_id: str) -> str:
    with balsamd.connect(run.site) as site:
        return timestamp(site.jobs.get(job_id).created_at)


# ----- job create ---------------------------------------------------------------------


def test_job_create_prints_id_state_app_workdir(hello) -> None:
    result = hello("job", "create", "--app", "hello", "--workdir", "runs/a", "-p", "name=a")
    [job] = hello.json("job", "ls")
    assert result.stdout == f"{job['id']} PREPROCESSED hello runs/a\n"
    assert result.stderr == ""
    assert len(job["id"]) == 26


def test_job_create_json_is_one_object_with_every_field(hello) -> None:
    job = hello.json(
        "job", "create", "--app", "hello", "--workdir", "runs//b/", "-p", "name=x y", "-t", "exp=1",
        "-t", "kind=test", "--num-nodes", "2", "--ranks-per-node", "2", "--threads-per-rank", "2",
        "--node-packing-count", "1", "--wall-time-min", "30",
    )  # fmt: skip
    assert isinstance(job, dict)
    created = job.pop("created_at")
    assert job.pop("updated_at") == created
    assert job.pop("id") == hello.json("job", "ls")[0]["id"]
    assert job == {
        "app": "hello",
        "workdir": "runs/b",
        "state": "PREPROCESSED",
        "parameters": {"name": "x y"},
        "tags": {"exp": "1", "kind": "test"},
        "data": {},
        "parent_ids": [],
        "num_nodes": 2,
        "ranks_per_node": 2,
        "threads_per_rank": 2,
        "threads_per_core": 1,
        "gpus_per_rank": 0.0,
        "node_packing_count": 1,
        "wall_time_min": 30.0,
        "launch_params": {},
        "transfers": {},
        "return_code": None,
        "session_id": None,
        "batch_job_id": None,
        "attempts": 0,
        "state_reason": "",
        "version": 1,
        "owner": "",
    }


def test_job_create_with_parents_waits_for_them(hello) -> None:
    first = hello.job("p1")
    second = hello.job("p2")
    child = hello.json(
        "job", "create", "--app", "hello", "--workdir", "c", "-p", "name=c",
        "--parent", first, "--parent", second[:20].lower(),
    )  # fmt: skip
    assert child["state"] == "AWAITING_PARENTS"
    assert child["parent_ids"] == [first, second]


def test_job_create_types_values_for_python_apps(run) -> None:
    (run.site / "apps" / "sim.py").write_text(
        "from balsamd.apps import ApplicationDefinition\n\n"
        "class sim(ApplicationDefinition):\n"
        "    def run(self, x, label='none', flags=None):\n"
        "        return x\n"
    )
    job = run.json(
        "job", "create", "--app", "sim", "--workdir", "s", "-p", "x=5", "-p", "label=hello",
        "-p", "flags=[1, 2.5, true]",
    )  # fmt: skip
    assert job["parameters"] == {"x": 5, "label": "hello", "flags": [1, 2.5, True]}


def test_job_create_keeps_command_app_values_as_text(hello) -> None:
    job = hello.json("job", "create", "--app", "hello", "--workdir", "w", "-p", "name=5")
    assert job["parameters"] == {"name": "5"}


def job_create_error(run, *args: str, code: int = 1) -> str:
    stderr = run.fails("job", "create", *args, code=code)
    assert count_jobs(run) == 0
    return stderr


def test_job_create_unknown_app(hello) -> None:
    assert job_create_error(hello, "--app", "helo", "--workdir", "w") == (
        "Error: job: unknown app 'helo' (known: hello); create it with `balsamd app create helo --command ...`\n"
    )


def test_job_create_unknown_app_on_a_site_without_apps(run) -> None:
    assert job_create_error(run, "--app", "hello", "--workdir", "w") == (
        "Error: job: unknown app 'hello' (known: none yet); create it with `balsamd app create hello --command ...`\n"
    )


def test_job_create_missing_parameter(hello) -> None:
    assert job_create_error(hello, "--app", "hello", "--workdir", "w") == (
        "Error: job: missing required parameter name: add -p name=VALUE\n"
    )


def test_job_create_unknown_parameter(hello) -> None:
    assert job_create_error(hello, "--app", "hello", "--workdir", "w", "-p", "name=a", "-p", "nmae=b") == (
        "Error: job: unknown parameter(s) nmae for app hello (it takes: name); correct the name or leave it out\n"
    )


def test_job_create_absolute_workdir(hello) -> None:
    assert job_create_error(hello, "--app", "hello", "--workdir", "/tmp/w", "-p", "name=a") == (
        "Error: job: workdir '/tmp/w' is absolute; give a path relative to the site's data/\n"
    )


@pytest.mark.parametrize("workdir", ["../w", "a/../../w", "a/../b", ".."])
def test_job_create_workdir_with_dotdot(hello, workdir: str) -> None:
    assert job_create_error(hello, "--app", "hello", "--workdir", workdir, "-p", "name=a") == (
        f"Error: job: workdir {workdir!r} contains '..'; give a path inside the site's data/ directory without it\n"
    )


def test_job_create_too_many_nodes(hello) -> None:
    assert job_create_error(hello, *HELLO_W, "--num-nodes", "3") == (
        "Error: job: num_nodes=3 exceeds the site's max_nodes=2 "
        "(lower --num-nodes, or raise [nodes] max_nodes in settings.toml)\n"
    )


def test_job_create_too_many_cpus(hello) -> None:
    args = (*HELLO_W, "--ranks-per-node", "3", "--threads-per-rank", "2")
    assert job_create_error(hello, *args) == (
        "Error: job: 3 ranks x 2 threads / 1 threads per core needs 6 CPUs per node but nodes have 4 "
        "(lower --ranks-per-node or --threads-per-rank, or spread over more nodes)\n"
    )


def test_job_create_gpus_on_a_site_without_gpus(hello) -> None:
    args = ("--app", "hello", "--workdir", "w", "-p", "name=a", "--gpus-per-rank", "0.5")
    assert job_create_error(hello, *args) == (
        "Error: job: 1 ranks x 0.5 GPUs needs 0.5 GPUs per node but nodes have 0 (lower --gpus-per-rank, "
        "or set [nodes] gpus_per_node in settings.toml if the nodes have GPUs)\n"
    )


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--num-nodes", "0", "num_nodes must be a whole number from 1 to 1048576 (got 0); give one in that range"),
        (
            "--node-packing-count",
            "-1",
            "node_packing_count must be a whole number from 1 to 1048576 (got -1); give one in that range",
        ),
        ("--wall-time-min", "-5", "wall_time_min must be a finite number, 0 or more (got -5.0); give one"),
        ("--gpus-per-rank", "nan", "gpus_per_rank must be a finite number, 0 or more (got nan); give one"),
    ],
)
def test_job_create_impossible_numbers(hello, option: str, value: str, problem: str) -> None:
    args = ("--app", "hello", "--workdir", "w", "-p", "name=a", option, value)
    assert job_create_error(hello, *args) == f"Error: job: {problem}\n"


def test_job_create_longer_than_any_batch_job(hello) -> None:
    assert job_create_error(hello, *HELLO_W, "--wall-time-min", "2000") == (
        "Error: job: wall_time_min=2000 is longer than the site's longest batch job "
        "(max_wall_time_min=1440; lower --wall-time-min, or raise [scheduler] max_wall_time_min "
        "in settings.toml)\n"
    )


def test_job_create_packing_multi_node_jobs(hello) -> None:
    args = (*HELLO_W, "--num-nodes", "2", "--node-packing-count", "2")
    assert job_create_error(hello, *args) == (
        "Error: job: node_packing_count > 1 only applies to single-node jobs; set it to 1\n"
    )


def test_job_create_reports_every_problem_at_once(hello) -> None:
    args = ("--app", "hello", "--workdir", "/w", "-p", "x=1", "--num-nodes", "9")
    assert job_create_error(hello, *args) == (
        "Error: job: workdir '/w' is absolute; give a path relative to the site's data/; "
        "unknown parameter(s) x for app hello (it takes: name); correct the name or leave it out; "
        "missing required parameter name: add -p name=VALUE; "
        "num_nodes=9 exceeds the site's max_nodes=2 "
        "(lower --num-nodes, or raise [nodes] max_nodes in settings.toml)\n"
    )


@pytest.mark.parametrize(("option", "pair"), [("-p/--param", "name"), ("-p/--param", "=a"), ("-t/--tag", "novalue")])
def test_job_create_malformed_key_value(hello, option: str, pair: str) -> None:
    flag = option.split("/")[0]
    other = ("-p", "name=a") if flag == "-t" else ()
    stderr = job_create_error(hello, "--app", "hello", "--workdir", "w", *other, flag, pair, code=2)
    assert stderr.endswith(f"Error: Invalid value for {option}: {pair!r} is not KEY=VALUE\n")
    assert stderr.startswith("Usage: balsamd job create [OPTIONS]\n")


def test_job_create_same_parameter_twice(hello) -> None:
    stderr = job_create_error(hello, *HELLO_W, "-p", "name=b", code=2)
    assert stderr.endswith("Error: Invalid value for -p/--param: name is given twice; give each key once\n")


def test_job_create_unknown_parent(hello) -> None:
    stderr = job_create_error(hello, "--app", "hello", "--workdir", "w", "-p", "name=a", "--parent", "01ZZZ", code=2)
    assert stderr.endswith(
        "Error: Invalid value for --parent: no job with id 01ZZZ (list jobs with `balsamd job ls`)\n"
    )


def test_job_create_requires_app_and_workdir(hello) -> None:
    assert "Error: Missing option '--app'." in job_create_error(hello, "--workdir", "w", code=2)
    assert "Error: Missing option '--workdir'." in job_create_error(hello, "--app", "hello", code=2)


# ----- job ls -------------------------------------------------------------------------


@pytest.fixture
def three_jobs(hello) -> list[str]:
    a = hello.job("runs/a", "a", "-t", "exp=1")
    b = hello.job("runs/bb", "b", "-t", "exp=2", "-t", "size=big")
    c = hello.job("c", "c")
    hello("job", "kill", c)
    return [a, b, c]


def test_job_ls_table(hello, three_jobs) -> None:
    a, b, c = three_jobs
    assert hello("job", "ls").stdout == (
        "ID                          STATE         APP    WORKDIR  TAGS\n"
        f"{a}  PREPROCESSED  hello  runs/a   exp=1\n"
        f"{b}  PREPROCESSED  hello  runs/bb  exp=2 size=big\n"
        f"{c}  KILLED        hello  c\n"
    )


def test_job_ls_json_is_a_list_oldest_first(hello, three_jobs) -> None:
    jobs = hello.json("job", "ls")
    assert isinstance(jobs, list)
    assert [j["id"] for j in jobs] == three_jobs
    assert jobs[1]["tags"] == {"exp": "2", "size": "big"}
    assert jobs[1]["parameters"] == {"name": "b"}
    assert "result" not in jobs[0]


def test_job_ls_filters(hello, three_jobs) -> None:
    a, b, c = three_jobs
    ids = lambda *args: [j["id"] for j in hello.json("job", "ls", *args)]  # noqa: E731
    assert ids("--state", "KILLED") == [c]
    assert ids("--state", "preprocessed") == [a, b]
    assert ids("--state", "KILLED", "--state", "PREPROCESSED") == [a, b, c]
    assert ids("--tag", "exp=2") == [b]
    assert ids("--tag", "exp=2", "--tag", "size=small") == []
    assert ids("--app", "hello") == [a, b, c]
    assert ids("--app", "other") == []
    assert ids("--workdir", "runs/") == [a, b]
    assert ids("--limit", "1") == [a]
    assert ids("--id", c, "--id", a[:20]) == [a, c]


def test_job_ls_by_state(hello, three_jobs) -> None:
    by_state = hello("job", "ls", "--by-state").stdout
    assert by_state == "STATE         COUNT\nPREPROCESSED  2\nKILLED        1\n"
    assert hello.json("job", "ls", "--by-state") == {"PREPROCESSED": 2, "KILLED": 1}
    assert hello.json("job", "ls", "--by-state", "--tag", "exp=1") == {"PREPROCESSED": 1}


def test_job_ls_with_no_jobs(hello) -> None:
    assert hello("job", "ls").stdout == "no jobs\n"
    assert hello("job", "ls", "--by-state").stdout == "no jobs\n"
    assert hello.json("job", "ls") == []
    assert hello.json("job", "ls", "--by-state") == {}


def test_job_ls_bad_filters(hello) -> None:
    assert hello.fails("job", "ls", "--tag", "exp", code=2).endswith(
        "Error: Invalid value for --tag: 'exp' is not KEY=VALUE\n"
    )
    states = ", ".join(S)
    for command in (("job", "ls"), ("job", "rm")):
        stderr = hello.fails(*command, "--state", "done", code=2)
        assert stderr.endswith(f"Error: Invalid value for '--state': 'done' is not a job state; use one of {states}\n")


# ----- job show -----------------------------------------------------------------------


def test_job_show_with_its_history(hello) -> None:
    job_id = hello.job("runs/a", "a b", "-t", "k=v")
    ts = ts_of(hello, job_id)
    assert hello("job", "show", job_id).stdout == textwrap.dedent(
        f"""\
        id           {job_id}
        app          hello
        workdir      runs/a
        state        PREPROCESSED
        reason       -
        parameters   {{"name": "a b"}}
        tags         k=v
        parents      -
        resources    1 node(s) x 1 ranks x 1 threads, 0 GPUs/rank, packing 1, 0 min
        return code  -
        result       -
        attempts     0
        created      {ts}
        updated      {ts}

        TIME                 FROM       TO            REASON
        {ts}  CREATED    READY
        {ts}  READY      STAGED_IN
        {ts}  STAGED_IN  PREPROCESSED
        """
    )


def test_job_show_json_is_one_object_with_events(hello) -> None:
    job_id = hello.job("w")
    hello("job", "kill", job_id)
    job = hello.json("job", "show", job_id)
    assert isinstance(job, dict)
    assert job["id"] == job_id
    assert job["state"] == "KILLED"
    assert job["state_reason"] == "killed by user"
    assert job["result"] is None
    assert [(e["from_state"], e["to_state"], e["reason"]) for e in job["events"]] == [
        ("CREATED", "READY", ""),
        ("READY", "STAGED_IN", ""),
        ("STAGED_IN", "PREPROCESSED", ""),
        ("PREPROCESSED", "KILLED", "killed by user"),
    ]
    assert {e["job_id"] for e in job["events"]} == {job_id}


def test_job_show_accepts_a_unique_prefix_in_any_case(hello) -> None:
    job_id = hello.job("w")
    assert hello.json("job", "show", job_id[:22].lower())["id"] == job_id


def test_job_show_unknown_id(hello) -> None:
    hello.job("w")
    assert hello.fails("job", "show", "7ZZZZZ") == ("Error: no job with id 7ZZZZZ (list jobs with `balsamd job ls`)\n")


def test_errors_name_the_site_they_come_from(hello) -> None:
    result = hello("job", "show", "7ZZZZZ", code=1)
    assert result.stderr == f"Error: site {hello.site}: no job with id 7ZZZZZ (list jobs with `balsamd job ls`)\n"


def test_job_show_ambiguous_prefix(hello) -> None:
    first, second = hello.job("a"), hello.job("b")
    common = next(i for i in range(26) if first[i] != second[i])
    prefix = first[:common]
    assert hello.fails("job", "show", prefix) == (
        f"Error: id prefix {prefix} matches several jobs; give more characters\n"
    )


# ----- job kill / retry ---------------------------------------------------------------


def test_job_kill(hello) -> None:
    a, b = hello.job("a"), hello.job("b")
    result = hello("job", "kill", a, b[:24])
    assert result.stdout == f"{a} KILLED\n{b} KILLED\n"
    assert hello.json("job", "ls", "--by-state") == {"KILLED": 2}


def test_job_kill_the_same_job_twice_in_one_call(hello) -> None:
    a = hello.job("a")
    assert hello("job", "kill", a, a[:24]).stdout == f"{a} KILLED\n"


def test_job_kill_of_a_killed_job_changes_nothing(hello) -> None:
    a, b = hello.job("a"), hello.job("b")
    hello("job", "kill", a)
    assert hello.fails("job", "kill", b, a) == (
        f"Error: job {a} is KILLED: a finished or killed job cannot be killed "
        f"(remove it with `balsamd job rm {a}`); no job was changed\n"
    )
    assert hello.json("job", "show", b)["state"] == "PREPROCESSED"


def test_job_kill_unknown_id(hello) -> None:
    assert hello.fails("job", "kill", "7ZZZ") == NO_7ZZZ


def test_job_kill_needs_an_id(hello) -> None:
    assert "Error: Missing argument 'JOB_IDS...'." in hello.fails("job", "kill", code=2)


HOOKED_APP = """\
from balsamd.apps import ApplicationDefinition
from balsamd.states import JobState


class careful(ApplicationDefinition):
    command_template = "false"

    def handle_error(self):
        self.job.state = JobState.FAILED

    def handle_timeout(self):
        self.job.state = JobState.FAILED
"""


@pytest.mark.parametrize("reported", [S.RUN_ERROR, S.RUN_TIMEOUT])
def test_job_retry_from_run_error_and_run_timeout(run, run_to, reported: JobState) -> None:
    (run.site / "apps" / "careful.py").write_text(HOOKED_APP)
    job_id = run.json("job", "create", "--app", "careful", "--workdir", "w")["id"]
    assert run_to(job_id, reported) == reported  # the app's hook decides later
    assert run("job", "retry", job_id).stdout == f"{job_id} RESTART_READY\n"
    assert run.json("job", "show", job_id)["events"][-1]["reason"] == "retried by user"


def test_job_retry_from_failed(hello, run_to) -> None:
    job_id = hello.job("w")
    assert run_to(job_id, S.RUN_ERROR) == S.FAILED
    assert hello("job", "retry", job_id).stdout == f"{job_id} RESTART_READY\n"
    assert hello.json("job", "show", job_id)["state"] == "RESTART_READY"


def test_job_retry_of_a_job_that_did_not_fail(hello) -> None:
    job_id = hello.job("w")
    assert hello.fails("job", "retry", job_id) == (
        f"Error: job {job_id} is PREPROCESSED: only FAILED, RUN_ERROR or RUN_TIMEOUT jobs can be "
        "retried; no job was changed\n"
    )


def test_job_retry_unknown_id(hello) -> None:
    assert hello.fails("job", "retry", "7ZZZ") == NO_7ZZZ


# ----- job rm -------------------------------------------------------------------------


def test_job_rm_removes_jobs_and_their_history(hello) -> None:
    a, b = hello.job("a"), hello.job("b")
    result = hello("job", "rm", a)
    assert result.stdout == "removed 1 job(s)\n"
    assert result.stderr == ""
    assert [j["id"] for j in hello.json("job", "ls")] == [b]
    assert {e["job_id"] for e in hello.json("events")} == {b}


def test_job_rm_by_state(hello) -> None:
    a, b, c = hello.job("a"), hello.job("b"), hello.job("c")
    hello("job", "kill", a, c)
    assert hello("job", "rm", "--state", "KILLED").stdout == "removed 2 job(s)\n"
    assert [j["id"] for j in hello.json("job", "ls")] == [b]
    assert hello("job", "rm", "--state", "KILLED").stdout == "removed 0 job(s)\n"


def test_job_rm_says_which_jobs_it_could_not_remove_and_why(hello, hold) -> None:
    held, free = hello.job("held"), hello.job("free")
    session = hold(held)
    result = hello("job", "rm", held, free, code=1)
    assert result.stdout == "removed 1 job(s)\n"
    assert result.stderr == (
        f"not removed {held}: held by launcher session {session.id} (PREPROCESSED); "
        f"kill it first with `balsamd job kill {held}`\n"
    )
    assert [j["id"] for j in hello.json("job", "ls")] == [held]
    hello("job", "kill", held)
    assert hello("job", "rm", held).stdout == "removed 1 job(s)\n"


def test_job_rm_refuses_a_parent_of_unfinished_jobs(hello) -> None:
    parent = hello.job("p")
    child = hello.job("c", "c", "--parent", parent)
    result = hello("job", "rm", parent, code=1)
    assert result.stdout == "removed 0 job(s)\n"
    assert result.stderr == (
        f"not removed {parent}: 1 unfinished child job(s) depend on it (e.g. {child}); remove or kill them too\n"
    )
    assert hello("job", "rm", parent, child).stdout == "removed 2 job(s)\n"


def test_job_rm_needs_ids_or_a_state(hello) -> None:
    a = hello.job("a")
    for args in ((), (a, "--state", "KILLED")):
        stderr = hello.fails("job", "rm", *args, code=2)
        assert stderr.endswith("Error: give job IDs, --state STATE / --tag KEY=VALUE, or --all (one of them)\n")
    assert count_jobs(hello) == 1


def test_job_rm_unknown_id_removes_nothing(hello) -> None:
    a = hello.job("a")
    assert hello.fails("job", "rm", a, "7ZZZ") == NO_7ZZZ
    assert count_jobs(hello) == 1


# ----- events -------------------------------------------------------------------------


def test_events_table_and_filter(hello) -> None:
    a, b = hello.job("a"), hello.job("b")
    hello("job", "kill", b)
    ta, tb = ts_of(hello, a), ts_of(hello, b)
    with balsamd.connect(hello.site) as site:
        tk = timestamp(site.jobs.get(b).updated_at)
    assert hello("events").stdout == (
        "TIME                 JOB                         FROM          TO            REASON\n"
        f"{ta}  {a}  CREATED       READY\n"
        f"{ta}  {a}  READY         STAGED_IN\n"
        f"{ta}  {a}  STAGED_IN     PREPROCESSED\n"
        f"{tb}  {b}  CREATED       READY\n"
        f"{tb}  {b}  READY         STAGED_IN\n"
        f"{tb}  {b}  STAGED_IN     PREPROCESSED\n"
        f"{tk}  {b}  PREPROCESSED  KILLED        killed by user\n"
    )
    events = hello.json("events", "--job", b)
    assert isinstance(events, list)
    assert [(e["job_id"], e["to_state"]) for e in events] == [
        (b, "READY"), (b, "STAGED_IN"), (b, "PREPROCESSED"), (b, "KILLED"),
    ]  # fmt: skip
    assert set(events[0]) == {"id", "job_id", "from_state", "to_state", "ts", "reason"}
    assert hello("events", "--job", a[:24].lower()).stdout.count(a) == 3


def test_events_with_no_events(hello) -> None:
    assert hello("events").stdout == "no events\n"
    assert hello.json("events") == []


def test_events_of_an_unknown_job(hello) -> None:
    assert hello.fails("events", "--job", "7ZZZ") == ("Error: no job with id 7ZZZ (list jobs with `balsamd job ls`)\n")


def test_job_retry_of_a_child_whose_parent_was_killed(hello) -> None:
    parent = hello.job("p")
    child = hello.job("c", "c", "--parent", parent)
    hello("job", "kill", parent)
    assert hello.json("job", "show", child)["state"] == "FAILED"
    stderr = hello.fails("job", "retry", child)
    assert stderr.startswith(f"Error: job {child}: parent {parent} is KILLED")
    assert hello.json("job", "show", child)["state"] == "FAILED"


def test_job_show_of_a_finished_python_app_shows_its_result(run, hold) -> None:
    (run.site / "apps" / "sim.py").write_text(
        "from balsamd.apps import ApplicationDefinition\n\n"
        "class sim(ApplicationDefinition):\n"
        "    def run(self, x):\n"
        "        return {'x': x}\n"
    )
    job_id = run.json("job", "create", "--app", "sim", "--workdir", "s", "-p", "x=3")["id"]
    session = hold(job_id)
    with balsamd.connect(run.site) as site:
        site.store.update_states(
            session.id,
            [
                StateUpdate(job_id=job_id, state=S.RUNNING, ts=1.0),
                StateUpdate(job_id=job_id, state=S.RUN_DONE, ts=2.0, return_code=0, result=pack_value({"x": 3})),
            ],
        )
    shown = run("job", "show", job_id).stdout
    assert "\nstate        JOB_FINISHED\n" in shown
    assert "\nreturn code  0\n" in shown
    assert "\nresult       {'x': 3}\n" in shown
    assert "\nattempts     1\n" in shown
    data = run.json("job", "show", job_id)
    assert (data["state"], data["return_code"], data["result"]) == ("JOB_FINISHED", 0, "{'x': 3}")


def test_job_show_puts_a_multi_line_reason_below_the_table(hello, site_path, hold) -> None:
    job_id = hello.job("w")
    session = hold(job_id)
    with balsamd.connect(site_path) as s:
        s.store.update_states(
            session.id,
            [
                StateUpdate(job_id=job_id, state=JobState.RUNNING, ts=1.0),
                StateUpdate(job_id=job_id, state=JobState.RUN_ERROR, ts=2.0, return_code=2, reason="exit code 2\nboom"),
            ],
        )
    out = hello("job", "show", job_id).stdout
    assert "reason       (below)" in out
    assert "\nreason:\n  exit code 2\n  boom\n" in out
