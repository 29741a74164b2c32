"""The command line from a laptop: ``balsamd --central DSN ...`` works on the jobs, batch jobs,
apps and events of the sites a central user sees, through the one API, while the sites' daemons
apply what was asked.  Which site a command is about is picked with --site-name, or is the only
one; commands that only make sense at a site refuse, and errors name the central database."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from balsamd.cli import cli
from balsamd.models import BatchJobState
from tests.daemon.conftest import wait_until

from .conftest import Central, SiteMaker

MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
USAGE, REFUSED = 2, 1


class Laptop:
    """``laptop("job", "ls")`` is ``balsamd --central DSN job ls`` as a central user types it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __call__(self, *args: str, code: int = 0, env: dict[str, str] | None = None, central: bool = True) -> Result:
        argv = ["--central", self.dsn, *args] if central else list(args)
        result = CliRunner().invoke(cli, argv, prog_name="balsamd", catch_exceptions=False, env=env)
        assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}\n{result.output}"
        return result

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture(autouse=True)
def _no_central_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BALSAMD_CENTRAL", raising=False)


@pytest.fixture
def alice(central: Central) -> Laptop:
    central.add_user("alice")
    return Laptop(central.dsn_for("alice"))


def label(central: Central, user: str = "alice") -> str:
    return f"central (user {user} at 127.0.0.1:{central.server.port}/{central.dbname})"


@pytest.mark.slow
def test_a_central_user_creates_follows_kills_and_runs_jobs_from_the_command_line(
    central: Central, make_site: SiteMaker, alice: Laptop
) -> None:
    site = make_site("alpha", {"daemon.scheduler_period_sec": 0.2, "launcher.idle_ttl_sec": 1.0,
                               "launcher.mpiexec": MPIEXEC})  # fmt: skip
    site.start()
    wait_until(lambda: central.rows("SELECT 1 FROM balsamd.apps WHERE site = 'alpha'"), "the site publishes")

    assert [a["name"] for a in alice.json("app", "ls")] == ["Flaky", "Noop", "Square"]
    made = alice.json("job", "create", "--app", "Square", "--workdir", "sq/a", "-p", "x=3")
    assert (made["site"], made["state"], made["parameters"], made["owner"]) == ("alpha", "CREATED", {"x": 3}, "alice")
    square = made["id"]
    created = alice("job", "create", "--app", "Noop", "--workdir", "noop/k")
    noop = created.stdout.split()[0]
    assert created.stdout == f"{noop} CREATED Noop users/alice/noop/k\n"
    wait_until(lambda: sorted(site.jobs_by_id()) == sorted([square, noop]), "the site holds both jobs")

    listed = alice("job", "ls").stdout.splitlines()
    assert listed[0].split() == ["ID", "SITE", "STATE", "APP", "WORKDIR", "TAGS"]
    assert [line.split()[:2] for line in listed[1:]] == [[square, "alpha"], [noop, "alpha"]]
    assert [j["id"] for j in alice.json("job", "ls", "--app", "Noop")] == [noop]

    killed = alice("job", "kill", noop)
    assert killed.stdout.startswith(f"{noop} kill requested of site alpha (request ")
    assert "`balsamd job show ID`" in killed.stderr
    wait_until(lambda: [j["id"] for j in alice.json("job", "ls", "--state", "killed")] == [noop], "the kill is seen")

    batch = alice.json("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--job-mode", "serial")
    assert (batch["site"], batch["owner"], batch["state"]) == ("alpha", "alice", "pending_submission")
    assert [b["id"] for b in alice.json("queue", "ls")] == [batch["id"]]
    wait_until(lambda: alice.json("job", "ls", "--id", square)[0]["state"] == "JOB_FINISHED", "the square is done")
    shown = alice.json("job", "show", square)
    assert (shown["site"], shown["result"], shown["batch_job_id"]) == ("alpha", "{'square': 9}", batch["id"])
    wait_until(lambda: alice.json("queue", "ls", "--all")[0]["state"] == BatchJobState.FINISHED, "the batch job ends")

    changes = [(e["job_id"], e["to_state"]) for e in alice.json("events")]
    assert (noop, "KILLED") in changes and (square, "JOB_FINISHED") in changes
    assert alice("events", "--job", noop).stdout.splitlines()[0].split() == ["TIME", "JOB", "FROM", "TO", "REASON"]

    removed = alice("job", "rm", noop)
    assert removed.stdout.startswith(f"{noop} removal requested of site alpha (request ")
    wait_until(lambda: noop not in site.jobs_by_id(), "the site removes the job")


