"""Job scripts: a site-editable template filled with one batch job's values.

The template (SITE/job-template.sh, written at `site init` from the scheduler's default)
holds ``{{ name }}`` placeholders.  ``directives`` expands to the scheduler's header lines
for the batch job, ``launcher`` to the command that runs `balsamd launcher` in it; users add
module loads or extra directives around them.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from balsamd.models import BatchJob, JobMode
from balsamd.sched.base import hms
from balsamd.validate import script_word_problems

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
COMMAND_ENV = "BALSAMD_COMMAND"

GENERIC_TEMPLATE = """\
#!/bin/bash
{{ directives }}
# Site-specific setup goes here (module loads, environment variables, MPI4PY_LIBMPI, ...).

{{ launcher }}
"""


class TemplateError(ValueError):
    pass


def balsamd_command() -> list[str]:
    """How a batch job calls balsamd: the same program the daemon runs as (a zipapp, the
    console script's Python), or $BALSAMD_COMMAND when the site sets it."""
    if os.environ.get(COMMAND_ENV):
        return shlex.split(os.environ[COMMAND_ENV])
    entry = Path(sys.argv[0])
    if entry.suffix == ".pyz" and entry.is_file():
        return [sys.executable, str(entry.resolve())]
    return [sys.executable, "-m", "balsamd"]


def launcher_command(batch: BatchJob, site: Path) -> str:
    """What runs the batch job's launcher; with partitions, one launcher per partition on its
    share of the allocation's nodes (in order), all started at once and waited for."""
    if not batch.partitions:
        return shlex.join(_launcher_argv(batch, site, batch.job_mode, batch.filter_tags))
    lines = []
    first = 0
    for part in batch.partitions:
        argv = _launcher_argv(batch, site, part.job_mode, part.filter_tags)
        lines.append(shlex.join([*argv, "--node-share", f"{first}:{part.num_nodes}"]) + " &")
        first += part.num_nodes
    return "\n".join([*lines, "wait"])


def _launcher_argv(batch: BatchJob, site: Path, mode: JobMode, tags: dict[str, str]) -> list[str]:
    argv = [
        *balsamd_command(), "--site", str(site), "launcher", "--job-mode", str(mode),
        "--wall-time-min", str(batch.wall_time_min), "--batch-job", batch.id,
    ]  # fmt: skip
    for key, value in sorted(tags.items()):
        argv += ["--tag", f"{key}={value}"]
    return argv


def optional_directives(batch: BatchJob, form: str) -> list[str]:
    """A directive line per optional scheduler parameter, ``form`` holding {key} and {value}.
    Both were checked as one word each (``validate.script_word_problems``); the value is quoted
    all the same, as everything a script's reader splits on spaces."""
    return [form.format(key=key, value=shlex.quote(value)) for key, value in sorted(batch.optional_params.items())]


def values(batch: BatchJob, site: Path, directives: list[str]) -> dict[str, str]:
    """What a job script's placeholders stand for.  The batch job's words are checked again here
    (a record made before the store checked them must not reach a script either) and every value
    the shell reads is quoted."""
    problems = script_word_problems(batch)
    if problems:
        raise TemplateError(f"batch job {batch.id!r} cannot go into a job script: " + "; ".join(problems))
    return {
        "directives": "\n".join(directives),
        "launcher": launcher_command(batch, site),
        "batch_job_id": shlex.quote(batch.id),
        "num_nodes": str(batch.num_nodes),
        "wall_time_min": str(batch.wall_time_min),
        "walltime": hms(batch.wall_time_min),
        "queue": shlex.quote(batch.queue),
        "project": shlex.quote(batch.project),
        "job_mode": str(batch.job_mode),
        "site": shlex.quote(str(site)),
    }


def render(template: str, fields: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fields:
            raise TemplateError(
                f"job template uses {{{{ {name} }}}}, which is not known; known: {', '.join(sorted(fields))}"
            )
        return fields[name]

    return PLACEHOLDER.sub(fill, template)
