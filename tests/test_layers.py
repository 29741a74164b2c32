"""Layers point down: the store and the launcher never import what is built on them, and a
launcher on a compute node loads no PostgreSQL client."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import balsamd
from balsamd.site import init_site

PACKAGE = Path(balsamd.__file__).parent
# layer -> what it may never import (directly or through a module of its own)
FORBIDDEN = {
    "store": ("balsamd.api", "balsamd.cli", "balsamd.daemon", "balsamd.launch", "balsamd.rpc", "balsamd.sched",
              "balsamd.sync"),
    "rpc": ("balsamd.api", "balsamd.cli", "balsamd.daemon", "balsamd.launch", "balsamd.sched", "balsamd.sync"),
    "launch": ("balsamd.api", "balsamd.cli", "balsamd.daemon", "balsamd.sync"),
    "sync": ("balsamd.api", "balsamd.cli", "balsamd.daemon", "balsamd.launch"),
}  # fmt: skip


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_a_layer_imports_nothing_built_on_it(layer: str) -> None:
    upward = {
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in imports(path)
        if name.startswith(FORBIDDEN[layer])
    }
    assert upward == set()


def test_a_launcher_imports_no_postgresql_client(tmp_path: Path) -> None:
    site = init_site(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k not in ("BALSAMD_SITE", "BALSAMD_RPC")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "balsamd", "--site", str(site.root), "launcher",
         "--job-mode", "serial", "--idle-ttl", "0"],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    modules = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "balsamd.launch.main" in modules or any(m.startswith("balsamd.launch") for m in modules)
    assert [m for m in modules if m.split(".")[0] == "psycopg"] == []
