"""Bad input typed at the command line: a clear error, a non-zero exit, nothing written.

Every case runs ``balsamd --site SITE ARGS...`` in-process on one site shared by the module (a
case that wrote anything would fail itself, so sharing is safe); a few run ``python -m balsamd``
in a real process, for the exit code a shell sees.  A usage error exits 2, a refused request 1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from balsamd.cli import cli
from balsamd.site import init_site
from tests.bad_input.table import Case, Snapshot, assert_told, case, params
from tests.cli.conftest import set_nodes
from tests.daemon.conftest import child_env

USAGE, REFUSED = 2, 1
CREATE = ("job", "create", "--app", "hello", "--workdir", "w", "-p", "name=a")
SITE = "{site}"  # stands for the site's path in an argument
MOVES = ("job", "create", "--app", "moves", "--workdir", "w")
MOVES_APP = """\
from balsamd.apps import ApplicationDefinition


class moves(ApplicationDefinition):
    command_template = "true"
    transfers = {"input": {"direction": "in", "local_path": "in.dat", "required": True}}
"""

CASES = [
    # job create: options of the request
    case("launch-param-with-a-space", (*CREATE, "--launch-param", "a b=1"), REFUSED, "launch parameter 'a b'", "give"),
    case("launch-param-without-value", (*CREATE, "--launch-param", "cpu-bind"), USAGE, "--launch-param", "KEY=VALUE"),
    case("launch-param-not-allowed", (*CREATE, "--launch-param", "outfile-pattern=x"), REFUSED, "outfile-pattern"),
    case("launch-param-nul", (*CREATE, "--launch-param", "cpu-bind=a\0b"), REFUSED, "NUL", "cpu-bind"),
    case("transfer-slot-unknown", (*CREATE, "--transfer", "input=far:/a"), REFUSED, "no transfer slot 'input'"),
    case("transfer-required-missing", MOVES, REFUSED, "missing required slot input", "--transfer input="),
    case("transfer-without-equals", (*MOVES, "--transfer", "input"), USAGE, "--transfer", "KEY=VALUE"),
    case("transfer-no-location", (*MOVES, "--transfer", "input=/a"), REFUSED, "LOCATION:PATH"),
    case("transfer-location-unknown", (*MOVES, "--transfer", "input=near:/a"), REFUSED, "'near'", "locations: far"),
    case("transfer-path-relative", (*MOVES, "--transfer", "input=far:a"), REFUSED, "not absolute"),
    case("transfer-path-climbs-out", (*MOVES, "--transfer", "input=far:/in/../../x"), REFUSED, "'..'", "base"),
    case("transfer-path-nul", (*MOVES, "--transfer", "input=far:/a\0b"), REFUSED, "transfers['input']", "NUL"),
    case("param-without-equals", (*CREATE, "-p", "oops"), USAGE, "--param", "KEY=VALUE"),
    case("param-unknown", (*CREATE, "-p", "colour=red"), REFUSED, "colour"),
    case("param-given-twice", (*CREATE, "-p", "name=b"), USAGE, "name", "twice"),
    case("param-nul", ("job", "create", "--app", "hello", "--workdir", "w", "-p", "name=a\0b"), REFUSED, "NUL", "name"),
    case("tag-with-a-space", (*CREATE, "--tag", "a b=c"), REFUSED, "tag key 'a b'", "KEY=VALUE"),
    case("tag-without-equals", (*CREATE, "--tag", "ab"), USAGE, "--tag", "KEY=VALUE"),
    case("tag-empty-key", (*CREATE, "--tag", "=c"), USAGE, "--tag"),
    case("tag-nul", (*CREATE, "--tag", "a=b\0"), REFUSED, "tags['a']", "NUL"),
    case("tag-newline-in-key", (*CREATE, "--tag", "a\nb=c"), REFUSED, "tag key", "one word"),
    case(
        "workdir-absolute",
        ("job", "create", "--app", "hello", "--workdir", "/etc", "-p", "name=a"),
        REFUSED,
        "workdir '/etc'",
        "relative",
    ),
    case(
        "workdir-climbs-out",
        ("job", "create", "--app", "hello", "--workdir", "../x", "-p", "name=a"),
        REFUSED,
        "workdir",
        "'..'",
    ),
    case(
        "workdir-empty",
        ("job", "create", "--app", "hello", "--workdir", "", "-p", "name=a"),
        REFUSED,
        "workdir is empty",
    ),
    case(
        "workdir-nul",
        ("job", "create", "--app", "hello", "--workdir", "a\0b", "-p", "name=a"),
        REFUSED,
        "workdir",
        "NUL",
    ),
    case(
        "workdir-users",
        ("job", "create", "--app", "hello", "--workdir", "users/x", "-p", "name=a"),
        REFUSED,
        "workdir 'users/x'",
        "central users",
    ),
    case(
        "app-unknown", ("job", "create", "--app", "nope", "--workdir", "w"), REFUSED, "unknown app 'nope'", "app create"
    ),
    case("app-nul", ("job", "create", "--app", "he\0llo", "--workdir", "w"), REFUSED, "app", "NUL"),
    case("num-nodes-zero", (*CREATE, "--num-nodes", "0"), REFUSED, "num_nodes", "from 1"),
    case("num-nodes-too-many", (*CREATE, "--num-nodes", "3"), REFUSED, "num_nodes", "max_nodes"),
    case("num-nodes-word", (*CREATE, "--num-nodes", "two"), USAGE, "--num-nodes", "'two'"),
    case("num-nodes-huge", (*CREATE, "--num-nodes", str(2**70)), REFUSED, "num_nodes"),
    case("ranks-negative", (*CREATE, "--ranks-per-node", "-4"), REFUSED, "ranks_per_node"),
    case("threads-zero", (*CREATE, "--threads-per-rank", "0"), REFUSED, "threads_per_rank"),
    case("gpus-nan", (*CREATE, "--gpus-per-rank", "nan"), REFUSED, "gpus_per_rank", "finite"),
    case("gpus-inf", (*CREATE, "--gpus-per-rank", "inf"), REFUSED, "gpus_per_rank", "finite"),
    case("gpus-more-than-a-node", (*CREATE, "--gpus-per-rank", "1"), REFUSED, "gpu"),
    case("wall-time-negative", (*CREATE, "--wall-time-min", "-5"), REFUSED, "wall_time_min"),
    case("wall-time-word", (*CREATE, "--wall-time-min", "soon"), USAGE, "--wall-time-min"),
    case("parent-unknown", (*CREATE, "--parent", "ABC"), USAGE, "--parent", "ABC", "job ls"),
    case("parent-empty", (*CREATE, "--parent", " "), USAGE, "--parent", "empty"),
    case("node-packing-zero", (*CREATE, "--node-packing-count", "0"), REFUSED, "node_packing_count"),
    # listing and looking
    case("ls-limit-negative", ("job", "ls", "--limit", "-1"), USAGE, "--limit", "-1"),
    case("ls-limit-word", ("job", "ls", "--limit", "ten"), USAGE, "--limit"),
    case("ls-limit-with-by-state", ("job", "ls", "--limit", "2", "--by-state"), USAGE, "--limit", "--by-state"),
    case("ls-state-unknown", ("job", "ls", "--state", "DONE"), USAGE, "--state", "DONE"),
    case("ls-tag-without-equals", ("job", "ls", "--tag", "x"), USAGE, "--tag", "KEY=VALUE"),
    case("events-limit-negative", ("events", "--limit", "-1"), USAGE, "--limit", "-1"),
    case("show-unknown", ("job", "show", "ZZZZ"), REFUSED, "ZZZZ"),
    case("kill-unknown", ("job", "kill", "ZZZZ"), REFUSED, "ZZZZ"),
    case("retry-unknown", ("job", "retry", "ZZZZ"), REFUSED, "ZZZZ"),
    case("rm-unknown", ("job", "rm", "ZZZZ"), REFUSED, "ZZZZ"),
    # apps
    case("app-name-with-a-dash", ("app", "create", "my-app", "--command", "true"), REFUSED, "my-app"),
    case("app-template-nul", ("app", "create", "x", "--command", "echo \0"), REFUSED, "NUL"),
    case(
        "app-template-broken-placeholder", ("app", "create", "x", "--command", "echo {{ a b }}"), REFUSED, "placeholder"
    ),
    # batch jobs
    case("submit-nodes-zero", ("queue", "submit", "--num-nodes", "0", "--wall-time-min", "30"), REFUSED, "--num-nodes"),
    case(
        "submit-queue-with-a-line",
        ("queue", "submit", "--num-nodes", "1", "--wall-time-min", "30", "--queue", "a\n#SBATCH x"),
        REFUSED,
        "queue",
    ),
    case(
        "submit-tag-with-a-space",
        ("queue", "submit", "--num-nodes", "1", "--wall-time-min", "30", "--tag", "a b=c"),
        REFUSED,
        "tag key 'a b'",
    ),
    # the launcher's flags
    case(
        "launcher-wall-time-nan",
        ("launcher", "--job-mode", "serial", "--wall-time-min", "nan"),
        USAGE,
        "--wall-time-min",
        "finite",
    ),
    case(
        "launcher-wall-time-zero",
        ("launcher", "--job-mode", "serial", "--wall-time-min", "0"),
        USAGE,
        "--wall-time-min",
    ),
    case("launcher-idle-negative", ("launcher", "--job-mode", "serial", "--idle-ttl", "-1"), USAGE, "--idle-ttl"),
    case("launcher-idle-inf", ("launcher", "--job-mode", "serial", "--idle-ttl", "inf"), USAGE, "--idle-ttl", "finite"),
    case("launcher-mode-unknown", ("launcher", "--job-mode", "fast"), USAGE, "--job-mode", "fast"),
    case("launcher-tag-without-equals", ("launcher", "--job-mode", "serial", "--tag", "x"), USAGE, "--tag"),
    # site init: refused before anything is made, here under the site, which must stay as it is
    case(
        "init-central-hello",
        ("site", "init", f"{SITE}/new", "--central", "hello"),
        USAGE,
        "--central",
        "DSN",
        "postgresql://",
    ),
    case(
        "init-central-scheme",
        ("site", "init", f"{SITE}/new", "--central", "mysql://h/db"),
        USAGE,
        "--central",
        "'mysql'",
    ),
    case(
        "init-central-newline",
        ("site", "init", f"{SITE}/new", "--central", "host=h\ndbname=x"),
        USAGE,
        "--central",
        "control character",
    ),
    case("init-central-keyword", ("site", "init", f"{SITE}/new", "--central", "hots=h"), USAGE, "--central", "'hots'"),
    case(
        "init-central-quote",
        ("site", "init", f"{SITE}/new", "--central", "host='h"),
        USAGE,
        "--central",
        "never closed",
    ),
    case("init-name-space", ("site", "init", f"{SITE}/new", "--name", "my site"), REFUSED, "site name", "--name"),
    case("init-name-quote", ("site", "init", f"{SITE}/new", "--name", 'a"b'), REFUSED, "site name", "--name"),
    case("init-name-newline", ("site", "init", f"{SITE}/new", "--name", "a\nb"), REFUSED, "site name", "--name"),
    case("init-name-long", ("site", "init", f"{SITE}/new", "--name", "n" * 65), REFUSED, "site name", "1-64"),
    case("init-a-site", ("site", "init", SITE), REFUSED, "already a balsamd site", "--site"),
    case("init-scheduler-unknown", ("site", "init", f"{SITE}/new", "--scheduler", "condor"), USAGE, "--scheduler"),
    # the central commands: the DSN is checked before any connection is tried
    case("central-init-hello", ("central", "init", "hello"), USAGE, "DSN", "postgresql://"),
    case("central-add-site-hello", ("central", "add-site", "hello", "theta"), USAGE, "DSN", "postgresql://"),
    case("central-add-user-hello", ("central", "add-user", "hello", "ann"), USAGE, "DSN", "postgresql://"),
    case("central-init-empty", ("central", "init", ""), USAGE, "DSN", "empty"),
    # working through the central database instead of the site (each case also names --site)
    case("central-not-a-dsn", ("--central", "hello", "job", "ls"), USAGE, "--central", "postgresql://"),
    case("central-newline", ("--central", "host=h\nuser=u", "job", "ls"), USAGE, "--central", "control character"),
    case(
        "central-and-site",
        ("--central", "postgresql://ann@127.0.0.1:1/central", "job", "ls"),
        USAGE,
        "--site",
        "--central",
        "give one",
    ),
]

# a few as a shell runs them: the exit code of a real process
PROCESS_CASES = [
    case("process-limit-negative", ("job", "ls", "--limit", "-1"), USAGE, "--limit"),
    case("process-launch-param", (*CREATE, "--launch-param", "a b=1"), REFUSED, "launch parameter 'a b'"),
    case("process-central-hello", ("central", "init", "hello"), USAGE, "DSN"),
    case("process-central-and-site", ("--central", "postgresql://ann@127.0.0.1:1/c", "events"), USAGE, "--central"),
    case("process-app-unknown", ("job", "create", "--app", "nope", "--workdir", "w"), REFUSED, "unknown app"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = init_site(tmp_path_factory.mktemp("cli") / "site", name="badinput").root
    set_nodes(root, gpus=0)
    text = (root / "settings.toml").read_text()
    text = text.replace("allowed_launch_params = []", 'allowed_launch_params = ["cpu-bind"]')
    (root / "settings.toml").write_text(text.replace('# far = "file:///data/far"', 'far = "file:///data/far"'))
    (root / "apps" / "moves.py").write_text(MOVES_APP)
    assert balsamd_cli(root, "app", "create", "hello", "--command", "echo {{ name }}").exit_code == 0
    yield root


def balsamd_cli(root: Path, *args: str) -> Result:
    argv = ["--site", str(root), *(a.replace(SITE, str(root)) for a in args)]
    return CliRunner().invoke(cli, argv, prog_name="balsamd", catch_exceptions=False)


@pytest.mark.parametrize("bad", params(CASES))
def test_a_bad_command_line_is_refused_and_changes_nothing(site: Path, bad: Case) -> None:
    before = Snapshot.of(site)
    result = balsamd_cli(site, *bad.given)
    assert (result.exit_code, result.stdout) == (bad.error, ""), result.output
    assert_told(result.stderr, bad.words)
    assert Snapshot.of(site) == before
    assert not (site / "new").exists()
    assert balsamd_cli(site, "job", "ls").exit_code == 0


@pytest.mark.parametrize("bad", params(PROCESS_CASES))
def test_a_bad_command_line_exits_non_zero_from_a_shell(site: Path, bad: Case) -> None:
    before = Snapshot.of(site)
    done = subprocess.run(
        [sys.executable, "-m", "balsamd", "--site", str(site), *bad.given],
        capture_output=True, text=True, env=child_env(), timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (bad.error, ""), done.stderr
    assert_told(done.stderr, bad.words)
    assert "Traceback" not in done.stderr
    assert Snapshot.of(site) == before
