"""A site is its owner's: what balsamd makes there is private (or readable, never writable, by
the group of a group-readable site) whatever the umask, and code or settings someone else could
have changed are refused where a site is opened and where an app is imported."""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsamd.apps import AppError, import_app_module
from balsamd.modes import GROUP_READABLE, PRIVATE
from balsamd.site import SiteError, find_site, init_site
from balsamd.store.store import SiteStore
from tests.conftest import OTHER_USER, as_other
from tests.daemon.conftest import child_env, new_site, wait_until

HELLO = """\
from balsamd import ApplicationDefinition


class Hello(ApplicationDefinition):
    command_template = "true"
"""


@pytest.fixture(params=[0o002, 0o022], ids=["umask 002", "umask 022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes_below(root: Path) -> dict[str, int]:
    """Relative path -> mode of everything under ``root`` but the jobs' own data."""
    return {str(p.relative_to(root)): mode(p) for p in root.rglob("*") if p.relative_to(root).parts[0] != "data"} | {
        "data": mode(root / "data"),
        ".": mode(root),
    }


@pytest.mark.parametrize("group_readable", [False, True], ids=["private", "group-readable"])
def test_everything_a_site_makes_has_its_mode_whatever_the_umask(
    tmp_path: Path, umask: int, group_readable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # or no apps/__pycache__ would be made anyway
    with new_site(tmp_path, {"daemon.scheduler_period_sec": 0.2}, group_readable=group_readable) as site:
        site.balsamd("app", "create", "hello", "--command", "echo hello")
        job = json.loads(site.balsamd("job", "create", "--app", "hello", "--workdir", "h/1", "--json").stdout)
        site.start()
        site.balsamd("queue", "submit", "--num-nodes", "1", "--wall-time-min", "5", "--job-mode", "serial")
        site.wait_state(job["id"], "JOB_FINISHED", timeout=60)
        wait_until(lambda: list((site.root / "log").glob("launcher-*.log")), "the batch job's launcher logs")
        found = modes_below(site.root)  # while the daemon holds the store open, with its -wal and -shm
    made = GROUP_READABLE if group_readable else PRIVATE
    private = {"secret", "daemon.json", "daemon.lock", "balsamd.db-fullmark"}  # the same in every site
    expected = {
        name: made.directory if (site.root / name).is_dir()
        else PRIVATE.file if name in private
        else made.script if name.endswith(".sh") and name.startswith("batch/")
        else made.file
        for name in found
    }  # fmt: skip
    assert found == expected
    names = set(found)
    assert {
        "balsamd.db", "balsamd.db-wal", "balsamd.db-shm", "secret", "settings.toml", "job-template.sh",
        "apps", "apps/hello.py", "log", "log/daemon.log", "batch", "daemon.json", "daemon.lock",
    } <= names  # fmt: skip
    assert any(n.startswith("log/launcher-") for n in names)
    assert any(n.startswith("batch/") and n.endswith(".sh") for n in names)
    assert any(n.startswith("batch/") and n.endswith(".out") for n in names)
    assert not [n for n in names if "__pycache__" in n]


def test_a_new_store_and_its_wal_and_shm_files_are_private(tmp_path: Path, umask: int) -> None:
    store = SiteStore(tmp_path / "store.db")
    try:
        assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
            "store.db": 0o600, "store.db-wal": 0o600, "store.db-shm": 0o600, "store.db-fullmark": 0o600,
        }  # fmt: skip
    finally:
        store.close()


def test_site_init_group_readable_writes_the_setting(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "balsamd", "site", "init", str(tmp_path / "s"), "--group-readable"],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "\ngroup_readable = true\n" in (tmp_path / "s" / "settings.toml").read_text()
    assert find_site(tmp_path / "s", env={}).load_settings().site.group_readable is True
    assert init_site(tmp_path / "t").load_settings().site.group_readable is False


CODE = ["", "settings.toml", "job-template.sh", "apps", "apps/hello.py", "batch"]


@pytest.mark.parametrize("name", CODE, ids=["site directory", *CODE[1:]])
@pytest.mark.parametrize("open_bits", [0o020, 0o002], ids=["group", "other"])
def test_a_site_whose_code_or_settings_others_may_write_is_refused(tmp_path: Path, name: str, open_bits: int) -> None:
    root = init_site(tmp_path / "s").root
    (root / "apps" / "hello.py").write_text(HELLO)
    (root / "batch").mkdir(mode=0o700)
    path = root / name if name else root
    path.chmod(mode(path) | open_bits)
    who = "every user" if open_bits == 0o002 else "the group "
    with pytest.raises(SiteError) as info:
        find_site(root, env={})
    message = str(info.value)
    assert message.startswith(f"{path} can be changed by {who}")
    assert message.endswith(
        f"(mode {mode(path):04o}), and balsamd runs a site's code and settings as you; "
        f"make it yours alone to write with `chmod go-w {path}`"
    )
    for where in ({"env": {"BALSAMD_SITE": str(root)}}, {"env": {}, "cwd": root / "data"}):
        with pytest.raises(SiteError, match=r"chmod go-w"):
            find_site(None, **where)
    path.chmod(mode(path) & ~open_bits)
    assert find_site(root, env={}).root == root


def test_the_cli_and_the_daemon_refuse_a_site_with_group_writable_apps(tmp_path: Path) -> None:
    with new_site(tmp_path) as site:
        apps = site.root / "apps"
        apps.chmod(0o770)
        for command in (("job", "ls"), ("start",)):
            done = site.balsamd(*command, code=1)
            assert done.stderr.startswith(f"Error: {apps} can be changed by the group "), done.stderr
            assert done.stderr.endswith(f"make it yours alone to write with `chmod go-w {apps}`\n")
        assert site.record() is None


def test_a_group_member_who_changes_a_group_writable_app_gets_nothing_run(
    shared_tmp: Path, other_user: pwd.struct_passwd
) -> None:
    """The attack made for real: a site shared with a group, one app file left group-writable
    (an editor under umask 002), and a member of that group adding code to it."""
    root = init_site(shared_tmp / "site", group_readable=True).root
    app = root / "apps" / "hello.py"
    app.write_text(HELLO)
    app.chmod(0o664)
    for path in (root, *root.rglob("*")):
        os.chown(path, -1, other_user.pw_gid, follow_symlinks=False)
    marker = shared_tmp / "marker"
    as_other("sh", "-c", f"echo \"open('{marker}', 'w').write('ran')\" >> {app}")
    assert "marker" in app.read_text()

    done = subprocess.run(
        [sys.executable, "-m", "balsamd", "--site", str(root), "app", "ls"],
        capture_output=True, text=True, env=child_env(), timeout=60,
    )  # fmt: skip
    assert not marker.exists()
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: {app} can be changed by the group {OTHER_USER} (gid {other_user.pw_gid})")


def test_an_app_file_someone_else_owns_is_refused(tmp_path: Path, other_user: pwd.struct_passwd) -> None:
    root = init_site(tmp_path / "s").root
    app = root / "apps" / "hello.py"
    app.write_text(HELLO)
    os.chown(app, other_user.pw_uid, -1)
    with pytest.raises(SiteError) as info:
        find_site(root, env={})
    assert str(info.value) == (
        f"{app} belongs to user {OTHER_USER} (uid {other_user.pw_uid}), not to you, and balsamd runs a site's "
        "code and settings as you; use a site of your own, with apps and settings that are yours"
    )


def test_an_app_file_is_checked_each_time_it_is_imported(tmp_path: Path) -> None:
    """A daemon runs for weeks: an app file that became writable by others after the site was
    opened is refused when it is next imported."""
    app = tmp_path / "late.py"
    app.write_text(HELLO)
    app.chmod(0o600)
    assert import_app_module(app).Hello.command_template == "true"
    app.chmod(0o660)
    with pytest.raises(AppError, match=rf"^{app} can be changed by the group .*`chmod go-w {app}`$"):
        import_app_module(app)


def test_bytecode_planted_beside_an_app_is_never_run(tmp_path: Path) -> None:
    """apps/__pycache__ is made by Python as the umask allows; a .pyc put there that matches the
    source's time and size would be run in its place by Python's own loader."""
    app = tmp_path / "apps" / "hello.py"
    app.parent.mkdir()
    app.write_text(HELLO)
    app.chmod(0o600)
    marker = tmp_path / "marker"
    planted = compile(f"open({str(marker)!r}, 'w').write('ran')\n" + HELLO, str(app), "exec")
    cached = Path(importlib.util.cache_from_source(str(app)))
    cached.parent.mkdir()
    st = app.stat()
    pyc = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
    pyc += (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    cached.write_bytes(pyc + marshal.dumps(planted))
    assert import_app_module(app).Hello.command_template == "true"
    assert not marker.exists()
