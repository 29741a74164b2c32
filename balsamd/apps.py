"""ApplicationDefinition: what a job runs, and the hooks around its run.

Apps are Python classes in ``SITE/apps/*.py``.  A command app sets ``command_template`` with
``{{ name }}`` placeholders (every value is shell-quoted); a Python app defines
``run(self, ...)`` and its return value or exception becomes the job's result.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import keyword
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from balsamd.appattrs import (
    AppError,
    app_cleanup_files,
    app_environment,
    app_preamble,
    app_transfers,
    carry_over_warnings,
    preamble_text,
)
from balsamd.lifecycle import HOOK_NAMED, HOOKS
from balsamd.models import App, AppKind, AppParameter, Job
from balsamd.modes import changeable_by_others
from balsamd.templates import PLACEHOLDER, template_problems
from balsamd.validate import app_problems

if TYPE_CHECKING:  # the store is not imported by apps and workers that only subclass
    from balsamd.connection import Connection
    from balsamd.store.contract import Store

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# set by a warm worker while it runs a job, and by a hook worker while it runs a hook: gives
# that job's working directory, made real
workdir_provider: Callable[[], str] | None = None
# set by a hook worker while it runs a hook: reads the parents of the job (by id) from the store
parents_provider: Callable[[str], list[ParentJob]] | None = None


class ParentJob(Job, kw_only=True):
    """A parent of a hook's job as the store holds it, and the absolute path of its workdir."""

    workdir_path: str = ""


class HookJob(Job, kw_only=True):
    """A job as its hooks see it (``self.job``): a Job that can read its parents."""

    def parents(self) -> list[ParentJob]:
        """The parent jobs, in the order of ``parent_ids``, as the store holds them now.
        Changing them changes nothing: only the hook's own job is written back."""
        if parents_provider is None:
            raise RuntimeError(f"job {self.id}: its parents can be read only in its hooks")
        return parents_provider(self.id)

    parent_query = parents  # Balsam's name for it


class ApplicationDefinition:
    """Subclass this in ``SITE/apps/NAME.py``.

    Hooks receive the job as ``self.job`` and set ``self.job.state`` to move it on; a hook
    that raises fails the job with the traceback as its reason.  A hook runs in the job's
    workdir (``self.workdir``) and reads the job's parents with ``self.job.parents()``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    command_template: ClassVar[str] = ""
    parameters: ClassVar[dict[str, dict[str, Any]]] = {}
    environment: ClassVar[dict[str, str]] = {}
    environment_variables: ClassVar[dict[str, str]] = {}  # Balsam's name for ``environment``
    cleanup_files: ClassVar[list[str]] = []
    # text run by the shell before the command; or a method returning it, called for each run
    shell_preamble: ClassVar[str | Callable[..., str | list[str] | None]] = ""
    transfers: ClassVar[dict[str, dict[str, Any]]] = {}
    site: ClassVar[str] = ""  # Balsam's app-to-site link; here the site is the one whose apps/ holds the file

    def __init__(self, job: Job) -> None:
        self.job = job

    @property
    def workdir(self) -> Path:
        """The job's working directory while it runs, made if it does not exist yet.

        A short run may start in its worker's scratch directory (so that runs which write
        nothing make no directory); asking for ``workdir`` moves the run, and what it wrote,
        into the job's own directory.
        """
        if workdir_provider is not None:
            return Path(workdir_provider())
        site = os.environ.get("BALSAMD_SITE")
        if site is None:
            raise RuntimeError(f"job {self.job.id}: its working directory is known only while it runs")
        path = Path(site) / "data" / self.job.workdir
        path.mkdir(parents=True, exist_ok=True)
        return path

    # Each hook's default is its move in lifecycle.HOOKS.  The store makes that move inline
    # for apps that keep the hook; these bodies make it for subclasses that call super().

    def preprocess(self) -> None:
        self.job.state = HOOK_NAMED["preprocess"].default_next

    def postprocess(self) -> None:
        self.job.state = HOOK_NAMED["postprocess"].default_next

    def handle_error(self) -> None:
        self.job.state = HOOK_NAMED["handle_error"].default_next

    def handle_timeout(self) -> None:
        self.job.state = HOOK_NAMED["handle_timeout"].default_next

    # An app declared in a script or notebook is sent to its site (``site``) by these; the
    # site installs it only from users its owner names (``balsamd.declare``).

    @classmethod
    def sync(cls, conn: Connection | None = None, timeout: float = 120.0) -> App:
        """Send this app to its site and wait until the site publishes it; raises with the
        site's reason when it refuses, and says so when it does not answer in time."""
        from balsamd.declare import sync

        return sync(cls, conn, timeout)

    @classmethod
    def submit(cls, workdir: str, conn: Connection | None = None, **given: Any) -> Any:
        """Create a job of this app (sent to its site first if it has not been, or changed):
        keywords naming a job's fields (``num_nodes``, ``ranks_per_node``, ``gpus_per_rank``,
        ``node_packing_count``, ``tags``, ...) are those, the others are ``run()``'s parameters."""
        from balsamd.declare import submit

        return submit(cls, workdir, conn, given)


