"""``balsamd job rm --tag/--all``, ``job modify``, ``job dep`` and ``job ls --tree``."""

from __future__ import annotations

import os
import subprocess
import sys

import balsamd
from balsamd.states import JobState
from tests.daemon.conftest import child_env


def ids_of(run) -> list[str]:
    return [j["id"] for j in run.json("job", "ls")]


# ----- job rm --tag / --all ---------------------------------------------------------------------


def test_rm_by_tag_needs_yes_when_nobody_can_be_asked(hello) -> None:
    a = hello.job("a", "a", "-t", "exp=1")
    hello.job("b", "b", "-t", "exp=1")
    keep = hello.job("c", "c", "-t", "exp=2")
    assert hello.fails("job", "rm", "--tag", "exp=1") == (
        "Error: this removes 2 job(s) (jobs tagged exp=1) and nobody can be asked (stdin is not a terminal); "
        "add --yes to remove them\n"
    )
    assert len(ids_of(hello)) == 3
    assert hello("job", "rm", "--tag", "exp=1", "--yes").stdout == "removed 2 job(s)\n"
    assert ids_of(hello) == [keep]
    assert a not in ids_of(hello)


def test_rm_all_and_state_with_tag(hello) -> None:
    hello.job("a", "a", "-t", "exp=1")
    killed = hello.job("b", "b", "-t", "exp=1")
    hello("job", "kill", killed)
    assert hello("job", "rm", "--state", "KILLED", "--tag", "exp=1", "--yes").stdout == "removed 1 job(s)\n"
    hello.job("c", "c")
    assert hello("job", "rm", "--all", "--yes").stdout == "removed 2 job(s)\n"
    assert ids_of(hello) == []
    # nothing selected: nothing to ask about
    assert hello("job", "rm", "--all").stdout == "removed 0 job(s)\n"


def test_rm_takes_one_kind_of_selection(hello) -> None:
    job = hello.job("a")
    for args in ((), (job, "--all"), ("--all", "--tag", "a=b"), (job, "--state", "KILLED")):
        err = hello.fails("job", "rm", *args, code=2)
        assert err.endswith("Error: give job IDs, --state STATE / --tag KEY=VALUE, or --all (one of them)\n")


