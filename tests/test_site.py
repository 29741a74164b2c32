"""Site directories: making one (all or nothing) and finding one."""

from __future__ import annotations

from pathlib import Path

import pytest

import balsamd.site
from balsamd.config import load_settings
from balsamd.site import SiteError, find_site, init_site


def test_init_site_makes_every_part(tmp_path: Path) -> None:
    layout = init_site(tmp_path / "a" / "b", name="mysite", scheduler="slurm")
    root = tmp_path / "a" / "b"
    assert layout.root == root
    assert sorted(p.name for p in root.iterdir()) == [
        "apps", "balsamd.db", "balsamd.db-fullmark", "data", "job-template.sh", "log", "secret", "settings.toml",
    ]  # fmt: skip
    assert "#SBATCH" not in (root / "job-template.sh").read_text()  # directives come from the scheduler
    assert "{{ directives }}" in (root / "job-template.sh").read_text()
    settings = load_settings(layout.settings)
    assert settings.site.name == "mysite"
    assert settings.scheduler.kind == "slurm"
    assert len(layout.secret.read_text().strip()) == 64
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


def test_init_site_name_defaults_to_the_directory(tmp_path: Path) -> None:
    layout = init_site(tmp_path / "frontier")
    assert load_settings(layout.settings).site.name == "frontier"


def test_init_site_into_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert init_site(tmp_path / "empty").settings.is_file()


def test_init_site_refuses_an_existing_site(tmp_path: Path) -> None:
    init_site(tmp_path / "s")
    with pytest.raises(SiteError, match=r"is already a balsamd site; use it with --site "):
        init_site(tmp_path / "s")


def test_init_site_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / ".hidden").write_text("")
    with pytest.raises(SiteError, match=r"exists and is not empty; choose a new directory for the site$"):
        init_site(tmp_path / "s")


@pytest.mark.parametrize("name", ["two words", 'quo"te', "back\\slash", "it's"])
def test_init_site_refuses_unusable_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(
        SiteError, match=r"without spaces, quotes, backslashes or control characters; give another with --name$"
    ):
        init_site(tmp_path / "s", name=name)
    assert list(tmp_path.iterdir()) == []


def test_init_site_leaves_nothing_when_it_fails_midway(tmp_path: Path, monkeypatch) -> None:
    def broken_store(path: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(balsamd.site, "SiteStore", broken_store)
    with pytest.raises(OSError, match="disk full"):
        init_site(tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


# ----- find_site: --site, then $BALSAMD_SITE, then the current directory or a parent ----


@pytest.fixture
def sites(tmp_path: Path) -> dict[str, Path]:
    return {name: init_site(tmp_path / name).root for name in ("flag", "env", "cwd")}


def test_explicit_path_comes_first(sites: dict[str, Path]) -> None:
    found = find_site(sites["flag"], env={"BALSAMD_SITE": str(sites["env"])}, cwd=sites["cwd"])
    assert found.root == sites["flag"]


def test_environment_comes_second(sites: dict[str, Path]) -> None:
    found = find_site(None, env={"BALSAMD_SITE": str(sites["env"])}, cwd=sites["cwd"])
    assert found.root == sites["env"]


def test_then_the_current_directory_or_a_parent(sites: dict[str, Path]) -> None:
    assert find_site(None, env={}, cwd=sites["cwd"]).root == sites["cwd"]
    deep = sites["cwd"] / "data" / "x" / "y"
    deep.mkdir(parents=True)
    assert find_site(None, env={}, cwd=deep).root == sites["cwd"]
    assert find_site("", env={"BALSAMD_SITE": ""}, cwd=deep).root == sites["cwd"]


def test_relative_and_home_paths_are_resolved(sites: dict[str, Path], monkeypatch) -> None:
    monkeypatch.chdir(sites["flag"].parent)
    assert find_site("flag", env={}).root == sites["flag"]
    monkeypatch.setenv("HOME", str(sites["flag"].parent))
    assert find_site("~/env", env={}).root == sites["env"]


def test_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(SiteError) as info:
        find_site(None, env={}, cwd=tmp_path)
    assert str(info.value) == (
        f"no balsamd site found in {tmp_path.resolve()} or its parents; pass --site PATH, "
        "set BALSAMD_SITE, or create one with `balsamd site init PATH`"
    )


def test_explicit_path_that_is_not_a_site(tmp_path: Path) -> None:
    with pytest.raises(SiteError) as info:
        find_site(tmp_path, env={})
    assert str(info.value) == (
        f"{tmp_path} (from --site) is not a balsamd site: {tmp_path}/settings.toml is missing; "
        "create a site with `balsamd site init DIR`"
    )
    with pytest.raises(SiteError, match=r"\(from \$BALSAMD_SITE\) does not exist or is not a directory"):
        find_site(None, env={"BALSAMD_SITE": str(tmp_path / "gone")})


def test_a_site_whose_settings_file_is_gone(tmp_path: Path) -> None:
    root = init_site(tmp_path / "s").root
    (root / "settings.toml").unlink()
    for args in ((root,), (None,)):
        with pytest.raises(SiteError, match=rf"^{root}/settings\.toml: settings file not found, but {root}"):
            find_site(*args, env={}, cwd=root / "log")
