"""The site directory: where it is, what is in it, and how it is made."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from balsamd.config import SITE_NAME, Settings, SettingsError, load_settings, parse_settings, render_settings
from balsamd.dsn import dsn_problem
from balsamd.modes import PRIVATE, changeable_by_others, make_dir, site_modes, write_file
from balsamd.rpc.client import RemoteStore, RpcClient
from balsamd.rpc.record import check_secret, connect_host, read_record, read_secret, this_host
from balsamd.sched import scheduler_class
from balsamd.store.contract import Store
from balsamd.store.store import SiteStore
from balsamd.validate import SiteRules

SETTINGS_FILE = "settings.toml"
STORE_FILE = "balsamd.db"
SECRET_FILE = "secret"
SITE_ENV = "BALSAMD_SITE"
RPC_ENV = "BALSAMD_RPC"
JOB_TEMPLATE_FILE = "job-template.sh"


class SiteError(Exception):
    """No usable site directory; the message says how to point at one or make one."""


class SiteLayout:
    """Paths inside a site directory; nothing is opened or created here."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = root / SETTINGS_FILE
        self.store = root / STORE_FILE
        self.data = root / "data"
        self.log = root / "log"
        self.apps = root / "apps"
        self.secret = root / SECRET_FILE
        self.job_template = root / JOB_TEMPLATE_FILE
        self.batch = root / "batch"

    def load_settings(self) -> Settings:
        return load_settings(self.settings)

    def check_modes(self) -> None:
        """Refuse a site whose code or settings someone else could have changed: the site
        directory, settings.toml, job-template.sh, apps/ and its files, and batch/ (its job
        scripts) must be this user's and writable by no one else."""
        apps = sorted(self.apps.glob("*.py")) if self.apps.is_dir() else []
        for path in (self.root, self.settings, self.job_template, self.apps, *apps, self.batch):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:  # a symlink loop, a directory that may not be searched
                raise SiteError(
                    f"{path}: cannot be looked at ({exc.strerror}); make it a file of yours again"
                ) from None
            problem = changeable_by_others(path, st)
            if problem:
                raise SiteError(problem)

    def name(self, settings: Settings) -> str:
        """The site's name: its daemon proves it serves this site under it."""
        return settings.site.name or self.root.name


def open_store(layout: SiteLayout, settings: Settings) -> Store:
    """The store itself on the daemon's host; the daemon's RPC anywhere else (SQLite WAL must
    never be opened from two hosts).  BALSAMD_RPC=1 forces the RPC path on the same host."""
    record = read_record(layout.root)
    if record is not None and (os.environ.get(RPC_ENV) == "1" or record.host != this_host()):
        secret = read_secret(layout.root)

        def locate() -> tuple[str, int] | None:  # a restarted daemon may serve elsewhere
            current = read_record(layout.root)
            if current is None:
                return None
            check_secret(current, secret)
            return connect_host(current), current.port

        client = RpcClient(
            connect_host(record), record.port, secret, f"api@{this_host()}", locate=locate, site=layout.name(settings)
        )
        return RemoteStore(client)
    return SiteStore(layout.store, SiteRules.of(settings))


def find_site(
    explicit: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> SiteLayout:
    """--site PATH, else $BALSAMD_SITE, else the current directory or one of its parents."""
    env = os.environ if env is None else env
    if explicit:
        return _checked(Path(explicit), "--site")
    if env.get(SITE_ENV):
        return _checked(Path(env[SITE_ENV]), f"${SITE_ENV}")
    here = (cwd or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / STORE_FILE).exists():
            if not (candidate / SETTINGS_FILE).exists():
                raise SiteError(_missing_settings(candidate, "the current directory"))
            layout = SiteLayout(candidate)
            layout.check_modes()
            return layout
    raise SiteError(
        f"no balsamd site found in {here} or its parents; pass --site PATH, set {SITE_ENV}, "
        "or create one with `balsamd site init PATH`"
    )


def _checked(path: Path, source: str) -> SiteLayout:
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise SiteError(
            f"{path} (from {source}) does not exist or is not a directory; "
            f"create a site there with `balsamd site init {path}`"
        )
    # a settings.toml that is there but no file (a directory, a pipe) is told by load_settings
    if not (path / SETTINGS_FILE).exists() and not (path / SETTINGS_FILE).is_symlink():
        if (path / STORE_FILE).exists():
            raise SiteError(_missing_settings(path, source))
        raise SiteError(
            f"{path} (from {source}) is not a balsamd site: {path / SETTINGS_FILE} is missing; "
            f"create a site with `balsamd site init DIR`"
        )
    layout = SiteLayout(path)
    layout.check_modes()
    return layout


def _missing_settings(path: Path, source: str) -> str:
    return (
        f"{path / SETTINGS_FILE}: settings file not found, but {path} (from {source}) has a site "
        f"store; restore the settings file (`balsamd site init` in an empty directory writes a "
        "fresh one to copy)"
    )


def init_site(
    path: Path, name: str | None = None, scheduler: str = "local", central: str = "", group_readable: bool = False
) -> SiteLayout:
    """Create a site directory; refuses to touch an existing site or a non-empty directory.

    Everything in it is this user's alone, or readable (never writable) by the directory's
    group when ``group_readable``; the secret is always the user's alone."""
    path = path.expanduser().resolve()
    if (path / SETTINGS_FILE).exists():
        raise SiteError(f"{path} is already a balsamd site; use it with --site {path}")
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise SiteError(f"{blocker} is a file, not a directory; choose another path for the site")
    if path.exists() and any(path.iterdir()):
        raise SiteError(f"{path} exists and is not empty; choose a new directory for the site")
    site_name = name or path.name
    default_queue = "local" if scheduler == "local" else ""
    settings = _settings_text(site_name, scheduler, central, group_readable, default_queue)
    layout = SiteLayout(path)
    tmp = path.with_name(f".{path.name}.init-{os.getpid()}")
    modes = site_modes(group_readable)
    try:
        staging = SiteLayout(tmp)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        for d in (staging.root, staging.data, staging.log, staging.apps):
            make_dir(d, modes.directory)
        write_file(staging.settings, settings, modes.file)
        write_file(staging.job_template, scheduler_class(scheduler).default_template, modes.file)
        write_file(staging.secret, secrets.token_hex(32) + "\n", PRIVATE.file)
        SiteStore(staging.store).close()
        os.chmod(staging.store, modes.file)
        if path.exists():
            path.rmdir()
        tmp.rename(path)
    except BaseException:
        _remove_tree(tmp)
        raise
    return layout


def _settings_text(name: str, scheduler: str, central: str, group_readable: bool, queue: str) -> str:
    """The new site's settings.toml, read back before anything is written, so that no option
    can leave a site whose settings do not load."""
    if not re.fullmatch(SITE_NAME, name):
        raise SiteError(
            f"site name {name!r:.80} must be 1-64 characters without spaces, quotes, backslashes or control "
            "characters; give another with --name"
        )
    problem = dsn_problem(central) if central else None
    if problem:
        raise SiteError(f"--central is not a PostgreSQL DSN: {problem}")
    text = render_settings(name, scheduler, central, group_readable, queue, queue)
    try:
        parse_settings(text, Path(SETTINGS_FILE))
    except SettingsError as exc:
        raise SiteError(f"the settings this would write do not load ({exc}); change the options") from None
    return text


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()
