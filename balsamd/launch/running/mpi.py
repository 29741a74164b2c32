"""MPI launch commands, one builder per launcher flavor, always as argv lists.

A command is built from option groups (each a flag and its values) so that a job's
``launch_params`` can replace an option the flavor sets instead of repeating it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import chain

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class _Shape:
    hosts: list[str]
    ranks_per_node: int
    threads_per_rank: int
    threads_per_core: int
    gpus_per_rank: float

    @property
    def ranks(self) -> int:
        return len(self.hosts) * self.ranks_per_node

    @property
    def cores_per_rank(self) -> int:
        return max(1, math.ceil(self.threads_per_rank / self.threads_per_core))


_Options = list[list[str]]
_EnvOptions = Callable[[Mapping[str, str]], _Options]


def _assignments(flag: str) -> _EnvOptions:
    """One ``flag K=V`` option per variable, the form most launchers take."""
    return lambda env: [[flag, f"{key}={value}"] for key, value in env.items()]


def _mpich_env(env: Mapping[str, str]) -> _Options:
    return [["-genv", key, value] for key, value in env.items()]


def _mpich(s: _Shape) -> _Options:
    return [
        ["-n", str(s.ranks)],
        ["--ppn", str(s.ranks_per_node)],
        ["--hosts", ",".join(s.hosts)],
    ]


def _openmpi(s: _Shape) -> _Options:
    return [
        ["-n", str(s.ranks)],
        ["--map-by", f"ppr:{s.ranks_per_node}:node"],
        ["-H", ",".join(f"{host}:{s.ranks_per_node}" for host in s.hosts)],
    ]


def _srun(s: _Shape) -> _Options:
    return [
        ["-n", str(s.ranks)],
        ["--ntasks-per-node", str(s.ranks_per_node)],
        ["--nodelist", ",".join(s.hosts)],
        ["--nodes", str(len(s.hosts))],
        ["--cpus-per-task", str(s.cores_per_rank)],
    ]


def _slurm_export(env: Mapping[str, str]) -> _Options:
    """``--export=ALL,K=V``; srun splits on commas unless the whole ``K=V`` is quoted."""
    items = ["ALL"]
    for key, value in env.items():
        if "'" in value or '"' in value:
            raise ValueError(
                f"srun --export cannot carry quote characters (in {key}); "
                f"set {key} in the launcher's environment instead"
            )
        items.append(f'"{key}={value}"' if "," in value else f"{key}={value}")
    return [["--export=" + ",".join(items)]]


def _aprun(s: _Shape) -> _Options:
    return [
        ["-n", str(s.ranks)],
        ["-N", str(s.ranks_per_node)],
        ["-L", ",".join(s.hosts)],
        ["-cc", "depth"],
        ["-d", str(s.threads_per_rank)],
        ["-j", str(s.threads_per_core)],
    ]


def _jsrun(s: _Shape) -> _Options:
    if s.gpus_per_rank != int(s.gpus_per_rank):
        raise ValueError(f"jsrun gives each rank whole GPUs; gpus_per_rank={s.gpus_per_rank:g} must be a whole number")
    return [
        ["--nrs", str(s.ranks)],
        ["--tasks_per_rs", "1"],
        ["--rs_per_host", str(s.ranks_per_node)],
        ["--cpu_per_rs", str(s.cores_per_rank)],
        ["--gpu_per_rs", str(int(s.gpus_per_rank))],
    ]


def _pbs_cray(s: _Shape) -> _Options:
    return [
        ["-np", str(s.ranks)],
        ["-ppn", str(s.ranks_per_node)],
        ["--hosts", ",".join(s.hosts)],
        ["--cpu-bind", "depth"],
        ["-d", str(s.threads_per_rank)],
    ]


@dataclass(frozen=True)
class _Flavor:
    program: str
    # whether the site's ``mpiexec`` setting names this program; srun, aprun, jsrun go by name
    is_mpiexec: bool
    options: Callable[[_Shape], _Options]
    env: _EnvOptions
    env_at: int | None = None  # index among the options where variables go; None: after them
    # jsrun spells its long options with underscores (--rs_per_host); the others use dashes
    dashes: bool = True


_FLAVORS: dict[str, _Flavor] = {
    "mpich": _Flavor("mpiexec", True, _mpich, _mpich_env, env_at=2),
    "openmpi": _Flavor("mpirun", True, _openmpi, _assignments("-x"), env_at=2),
    "srun": _Flavor("srun", False, _srun, _slurm_export),
    "aprun": _Flavor("aprun", False, _aprun, _assignments("-e")),
    "jsrun": _Flavor("jsrun", False, _jsrun, _assignments("-E"), dashes=False),
    "pbs-cray": _Flavor("mpiexec", True, _pbs_cray, _assignments("--env")),
}
MPI_FLAVORS: tuple[str, ...] = tuple(_FLAVORS)


def build_mpi_command(
    flavor: str,
    *,
    app_argv: list[str],
    hosts: list[str],
    ranks_per_node: int,
    threads_per_rank: int,
    threads_per_core: int,
    gpus_per_rank: float,
    env: Mapping[str, str] | None = None,
    launch_params: Mapping[str, str] | None = None,
    executable: str | None = None,
) -> list[str]:
    """The argv that runs ``app_argv`` on ``hosts`` with the given flavor's launcher.

    ``env`` is passed through the launcher's own option so every rank on every host sees it.
    Each ``launch_params`` entry becomes ``--key value`` (``""``: a bare ``--key``) before the
    command, replacing the flavor's own ``--key`` if it sets one.  ``executable`` (the site's
    ``launcher.mpiexec`` setting) replaces the program of the mpiexec-style flavors (mpich,
    openmpi, pbs-cray); srun, aprun and jsrun are always called by name.
    """
    try:
        chosen = _FLAVORS[flavor]
    except KeyError:
        raise ValueError(f"unknown MPI flavor {flavor!r}; valid flavors: {', '.join(MPI_FLAVORS)}") from None
    if not app_argv:
        raise ValueError("nothing to launch: app_argv is empty")
    if not hosts:
        raise ValueError("a launch needs at least one host")
    counts = {
        "ranks_per_node": ranks_per_node,
        "threads_per_rank": threads_per_rank,
        "threads_per_core": threads_per_core,
    }
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    if gpus_per_rank < 0:
        raise ValueError(f"gpus_per_rank must be >= 0, not {gpus_per_rank}")
    env = env or {}
    for key in env:
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    shape = _Shape(hosts, ranks_per_node, threads_per_rank, threads_per_core, gpus_per_rank)
    options, extra = _apply_params(chosen.options(shape), launch_params or {}, chosen.dashes)
    at = len(options) if chosen.env_at is None else chosen.env_at
    options[at:at] = chosen.env(env)
    program = (executable if chosen.is_mpiexec else None) or chosen.program
    return [program, *chain.from_iterable(options + extra), *app_argv]


def _apply_params(options: _Options, params: Mapping[str, str], dashes: bool) -> tuple[_Options, _Options]:
    """Replace the options that ``params`` name; return the rest of ``params`` as options."""
    extra: _Options = []
    for key, value in params.items():
        if not _PARAM_KEY.fullmatch(key):
            raise ValueError(f"launch parameter {key!r} is not an option name (letters, digits, _ and -)")
        flag = "--" + (key.replace("_", "-") if dashes else key)
        option = [flag, value] if value else [flag]
        same = [i for i, existing in enumerate(options) if existing[0] == flag]
        if same:
            options[same[0]] = option
        else:
            extra.append(option)
    return options, extra