def test_a_command_about_one_site_is_told_which_when_the_user_sees_several(
    central: Central, make_site: SiteMaker, alice: Laptop
) -> None:
    for name in ("alpha", "beta"):
        make_site(name).sync()  # publishes its apps and rules

    told = alice("job", "create", "--app", "Noop", "--workdir", "w", code=USAGE)
    assert told.stderr.endswith("Error: you see 2 sites (alpha, beta); pick one with --site-name NAME\n")
    at_beta = alice.json("--site-name", "beta", "job", "create", "--app", "Noop", "--workdir", "w")
    at_alpha = alice.json("job", "create", "--app", "Noop", "--workdir", "w", "--site-name", "alpha")
    assert (at_beta["site"], at_alpha["site"]) == ("beta", "alpha")
    assert [j["id"] for j in alice.json("job", "ls")] == [at_beta["id"], at_alpha["id"]]
    assert [j["id"] for j in alice.json("job", "ls", "--site-name", "beta")] == [at_beta["id"]]
    assert alice("app", "ls", code=USAGE).stderr.endswith("pick one with --site-name NAME\n")
    assert [a["name"] for a in alice.json("app", "ls", "--site-name", "beta")] == ["Flaky", "Noop", "Square"]

    unknown = alice("--site-name", "gamma", "job", "ls", code=USAGE)
    assert unknown.stderr.endswith(
        "Error: Invalid value for --site-name: no site 'gamma' in the central database (known: alpha, beta); "
        "give one of them\n"
    )


def test_errors_name_the_central_database_and_never_its_password(central: Central, alice: Laptop) -> None:
    missing = alice("job", "show", "01NOSUCHJOB", code=REFUSED)
    assert missing.stderr == (
        f"Error: {label(central)}: no job with id 01NOSUCHJOB that you may see in the central database\n"
    )
    nowhere = Laptop("postgresql://alice:s3cret@127.0.0.1:1/nowhere")("job", "ls", code=REFUSED)
    assert nowhere.stderr.startswith(
        "Error: central (user alice at 127.0.0.1:1/nowhere): cannot reach the central database: "
    )
    assert "s3cret" not in nowhere.output


def test_a_command_without_a_remote_meaning_says_it_runs_at_the_site(alice: Laptop) -> None:
    for command in (["start"], ["launcher", "--job-mode", "serial"], ["site", "init", "x"], ["status"]):
        told = alice(*command, code=USAGE)
        assert told.stderr.endswith(
            f"Error: `balsamd {command[0]}` runs at the site, not through the central database: run it on the "
            "site's machine with --site PATH\n"
        )
    app = alice("app", "create", "x", "--command", "true", code=USAGE)
    assert "`balsamd app create` runs at the site" in app.stderr
    assert "declare the app in Python: MyApp.sync()" in app.stderr
    assert "--workdir works at the site" in alice("job", "ls", "--workdir", "a", code=USAGE).stderr


def test_the_site_or_the_central_database_is_chosen_once(central: Central, make_site: SiteMaker, alice: Laptop) -> None:
    site = make_site("alpha")
    site.sync()
    both = alice("--site", str(site.root), "job", "ls", code=USAGE)
    assert "--site (a site's directory) and --central (the central database) were both given" in both.stderr

    from_env = {"BALSAMD_CENTRAL": alice.dsn}
    assert alice("job", "ls", env=from_env, central=False).stdout == "no jobs\n"
    # an explicit --site wins over the environment, which commands that run at a site ignore
    local = alice("--site", str(site.root), "app", "ls", "--json", env=from_env, central=False)
    assert [a["name"] for a in json.loads(local.stdout)] == ["Flaky", "Noop", "Square"]
    both_env = alice("job", "ls", env={**from_env, "BALSAMD_SITE": str(site.root)}, central=False, code=USAGE)
    assert "both $BALSAMD_SITE and $BALSAMD_CENTRAL are set" in both_env.stderr
