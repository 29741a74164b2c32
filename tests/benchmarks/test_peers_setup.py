"""The pure parts of the peer and scale benchmarks: settings, result parsing, skipping.

Nothing here installs a peer or touches the network; the helper scripts are loaded by path
(they run inside the peers' own environments and import Parsl / HyperQueue lazily).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_peers, bench_scale  # noqa: E402
from benchmarks.common import Context  # noqa: E402


def load_helper(name: str) -> ModuleType:
    path = ROOT / "benchmarks" / "peers" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_peer_helper_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def parsl_helper() -> ModuleType:
    return load_helper("parsl_run")


@pytest.fixture(scope="module")
def hq_helper() -> ModuleType:
    return load_helper("hq_run")


# ----- the peers' settings -----------------------------------------------------------------


def test_parsl_settings_give_htex_the_same_cores_on_one_local_block(parsl_helper: ModuleType) -> None:
    s = parsl_helper.htex_settings(2, "RUN")
    assert s["executor"]["max_workers_per_node"] == 2
    assert s["executor"]["cores_per_worker"] == 1.0
    assert s["executor"]["address"] == "127.0.0.1"
    assert s["provider"] == {"init_blocks": 1, "min_blocks": 1, "max_blocks": 1}
    assert s["config"]["run_dir"] == "RUN"
    assert s["config"]["usage_tracking"] == 0
    with pytest.raises(ValueError, match="at least 1"):
        parsl_helper.htex_settings(0, "RUN")


def test_helpers_load_without_their_peer_installed(parsl_helper: ModuleType, hq_helper: ModuleType) -> None:
    assert parsl_helper.KINDS == ("bash", "python")
    assert hq_helper.KINDS == ("program", "function")
    assert "parsl" not in sys.modules
    assert "hyperqueue" not in sys.modules


def test_hyperqueue_settings_one_worker_with_the_cores_and_no_output_files(hq_helper: ModuleType) -> None:
    s = hq_helper.cluster_settings(3, "SERVER", "/venv/bin/python")
    assert s == {
        "server_dir": "SERVER",
        "worker_cores": 3,
        "python_bin": "/venv/bin/python",
        "task": {"stdout": None, "stderr": None},
    }
    with pytest.raises(ValueError, match="at least 1"):
        hq_helper.cluster_settings(0, "SERVER", "python")


def test_hyperqueue_tasks_are_true_programs_or_the_noop_function(hq_helper: ModuleType) -> None:
    class FakeJob:
        def __init__(self) -> None:
            self.calls: list[tuple[str, object, dict]] = []

        def program(self, args, **kw):
            self.calls.append(("program", args, kw))

        def function(self, fn, **kw):
            self.calls.append(("function", fn, kw))

    job = FakeJob()
    hq_helper.add_tasks(job, "program", 2, {"stdout": None})
    hq_helper.add_tasks(job, "function", 1, {"stdout": None})
    assert job.calls == [
        ("program", ["true"], {"stdout": None}),
        ("program", ["true"], {"stdout": None}),
        ("function", hq_helper.noop, {"stdout": None}),
    ]
    assert hq_helper.noop() is None


# ----- the helpers' output -------------------------------------------------------------------


def test_parse_result_takes_the_json_line_after_a_banner() -> None:
    doc = {"tool": "hyperqueue", "kind": "program", "tasks": 10, "seconds": 0.5, "rate": 20.0}
    out = "+------+\n| Server directory | x |\n{not json\n" + json.dumps(doc) + "\n"
    assert bench_peers.parse_result(out) == doc


def test_parse_result_ignores_json_lines_without_a_rate() -> None:
    out = json.dumps({"rate": 5.0, "tasks": 1}) + "\n" + json.dumps({"progress": 3}) + "\n"
    assert bench_peers.parse_result(out)["rate"] == 5.0


@pytest.mark.parametrize("rate", [0, -1.0, "fast", True, None])
def test_parse_result_refuses_unusable_rates(rate: object) -> None:
    with pytest.raises(ValueError, match="unusable rate"):
        bench_peers.parse_result(json.dumps({"rate": rate}))


def test_parse_result_without_a_result_line_shows_the_output() -> None:
    with pytest.raises(ValueError, match="no JSON result line") as err:
        bench_peers.parse_result("starting\nlast words\n")
    assert "last words" in str(err.value)


def test_helper_command_runs_the_script_with_the_peer_interpreter(tmp_path: Path) -> None:
    peer = bench_peers.PeerEnv("parsl", "parsl", "parsl", tmp_path / "parsl")
    argv = bench_peers.helper_command(peer, "parsl_run.py", tasks=10, kind="bash", run_dir=Path("R"))
    assert argv == [
        str(tmp_path / "parsl" / "bin" / "python"),
        str(bench_peers.HELPERS / "parsl_run.py"),
        "--tasks", "10", "--kind", "bash", "--run-dir", "R",
    ]  # fmt: skip
    assert (bench_peers.HELPERS / "parsl_run.py").is_file()
    assert (bench_peers.HELPERS / "hq_run.py").is_file()


def test_peer_environment_puts_its_bin_first_and_drops_pythonpath(tmp_path: Path) -> None:
    peer = bench_peers.PeerEnv("hyperqueue", "hyperqueue", "hyperqueue", tmp_path / "hq")
    env = peer.environ({"PATH": "/usr/bin", "PYTHONPATH": "/somewhere", "HOME": "/h"})
    assert env["PATH"] == f"{tmp_path / 'hq' / 'bin'}{os.pathsep}/usr/bin"
    assert env["VIRTUAL_ENV"] == str(tmp_path / "hq")
    assert "PYTHONPATH" not in env
    assert env["HOME"] == "/h"
    assert not peer.installed()  # no interpreter there: nothing is run


# ----- enabling, skipping, the rows ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("1", True), ("true", True), ("YES", True), ("", False), ("0", False), ("no", False)],
)
def test_peers_enabled_by_the_environment(value: str, enabled: bool) -> None:
    assert bench_peers.peers_enabled({bench_peers.PEERS_ENV: value}) is enabled
    assert bench_peers.peers_enabled({}) is False


def test_cache_and_peer_directories() -> None:
    env = {"XDG_CACHE_HOME": "/c"}
    assert bench_peers.cache_root(env) == Path("/c/balsamd-bench")
    assert bench_peers.peers_dir(env) == Path("/c/balsamd-bench/peers")
    assert bench_peers.peers_dir({**env, bench_peers.PEERS_DIR_ENV: "/p"}) == Path("/p")
    assert bench_peers.cache_root({}) == Path.home() / ".cache" / "balsamd-bench"


def test_without_peers_enabled_there_are_no_rows_and_nothing_is_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(bench_peers.PEERS_ENV, raising=False)
    monkeypatch.setenv(bench_peers.PEERS_DIR_ENV, str(tmp_path / "peers"))
    assert bench_peers.benchmarks(Context()) == []
    assert not (tmp_path / "peers").exists()
    assert f"{bench_peers.PEERS_ENV}=1" in capsys.readouterr().err


def test_peer_rows_names_goals_and_sizes_without_running_anything(tmp_path: Path) -> None:
    peers = bench_peers.Peers(tmp_path / "peers")
    rows = {b.name: b for b in bench_peers.peer_benchmarks(Context(quick=True), peers, cores=2)}
    assert list(rows) == [
        "peers.p1.parsl_bash", "peers.p1.hyperqueue", "peers.p1.balsamd",
        "peers.p2.parsl_python", "peers.p2.hyperqueue", "peers.p2.balsamd_vs_parsl",
    ]  # fmt: skip
    assert rows["peers.p1.balsamd"].goal_ratio == 0.6
    assert rows["peers.p2.balsamd_vs_parsl"].goal_ratio == 1.2
    goals = {n for n, b in rows.items() if b.goal_ratio is not None or b.goal_value is not None}
    assert goals == {"peers.p1.balsamd", "peers.p2.balsamd_vs_parsl"}
    assert all(b.baseline is not None and not b.lower_is_better for b in rows.values())
    assert str(bench_peers.P1_JOBS_QUICK) in rows["peers.p1.parsl_bash"].description
    assert "xargs -P 2 -n 1 true" in rows["peers.p1.hyperqueue"].description
    assert str(bench_peers.P2_HQ_JOBS_QUICK) in rows["peers.p2.hyperqueue"].description
    assert rows["peers.p1.balsamd"].setup is None  # balsamd's own rows need no peer installed
    assert not (tmp_path / "peers").exists()


def test_xargs_floor_runs_true(tmp_path: Path) -> None:
    assert bench_peers.xargs_rate(4, 2) > 0


def test_bench_site_has_the_cores_and_both_apps(tmp_path: Path) -> None:
    root = bench_peers.make_site(tmp_path, cores=3)
    from balsamd.site import SiteLayout

    assert SiteLayout(root).load_settings().nodes.cpus_per_node == 3
    assert (root / "apps" / "noop.py").is_file()
    assert "class PyNoop" in (root / "apps" / "pynoop.py").read_text()


# ----- scale -------------------------------------------------------------------------------


@pytest.mark.parametrize(("jobs", "label"), [(1_000_000, "1m"), (100_000, "100k"), (5120, "5120"), (2_000_000, "2m")])
def test_size_labels(jobs: int, label: str) -> None:
    assert bench_scale.size_label(jobs) == label


def test_cached_store_is_named_by_schema_version_its_migrations_and_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from balsamd.store.schema import SCHEMA_VERSION

    path = bench_scale.cache_file(1_000_000, tmp_path)
    assert path.parent == tmp_path / "stores"
    assert f"schema{SCHEMA_VERSION}." in path.name and path.name.endswith("-1000000.db")
    assert bench_scale.cache_file(100_000, tmp_path) != path
    # another migration of the same number is another schema: a store made by it is not reused
    monkeypatch.setattr(bench_scale, "MIGRATIONS", [*bench_scale.MIGRATIONS[:-1], "CREATE INDEX other ON jobs (app);"])
    assert bench_scale.schema_tag() != bench_scale.SCHEMA_TAG


def test_stale_caches_are_other_versions_of_the_same_size(tmp_path: Path) -> None:
    current = bench_scale.cache_file(1_000_000, tmp_path)
    current.parent.mkdir(parents=True)
    names = ["store-schema1-fill1-1000000.db", "store-schema9-fill0-1000000.db", "store-schema1-fill1-100000.db"]
    for name in [*names, current.name]:
        (current.parent / name).write_text("")
    assert [p.name for p in bench_scale.stale_caches(current)] == sorted(names[:2])


def test_scale_rows_are_lower_is_better_with_the_size_in_the_name() -> None:
    rows = {b.name: b for b in bench_scale.benchmarks(Context(quick=True))}
    assert list(rows) == [
        "scale.claim_latency_100k.batch256", "scale.claim_latency_100k.single", "scale.daemon_rss_100k",
    ]  # fmt: skip
    assert all(b.lower_is_better for b in rows.values())
    assert rows["scale.claim_latency_100k.single"].goal_ratio == 0.5
    assert rows["scale.daemon_rss_100k"].goal_value == 200.0
    full = [b.name for b in bench_scale.benchmarks(Context())]
    assert full[0] == "scale.claim_latency_1m.batch256"


def test_proc_status_reads_kb_fields_of_a_process() -> None:
    fields = bench_scale.proc_status(os.getpid())
    assert fields["VmRSS"] > 0
    assert "RssAnon" in fields