def at_a_terminal(site, args: list[str], answer: str) -> str:
    """Run ``balsamd --site SITE ARGS`` with a terminal as stdin and stdout, typing ``answer``."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "balsamd", "--site", str(site), *args],
        stdin=follower, stdout=follower, stderr=follower, env=child_env(), close_fds=True,
    )  # fmt: skip
    os.close(follower)
    out = b""
    while b"[y/N]" not in out:
        out += os.read(leader, 4096)
    os.write(leader, answer.encode() + b"\n")
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=60) is not None
    os.close(leader)
    return out.decode().replace("\r\n", "\n")


def test_rm_all_at_a_terminal_asks_how_many_first(hello) -> None:
    hello.job("a")
    hello.job("b")
    said = at_a_terminal(hello.site, ["job", "rm", "--all"], "n")
    assert said.startswith("Remove 2 job(s) (every job) and their history? [y/N]: n\n")
    assert "nothing was removed" in said
    assert len(ids_of(hello)) == 2
    said = at_a_terminal(hello.site, ["job", "rm", "--all"], "y")
    assert said.endswith("removed 2 job(s)\n")
    with balsamd.connect(hello.site) as site:
        assert site.jobs.count() == 0


# ----- job modify -------------------------------------------------------------------------------


def test_modify_changes_resources_parameters_and_tags_of_jobs_not_started(hello) -> None:
    a = hello.job("a", "x", "-t", "exp=1", "-t", "keep=me")
    b = hello.job("b", "y")
    result = hello("job", "modify", a, b, "--num-nodes", "2", "--ranks-per-node", "2", "--wall-time-min", "12.5",
                   "-p", "name=z", "-t", "exp=2")  # fmt: skip
    assert result.stdout == f"{a} modified\n{b} modified\n"
    [ja, jb] = hello.json("job", "ls")
    assert (ja["num_nodes"], ja["ranks_per_node"], ja["wall_time_min"]) == (2, 2, 12.5)
    assert (ja["parameters"], ja["tags"]) == ({"name": "z"}, {"exp": "2", "keep": "me"})
    assert (jb["parameters"], jb["tags"]) == ({"name": "z"}, {"exp": "2"})


def test_modify_refuses_a_running_job_and_changes_none(hello, run_to, hold) -> None:
    free = hello.job("a")
    held = hello.job("b")
    session = hold(held)
    err = hello.fails("job", "modify", free, held, "--num-nodes", "2")
    assert err == (
        f"Error: job {held} is PREPROCESSED (claimed by launcher session {session.id}); only jobs that have not "
        "started can be edited; no job was edited\n"
    )
    assert [j["num_nodes"] for j in hello.json("job", "ls")] == [1, 1]
    done = hello.job("c")
    assert run_to(done, JobState.RUN_DONE) == JobState.JOB_FINISHED
    err = hello.fails("job", "modify", done, "-p", "name=q")
    assert f"job {done} is JOB_FINISHED; only jobs that have not started can be edited" in err


def test_modify_checks_the_new_resources_against_the_site(hello) -> None:
    job = hello.job("a")
    err = hello.fails("job", "modify", job, "--num-nodes", "3")
    assert err == (
        f"Error: job {job}: num_nodes=3 exceeds the site's max_nodes=2 (lower --num-nodes, or raise [nodes] "
        "max_nodes in settings.toml)\n"
    )
    assert "Error: give what to change" in hello.fails("job", "modify", job, code=2)
    assert "Error: Invalid value for '--num-nodes'" in hello.fails("job", "modify", job, "--num-nodes", "0", code=2)


# ----- job dep --------------------------------------------------------------------------------------


def test_dep_makes_a_job_wait_for_new_parents(hello, run_to) -> None:
    parent = hello.job("p")
    child = hello.job("c")
    result = hello("job", "dep", child[:12], parent)
    assert result.stdout == f"{child} AWAITING_PARENTS parents: {parent}\n"
    assert [j["id"] for j in hello.json("job", "ls", "--parent", parent)] == [child]
    assert run_to(parent, JobState.RUN_DONE) == JobState.JOB_FINISHED
    assert hello.json("job", "show", child)["state"] == "PREPROCESSED"


def test_dep_refusals_say_why(hello, run_to) -> None:
    a = hello.job("a")
    b = hello.job("b")
    hello("job", "dep", b, a)
    assert hello.fails("job", "dep", a, b) == (
        f"Error: job {a} cannot wait for {b}: {a} -> {b} -> {a} would be a cycle of jobs waiting for each other\n"
    )
    assert hello.fails("job", "dep", a, "7ZZZ") == "Error: no job with id 7ZZZ (list jobs with `balsamd job ls`)\n"
    assert "Missing argument 'PARENTS...'" in hello.fails("job", "dep", a, code=2)
    assert run_to(a, JobState.RUN_DONE) == JobState.JOB_FINISHED
    c = hello.job("c")
    assert hello.fails("job", "dep", a, c) == (
        f"Error: job {a} is JOB_FINISHED; only a job that has not started can get parents\n"
    )


# ----- job ls --tree ----------------------------------------------------------------------------


def dag(hello) -> dict[str, str]:
    """root -> a, b; a and b -> c (a fan-in); c -> d; and a job of its own."""
    made: dict[str, str] = {}
    for name, parents in (("root", []), ("a", ["root"]), ("b", ["root"]), ("c", ["a", "b"]), ("d", ["c"]),
                          ("solo", [])):  # fmt: skip
        extra = [arg for p in parents for arg in ("--parent", made[p])]
        made[name] = hello.job(name, name, "-t", f"leaf={name in ('d', 'solo')}", *extra)
    return made


def test_tree_shows_children_under_parents_and_a_fan_in_once(hello) -> None:
    j = dag(hello)
    out = hello("job", "ls", "--tree").stdout
    assert out == (
        "ID                                   STATE             APP    WORKDIR\n"
        f"{j['root']}           PREPROCESSED      hello  root\n"
        f"├─ {j['a']}        AWAITING_PARENTS  hello  a\n"
        f"│  └─ {j['c']}     AWAITING_PARENTS  hello  c\n"
        f"│     └─ {j['d']}  AWAITING_PARENTS  hello  d\n"
        f"└─ {j['b']}        AWAITING_PARENTS  hello  b\n"
        f"   └─ {j['c']}     (shown above)\n"
        f"{j['solo']}           PREPROCESSED      hello  solo\n"
    )


def test_tree_keeps_to_the_filters_and_nests_json(hello) -> None:
    j = dag(hello)
    out = hello("job", "ls", "--tree", "--state", "AWAITING_PARENTS", "--tag", "leaf=False").stdout
    assert out.splitlines()[1:] == [
        f"{j['a']}     AWAITING_PARENTS  hello  a",
        f"└─ {j['c']}  AWAITING_PARENTS  hello  c",
        f"{j['b']}     AWAITING_PARENTS  hello  b",
        f"└─ {j['c']}  (shown above)",
    ]
    [root, solo] = hello.json("job", "ls", "--tree")
    assert (root["workdir"], solo["workdir"], solo["children"]) == ("root", "solo", [])
    [a, b] = root["children"]
    assert [c["workdir"] for c in a["children"]] == ["c"]
    assert b["children"] == [{"id": j["c"], "shown_above": True}]
    assert hello("job", "ls", "--tree", "--app", "nothing").stdout == "no jobs\n"
    assert "give one of them" in hello.fails("job", "ls", "--tree", "--by-state", code=2)
