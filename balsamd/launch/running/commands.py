"""What a run executes: argv and environment for a job, decided without starting anything."""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balsamd.apps import AppError, render_command, value_words
from balsamd.config import LauncherSettings
from balsamd.launch.running.mpi import build_mpi_command
from balsamd.launch.running.protocol import Placement
from balsamd.models import App, AppKind, Job
from balsamd.templates import PLACEHOLDER

# Text with any of these needs a shell; anything else is split and executed directly,
# which saves a process per run for the common simple command.
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]#~=%{}!\n\\]")
OUTPUT_FILE = "job.out"
PY_TASK_FILE = ".balsamd-task"  # a multi-rank Python app's job, for balsamd.launch.python.rank
PY_RESULT_FILE = ".balsamd-result"


def job_environment(job: Job, app: App, placement: Placement, site_path: str, gpu_env: list[str]) -> dict[str, str]:
    """Variables a run gets on top of the launcher's environment."""
    gpus = placement.gpu_ids.get(placement.hosts[0], [])
    shared = shared_environment(app, job.threads_per_rank, gpus, site_path, gpu_env)
    return with_job_variables(shared, job)


def shared_environment(
    app: App, threads_per_rank: int, gpu_ids: list[int], site_path: str, gpu_env: list[str]
) -> dict[str, str]:
    """The variables every run of ``app`` with these threads and GPUs gets alike (a launcher
    starting thousands of short runs a second computes them once)."""
    env = dict(app.environment)
    env.update(BALSAMD_APP=app.name, BALSAMD_SITE=site_path, OMP_NUM_THREADS=str(threads_per_rank))
    env.update(gpu_environment(gpu_ids, gpu_env))
    if app.kind == AppKind.PYTHON:
        env["PYTHONPATH"] = python_path()
    return env


def with_job_variables(shared: dict[str, str], job: Job) -> dict[str, str]:
    return {**shared, "BALSAMD_JOB_ID": job.id, "BALSAMD_WORKDIR": job.workdir}


@functools.cache
def python_path() -> str:
    """PYTHONPATH of Python-app runs: ranks started by an MPI launcher must import balsamd the
    way this process did."""
    return os.pathsep.join(filter(None, [package_root(), os.environ.get("PYTHONPATH")]))


@functools.cache
def package_root() -> str:
    """The directory that holds the balsamd package (also inside an extracted zipapp)."""
    import balsamd

    return str(Path(balsamd.__file__).resolve().parent.parent)


def app_argv(app: App, job: Job) -> list[str]:
    """The command of one rank: the template's words with the job's values, or the Python-app
    entry point; a template that needs a shell runs in one, its values quoted."""
    if app.kind == AppKind.PYTHON:
        return [sys.executable, "-m", "balsamd.launch.python.rank", PY_TASK_FILE, PY_RESULT_FILE]
    words = template_words(app.command_template)
    if words is None:
        return ["/bin/sh", "-c", render_command(app.command_template, job.parameters)]
    params = job.parameters
    try:
        return [filled for word in words for filled in _fill(word, params)]
    except KeyError as exc:
        raise AppError(f"command template needs parameter {exc.args[0]!r}, which the job does not have") from None


def _fill(word: tuple[str | Slot, ...], params: dict[str, Any]) -> list[str]:
    """The words one template word becomes: one, or as many as a list's items (text around the
    placeholder sticks to the first and last of them, as the shell would join it)."""
    if len(word) == 1 and isinstance(word[0], Slot):
        return value_words(params[word[0].name])
    out = [""]
    for part in word:
        if isinstance(part, str):
            out[-1] += part
            continue
        first, *rest = value_words(params[part.name]) or [""]
        out[-1] += first
        out.extend(rest)
    return out


@dataclass(frozen=True)
class Slot:
    """Where a parameter's value goes in a word of a template."""

    name: str


@functools.lru_cache(maxsize=256)
def template_words(template: str) -> tuple[tuple[str | Slot, ...], ...] | None:
    """The words of a template that needs no shell, each its literal text and parameter slots, or
    None when it needs one.  Split once per template, so that a value's size costs its copy only
    (splitting a rendered command of a large value took seconds per megabyte, and grew with its
    square)."""
    if _SHELL_SYNTAX.search(PLACEHOLDER.sub("", template)):
        return None
    names: list[str] = []

    def mark(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return f"\0{len(names) - 1}\0"

    words = []
    for word in shlex.split(PLACEHOLDER.sub(mark, template)):
        parts = word.split("\0")  # text, slot, text, slot, ..., text
        words.append(tuple(Slot(names[int(p)]) if i % 2 else p for i, p in enumerate(parts) if i % 2 or p))
    return tuple(words)


def run_argv(
    app: App,
    job: Job,
    placement: Placement,
    settings: LauncherSettings,
    use_mpi: bool,
    job_env: Mapping[str, str],
    preamble: str | None = None,
) -> list[str]:
    """Full argv of a run: the app command, wrapped in an MPI launch when asked, after the
    shell preamble when there is one (``preamble``, else the app's own text)."""
    argv = app_argv(app, job)
    if use_mpi:
        argv = build_mpi_command(
            settings.mpi,
            app_argv=argv,
            hosts=placement.hosts,
            ranks_per_node=job.ranks_per_node,
            threads_per_rank=job.threads_per_rank,
            threads_per_core=job.threads_per_core,
            gpus_per_rank=job.gpus_per_rank,
            env=job_env,
            launch_params=job.launch_params,
            executable=settings.mpiexec,
        )
    preamble = app.shell_preamble if preamble is None else preamble
    if preamble.strip():
        argv = ["/bin/sh", "-c", f"{preamble}\nexec {shlex.join(argv)}"]
    return argv


def gpu_environment(gpu_ids: list[int], variables: list[str]) -> dict[str, str]:
    """Bind a run to its GPUs: each variable (CUDA_VISIBLE_DEVICES, ...) gets ``0,1,...``.

    No GPU ids means no variables: a CPU-only run keeps the environment it inherits.
    """
    if not gpu_ids:
        return {}
    return dict.fromkeys(variables, ",".join(str(gpu) for gpu in gpu_ids))