def app_name(cls: type[ApplicationDefinition]) -> str:
    return cls.__dict__.get("name") or cls.__name__


def describe(cls: type[ApplicationDefinition], source: str = "", site: str = "") -> App:
    """The store's record of an app class (what validation and launchers need); AppError when
    the class cannot be used.  ``site``: the name of the site whose apps/ holds it."""
    name = app_name(cls)
    if not NAME.match(name):
        raise AppError(f"app {name!r}: its name is not usable: use letters, digits and _, not starting with a digit")
    run = _run_method(cls)
    if run is not None and cls.command_template:
        raise AppError(f"app {name}: define either command_template or run(), not both")
    if run is None and not cls.command_template:
        raise AppError(f"app {name}: set command_template or define a run(self, ...) method")
    if run is not None:
        params = _run_parameters(run)
    else:
        params = {p: AppParameter() for p in PLACEHOLDER.findall(cls.command_template)}
    for pname, spec in cls.parameters.items():
        if not isinstance(spec, dict):
            raise AppError(
                f"app {name}: parameters[{pname!r}] must be a dict like "
                "{'required': False, 'default': 1, 'help': '...'}"
            )
        unknown = set(spec) - {"required", "default", "help"}
        if unknown:
            raise AppError(f"app {name}: parameters[{pname!r}] has unknown keys {sorted(unknown)}")
        required = spec.get("required", "default" not in spec)
        params[pname] = AppParameter(required=required, default=spec.get("default"), help=spec.get("help", ""))
    if run is not None:
        extra = set(params) - set(_run_parameters(run))
        if extra and not _takes_any_keyword(run):
            raise AppError(
                f"app {name}: parameters {sorted(extra)} are not arguments of run(); "
                "add them to run()'s signature or remove them from parameters"
            )
    else:
        undeclared = set(params) - set(PLACEHOLDER.findall(cls.command_template))
        if undeclared:
            raise AppError(f"app {name}: parameters {sorted(undeclared)} are not used in command_template")
        _check_template(name, cls.command_template)
    hooks = [h.name for h in HOOKS if getattr(cls, h.name) is not getattr(ApplicationDefinition, h.name)]
    app = App(
        name=name, kind=AppKind.COMMAND if run is None else AppKind.PYTHON,
        command_template=cls.command_template, parameters=params, environment=app_environment(cls, name),
        cleanup_files=app_cleanup_files(cls, name), transfers=app_transfers(cls, name),
        description=cls.description or (inspect.getdoc(cls) or "").split("\n")[0],
        hooks=hooks, source=source, class_name=cls.__name__,
    )  # fmt: skip
    app.shell_preamble, app.preamble_per_job = app_preamble(cls, name)
    where = f"apps/{source}, app {name}" if source else f"app {name}"
    app.warnings = [f"{where}: {w}" for w in carry_over_warnings(app, getattr(cls, "site", ""), site)]
    return app


