"""A bad settings.toml: every command that reads it refuses with file, line, key and what to do.

Each case edits the settings of one site shared by the module (keys set to raw TOML text, or
the whole file replaced by bytes or by something that is no file), runs ``job ls`` and ``sync
--once`` on it, and puts the file back.  The site's rows and other files stay as they were, the
bad file stays as it was written (nothing rewrites it), and the site works again once restored.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.site import init_site
from tests.bad_input.table import Case, Snapshot, assert_told, case, params
from tests.bad_input.test_cli import balsamd_cli

REFUSED = 1
# whole files, or no file at all
DIRECTORY, PIPE, LOOP = "a directory", "a named pipe", "a symlink to itself"

CASES = [
    # [launcher]
    case(
        "heartbeat-not-below-expiry",
        {"launcher.heartbeat_sec": "300.0"},
        REFUSED,
        "heartbeat_sec",
        "session_expiry_sec",
        "fraction",
    ),
    case(
        "heartbeat-above-expiry",
        {"launcher.heartbeat_sec": "10.0", "launcher.session_expiry_sec": "5.0"},
        REFUSED,
        "heartbeat_sec",
    ),
    case("heartbeat-nan", {"launcher.heartbeat_sec": "nan"}, REFUSED, "heartbeat_sec"),
    case("heartbeat-inf", {"launcher.heartbeat_sec": "inf"}, REFUSED, "heartbeat_sec"),
    case("heartbeat-zero", {"launcher.heartbeat_sec": "0.0"}, REFUSED, "heartbeat_sec", "at least"),
    case("mpiexec-empty", {"launcher.mpiexec": '""'}, REFUSED, "launcher.mpiexec", "MPI launcher"),
    case("mpiexec-with-options", {"launcher.mpiexec": '"mpiexec -n 4"'}, REFUSED, "launcher.mpiexec", "one word"),
    case("mpiexec-newline", {"launcher.mpiexec": '"mpiexec\\nrm"'}, REFUSED, "launcher.mpiexec"),
    case(
        "gpu-env-space", {"launcher.gpu_env": '["CUDA VISIBLE"]'}, REFUSED, "launcher.gpu_env", "environment variable"
    ),
    case("gpu-env-equals", {"launcher.gpu_env": '["A=B"]'}, REFUSED, "launcher.gpu_env", "environment variable"),
    case("gpu-env-empty", {"launcher.gpu_env": '[""]'}, REFUSED, "launcher.gpu_env", "environment variable"),
    case("gpu-env-number", {"launcher.gpu_env": "[1]"}, REFUSED, "launcher.gpu_env", "string"),
    case("mpi-unknown", {"launcher.mpi": '"intelmpi"'}, REFUSED, "launcher.mpi", "'mpich'"),
    case("claim-batch-zero", {"launcher.claim_batch": "0"}, REFUSED, "launcher.claim_batch", "at least 1"),
    case("idle-ttl-negative", {"launcher.idle_ttl_sec": "-1.0"}, REFUSED, "launcher.idle_ttl_sec"),
    case(
        "launch-param-with-dashes",
        {"launcher.allowed_launch_params": '["--x"]'},
        REFUSED,
        "launcher.allowed_launch_params",
        "option name",
    ),
    case("node-workers-unknown", {"launcher.node_workers": '"some"'}, REFUSED, "launcher.node_workers", "'auto'"),
    # [daemon]
    case("bind-words", {"daemon.bind": '"my host"'}, REFUSED, "daemon.bind", "0.0.0.0"),
    case("bind-bad-address", {"daemon.bind": '"999.1.1.1"'}, REFUSED, "daemon.bind", "IP address"),
    case("bind-empty", {"daemon.bind": '""'}, REFUSED, "daemon.bind"),
    case("bind-number", {"daemon.bind": "8080"}, REFUSED, "daemon.bind", "string"),
    case("port-too-high", {"daemon.port": "70000"}, REFUSED, "daemon.port", "65535"),
    case("processing-period-zero", {"daemon.processing_period_sec": "0"}, REFUSED, "daemon.processing_period_sec"),
    case("hook-workers-zero", {"daemon.hook_workers": "0"}, REFUSED, "daemon.hook_workers"),
    # [site] and [nodes]
    case("name-with-a-space", {"site.name": '"my site"'}, REFUSED, "site.name", "spaces"),
    case("name-number", {"site.name": "5"}, REFUSED, "site.name", "string"),
    case("group-readable-word", {"site.group_readable": '"yes"'}, REFUSED, "site.group_readable", "true or false"),
    case("max-nodes-zero", {"nodes.max_nodes": "0"}, REFUSED, "nodes.max_nodes", "at least 1"),
    case("max-nodes-word", {"nodes.max_nodes": '"two"'}, REFUSED, "nodes.max_nodes", "whole number"),
    case("cpus-beyond-any-node", {"nodes.cpus_per_node": "10000000"}, REFUSED, "nodes.cpus_per_node", "at most"),
    case("gpus-negative", {"nodes.gpus_per_node": "-1"}, REFUSED, "nodes.gpus_per_node"),
    case("unknown-key", {"nodes.max_node": "4"}, REFUSED, "nodes.max_node", "did you mean max_nodes"),
    # [scheduler]
    case("kind-unknown", {"scheduler.kind": '"condor"'}, REFUSED, "scheduler.kind", "'slurm'"),
    case(
        "queue-two-words", {"scheduler.default_queue": '"debug -A x"'}, REFUSED, "scheduler.default_queue", "one word"
    ),
    case(
        "default-queue-not-allowed",
        {"scheduler.allowed_queues": '["a"]', "scheduler.default_queue": '"b"'},
        REFUSED,
        "default_queue",
        "allowed_queues",
    ),
    case("wall-time-zero", {"scheduler.max_wall_time_min": "0"}, REFUSED, "scheduler.max_wall_time_min"),
    case("max-queued-zero", {"scheduler.max_queued": "0"}, REFUSED, "scheduler.max_queued"),
    # [sync]
    case("central-hello", {"sync.central": '"hello"'}, REFUSED, "sync.central", "DSN", "postgresql://"),
    case("central-keyword", {"sync.central": '"hots=db"'}, REFUSED, "sync.central", "'hots'"),
    case("sync-period-zero", {"sync.period_sec": "0"}, REFUSED, "sync.period_sec"),
    # [elastic]
    case(
        "elastic-wider-than-the-site",
        {"elastic.enabled": "true", "elastic.max_nodes": "5"},
        REFUSED,
        "elastic.max_nodes",
        "[nodes] max_nodes",
    ),
    case(
        "elastic-min-above-max", {"elastic.min_nodes": "3", "elastic.max_nodes": "2"}, REFUSED, "min_nodes", "max_nodes"
    ),
    case(
        "elastic-pad-eats-the-time",
        {"elastic.wall_time_pad_min": "40"},
        REFUSED,
        "wall_time_pad_min",
        "min_wall_time_min",
    ),
    case(
        "elastic-filter-tag-space",
        {"elastic.filter_tags": '{"a b" = "c"}'},
        REFUSED,
        "elastic.filter_tags",
        "KEY=VALUE",
    ),
    case("elastic-job-mode", {"elastic.job_mode": '"fast"'}, REFUSED, "elastic.job_mode", "'serial'"),
    # [transfers.locations]: whole files, as the table's keys are names
    case(
        "location-scheme-unknown",
        b'[transfers.locations]\nfar = "http://h/x"\n',
        REFUSED,
        "settings.toml:2",
        "transfers.locations.far",
        "scheme 'http'",
        "rsync://user@host",
    ),
    case(
        "location-file-with-a-host",
        b'[transfers.locations]\nfar = "file://h/x"\n',
        REFUSED,
        "transfers.locations.far",
        "three slashes",
    ),
    case(
        "location-relative",
        b'[transfers.locations]\nfar = "file:data"\n',
        REFUSED,
        "transfers.locations.far",
        "not absolute",
    ),
    case(
        "location-climbs-out",
        b'[transfers.locations]\nfar = "file:///data/../etc"\n',
        REFUSED,
        "transfers.locations.far",
        "'..'",
    ),
    case(
        "location-rsync-without-user",
        b'[transfers.locations]\nfar = "rsync://h/x"\n',
        REFUSED,
        "transfers.locations.far",
        "user@host",
    ),
    case(
        "location-rsync-password",
        b'[transfers.locations]\nfar = "rsync://u:secret@h/x"\n',
        REFUSED,
        "transfers.locations.far",
        "never holds a password",
    ),
    case(
        "location-rsync-port",
        b'[transfers.locations]\nfar = "rsync://u@h:99999/x"\n',
        REFUSED,
        "transfers.locations.far",
        "port",
        "65535",
    ),
    case(
        "location-globus-not-a-uuid",
        b'[transfers.locations]\nfar = "globus://nope/x"\n',
        REFUSED,
        "transfers.locations.far",
        "UUID",
    ),
    case(
        "location-name-with-a-colon",
        b'[transfers.locations]\n"a:b" = "file:///x"\n',
        REFUSED,
        "transfers.locations",
        "location's name",
    ),
    case("location-number", b"[transfers.locations]\nfar = 3\n", REFUSED, "transfers.locations", "string"),
    # whole files
    case("not-toml", b"[nodes\nmax_nodes = 1\n", REFUSED, "settings.toml:1", "not valid TOML"),
    case("value-without-quotes", b"[site]\nname = theta\n", REFUSED, "settings.toml:2", "site.name", "double quotes"),
    case("key-twice", b"[nodes]\nmax_nodes = 1\nmax_nodes = 2\n", REFUSED, "settings.toml:3", "twice"),
    case("unknown-section", b"[nodez]\nmax_nodes = 1\n", REFUSED, "nodez", "did you mean nodes"),
    case("not-utf8", b'[site]\nname = "caf\xe9"\n', REFUSED, "settings.toml:2", "UTF-8"),
    case("binary", bytes(range(256)), REFUSED, "settings.toml", "UTF-8"),
    case("too-large", b"# " + b"x" * (2 << 20) + b"\n", REFUSED, "settings.toml", "bytes", "restore"),
    case("nested-too-deep", b"x = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", REFUSED, "settings.toml"),
    case("a-directory", DIRECTORY, REFUSED, "settings.toml", "is a directory", "restore"),
    case("a-named-pipe", PIPE, REFUSED, "settings.toml", "not a regular file", "replace"),
    case("unreadable", LOOP, REFUSED, "settings.toml", "cannot be looked at", "make it a file of yours"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield init_site(tmp_path_factory.mktemp("settings") / "site", name="badinput", scheduler="local").root


def edit(text: str, keys: dict[str, str]) -> str:
    """``text`` with each ``section.key`` set to the raw TOML given (added if it is not there)."""
    for dotted, value in keys.items():
        section, key = dotted.split(".")
        table = re.search(rf"(?ms)^\[{section}\]\n(.*?)(?=^\[|\Z)", text)
        assert table is not None, section
        line = f"{key} = {value} "
        body, found = re.subn(rf"(?m)^{key} = [^#\n]*", lambda _, line=line: line, table.group(1))
        if not found:
            body = f"{key} = {value}\n{body}"
        text = text[: table.start(1)] + body + text[table.end(1) :]
    return text


def make_bad(path: Path, given: object) -> None:
    path.unlink()
    if given == DIRECTORY:
        path.mkdir()
    elif given == PIPE:
        os.mkfifo(path)
    elif given == LOOP:
        path.symlink_to(path.name)
    elif isinstance(given, bytes):
        path.write_bytes(given)
    else:
        assert isinstance(given, dict)
        path.write_text(edit(GOOD, given))


GOOD = ""  # the site's settings as site init wrote them, set by the first case


@pytest.mark.parametrize("bad", params(CASES))
def test_a_bad_settings_file_is_refused_by_every_command(site: Path, bad: Case) -> None:
    global GOOD
    path = site / "settings.toml"
    GOOD = GOOD or path.read_text()
    before = Snapshot.of(site)
    make_bad(path, bad.given)
    bad_file = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    try:
        for argv in (("job", "ls"), ("sync", "--once")):
            result = balsamd_cli(site, *argv)
            assert (result.exit_code, result.stdout) == (bad.error, ""), result.output
            assert_told(result.stderr, bad.words)
        if bad_file is not None:
            assert path.read_bytes() == bad_file
    finally:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        path.write_text(GOOD)
    assert Snapshot.of(site) == before
    assert balsamd_cli(site, "job", "ls").exit_code == 0