def _run_method(cls: type[ApplicationDefinition]) -> Callable[..., Any] | None:
    """A Python app's ``run`` (as a plain function, ``self`` first), None for a command app."""
    run = getattr(cls, "run", None)
    return run if callable(run) else None


def _run_parameters(run: Callable[..., Any]) -> dict[str, AppParameter]:
    params = {}
    for p in list(inspect.signature(run).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            params[p.name] = AppParameter(required=True)
        else:
            params[p.name] = AppParameter(required=False, default=p.default)
    return params


def _takes_any_keyword(run: Callable[..., Any]) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(run).parameters.values())


def _check_template(name: str, template: str) -> None:
    problems = template_problems(template)
    if problems:
        raise AppError(f"app {name}: {problems[0]}")


def render_command(template: str, params: dict[str, Any]) -> str:
    """Fill ``{{ name }}`` placeholders; every value is shell-quoted, so it is one word, and a
    list's items are each one (``balsamd qsub``'s argv, argument by argument)."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in params:
            raise AppError(f"command template needs parameter {key!r}, which the job does not have")
        return " ".join(shlex.quote(word) for word in value_words(params[key]))

    return PLACEHOLDER.sub(fill, template)


def value_words(value: Any) -> list[str]:
    """The words a parameter's value fills a placeholder with: a list's items, else the value."""
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def load_apps(apps_dir: Path, site: str = "") -> dict[str, App]:
    """Every app of ``apps_dir/*.py`` by name, described; one that cannot be used is recorded
    with its ``error`` (file, what is wrong, what to do), so that one bad file never keeps the
    others from working.  ``site``: the site's name (for Balsam's ``site`` attribute)."""
    return merge_apps(file_apps(path, site) for path in app_files(apps_dir))


def app_files(apps_dir: Path) -> list[Path]:
    return sorted(apps_dir.glob("*.py"))


def merge_apps(per_file: Iterable[list[App]]) -> dict[str, App]:
    """The apps of each file (in the order of ``app_files``) by name."""
    found: dict[str, App] = {}
    for apps in per_file:
        for app in apps:
            other = found.get(app.name)
            if other is None:
                found[app.name] = app
            else:  # neither is what a job of this name means: say so under the name
                error = f"app {app.name} is defined in apps/{other.source} and in apps/{app.source}; rename one"
                found[app.name] = broken_app(app.name, other.source, error)
    return found


def usable(apps: dict[str, App]) -> dict[str, App]:
    return {name: app for name, app in apps.items() if not app.error}


def file_apps(path: Path, site: str) -> list[App]:
    """The apps one file defines, each described or broken."""
    try:
        module = import_app_module(path)
    except AppError as exc:
        return [broken_app(name, path.name, str(exc)) for name in declared_names(path)]
    apps = []
    for cls in _app_classes(module):
        try:
            app = describe(cls, path.name, site)
            problems = app_problems(app)
            if problems:
                raise AppError(f"app {app.name}: {'; '.join(problems)}")
        except Exception as exc:  # the class is the site's code: whatever it raises is its own error
            name = app_name(cls)
            name = _record_name(name if isinstance(name, str) else cls.__name__)
            message = str(exc) if isinstance(exc, AppError) else f"app {name}: {type(exc).__name__}: {exc}"
            app = broken_app(name, path.name, f"apps/{path.name}: {message}")
        apps.append(app)
    return apps


def _app_classes(module: Any) -> list[type[ApplicationDefinition]]:
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, ApplicationDefinition)
        and obj is not ApplicationDefinition
        and obj.__module__ == module.__name__
    ]


def declared_names(path: Path) -> list[str]:
    """Names of the classes a file that cannot be imported defines at its top level, read
    without running it (so that its apps are listed, broken); its file name when none is found."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    names = [node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.bases]
    return names or [_record_name(path.stem)]


def _record_name(text: str) -> str:
    """``text`` as a name a record can have (letters, digits and _, not starting with a digit)."""
    name = re.sub(r"\W", "_", text, flags=re.ASCII) or "_"
    return f"_{name}" if name[0].isdigit() else name


MAX_ERROR = 4000  # of an app's error: enough for a traceback's last lines


def broken_app(name: str, source: str, error: str) -> App:
    if len(error) > MAX_ERROR:
        error = f"{error[: MAX_ERROR // 2]}\n[...]\n{error[-MAX_ERROR // 2 :]}"
    return App(name=name, source=source, error=error)


_imported: dict[tuple[str, int, int], Any] = {}
APP_MODULE_PREFIX = "balsamd_apps_"  # of the module an app file is imported as


def from_app_file(cls: type) -> bool:
    """Whether ``cls`` was defined in a site's app file (not in a script declaring it)."""
    return cls.__module__.startswith(APP_MODULE_PREFIX)


def import_app_module(path: Path):
    """Import an app file under a name unique to its location and content (two sites never
    clash, and an edited file is imported afresh).  Warm workers call this for every job: an
    unchanged file (same modification time and size) is not read again."""
    try:
        st = path.stat()
    except OSError as exc:
        raise AppError(f"{path}: cannot be read: {exc.strerror}") from None
    # checked at every import, not only when the site is opened: a daemon runs for weeks, and
    # an app file added meanwhile may have been written by anyone in its group
    problem = changeable_by_others(path, st)
    if problem:
        raise AppError(problem)
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _imported:
        return _imported[key]
    module = _import_file(path)
    _imported[key] = module
    return module


def _import_file(path: Path):
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise AppError(f"{path}: cannot be read: {exc.strerror}") from None
    digest = hashlib.sha1(str(path.resolve()).encode() + b"\0" + content).hexdigest()[:16]
    modname = f"{APP_MODULE_PREFIX}{digest}_{path.stem}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise AppError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        # the bytes read here, compiled here: bytecode cached in apps/__pycache__ (a directory
        # Python makes as the umask allows) is never written nor run
        exec(compile(content, str(path), "exec", dont_inherit=True), module.__dict__)
    except Exception as exc:
        del sys.modules[modname]
        raise AppError(f"{path}: error while importing: {type(exc).__name__}: {exc}") from exc
    return module


def register_apps(apps_dir: Path, store: Store, site: str = "") -> dict[str, App]:
    """Load ``apps_dir/*.py`` and record in the store what changed; returns name -> App."""
    apps = load_apps(apps_dir, site)
    record_apps(store, apps)
    return apps


def record_apps(store: Store, apps: dict[str, App]) -> bool:
    """Make the store's apps these (the sync to central follows); whether anything changed."""
    if apps == store.apps():
        return False
    store.put_apps(list(apps.values()), replace_all=True)
    return True


def job_preamble(app: App, job: Job, apps_dir: str) -> str:
    """The shell text a run of ``job`` starts with: the app's, or what its ``shell_preamble``
    method returns for this job (the app file is imported in this process for it)."""
    if not app.preamble_per_job:
        return app.shell_preamble
    what = f"app {app.name}: shell_preamble() for job {job.id}"
    cls = getattr(import_app_module(Path(apps_dir) / app.source), app.class_name)
    try:
        value = cls(job).shell_preamble()
    except Exception as exc:
        raise AppError(f"{what} raised {type(exc).__name__}: {exc}") from exc
    return preamble_text(value, what)


def command_app_source(name: str, template: str, description: str = "") -> str:
    """Python source of a simple command app, as ``balsamd app create`` writes it."""
    if keyword.iskeyword(name):
        raise AppError(f"app name {name!r} is a Python keyword; pick another name, e.g. {name}_app")
    if not NAME.match(name):
        raise AppError(f"app name {name!r} is not usable: use letters, digits and _, not starting with a digit")
    if not template.strip():
        raise AppError("the command template is empty; give the command to run, e.g. 'echo {{ msg }}'")
    _check_template(name, template)
    doc = description or f"Runs: {template}"
    return (
        "from balsamd.apps import ApplicationDefinition\n\n\n"
        f"class {name}(ApplicationDefinition):\n"
        f"    {doc!r}\n\n"
        f"    command_template = {template!r}\n"
    )
