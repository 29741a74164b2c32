"""Checks a job request against its app and the site's node shape, before anything is written.

Pure functions: every problem is collected and reported at once, each saying what to change.
"""

from __future__ import annotations

import math
import posixpath
from typing import Any

import msgspec

from balsamd.config import NodeSettings
from balsamd.models import App, Job


class JobSpecError(ValueError):
    """A job request that cannot be accepted; ``problems`` lists every reason."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(f"{where}: " + "; ".join(problems))
        self.problems = problems


def normalize_workdir(workdir: str) -> str:
    """Workdirs are relative to the site's data/ directory and may not climb out of it."""
    if not workdir or not workdir.strip():
        raise ValueError("workdir is empty; give a path relative to the site's data/ directory")
    if workdir.startswith("/"):
        raise ValueError(f"workdir {workdir!r} is absolute; give a path relative to the site's data/")
    if ".." in workdir.split("/"):
        raise ValueError(f"workdir {workdir!r} contains '..'; give a path inside the site's data/ directory without it")
    if any(ord(c) < 32 or ord(c) == 127 for c in workdir):
        raise ValueError(f"workdir {workdir!r} contains a control character; give a plain relative path")
    norm = posixpath.normpath(workdir)
    if norm == ".":
        raise ValueError(f"workdir {workdir!r} is data/ itself; give each job its own directory below it")
    return norm


def resolve_parameters(app: App, given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Parameters with defaults filled in, and the problems found."""
    problems = []
    unknown = sorted(set(given) - set(app.parameters))
    if unknown:
        known = ", ".join(sorted(app.parameters)) or "none"
        problems.append(f"unknown parameter(s) {', '.join(unknown)} for app {app.name} (it takes: {known})")
    resolved = dict(given)
    for name, spec in app.parameters.items():
        if name in given:
            continue
        if spec.required:
            hint = f" ({spec.help})" if spec.help else ""
            problems.append(f"missing required parameter {name}{hint}: add -p {name}=VALUE")
        else:
            resolved[name] = spec.default
    return resolved, problems


def resource_problems(job: Any, nodes: NodeSettings, max_wall_time_min: float | None = None) -> list[str]:
    """Why a job could never run on this site's nodes, or within its longest batch job
    (empty when it fits)."""
    problems = []
    positive = ("num_nodes", "ranks_per_node", "threads_per_rank", "threads_per_core", "node_packing_count")
    for field in positive:
        if getattr(job, field) < 1:
            problems.append(f"{field} must be at least 1 (got {getattr(job, field)})")
    for field in ("gpus_per_rank", "wall_time_min"):
        value = getattr(job, field)
        if not math.isfinite(value) or value < 0:
            problems.append(f"{field} must be a non-negative number (got {value})")
    if problems:
        return problems
    if job.num_nodes > nodes.max_nodes:
        problems.append(
            f"num_nodes={job.num_nodes} exceeds the site's max_nodes={nodes.max_nodes} "
            "(lower --num-nodes, or raise [nodes] max_nodes in settings.toml)"
        )
    cpus = job.ranks_per_node * job.threads_per_rank / job.threads_per_core
    if cpus > nodes.cpus_per_node:
        problems.append(
            f"{job.ranks_per_node} ranks x {job.threads_per_rank} threads / {job.threads_per_core} "
            f"threads per core needs {cpus:g} CPUs per node but nodes have {nodes.cpus_per_node} "
            "(lower --ranks-per-node or --threads-per-rank, or spread over more nodes)"
        )
    gpus = job.ranks_per_node * job.gpus_per_rank
    if gpus > nodes.gpus_per_node + 1e-9:
        problems.append(
            f"{job.ranks_per_node} ranks x {job.gpus_per_rank:g} GPUs needs {gpus:g} GPUs per node "
            f"but nodes have {nodes.gpus_per_node} (lower --gpus-per-rank, or set [nodes] "
            "gpus_per_node in settings.toml if the nodes have GPUs)"
        )
    if max_wall_time_min is not None and job.wall_time_min > max_wall_time_min:
        problems.append(
            f"wall_time_min={job.wall_time_min:g} is longer than the site's longest batch job "
            f"(max_wall_time_min={max_wall_time_min:g}; lower --wall-time-min, or raise [scheduler] "
            "max_wall_time_min in settings.toml)"
        )
    if job.num_nodes > 1 and job.node_packing_count > 1:
        problems.append("node_packing_count > 1 only applies to single-node jobs; set it to 1")
    return problems


CREATE_FIELDS = {
    "app", "workdir", "parameters", "tags", "data", "parent_ids", "num_nodes", "ranks_per_node",
    "threads_per_rank", "threads_per_core", "gpus_per_rank", "node_packing_count",
    "wall_time_min", "launch_params",
}  # fmt: skip


def unknown_app_message(name: str, apps: dict[str, App]) -> str:
    known = ", ".join(sorted(apps)) or "none yet"
    return f"unknown app {name!r} (known: {known}); create it with `balsamd app create {name} --command ...`"


def build_job(
    job_id: str, spec: dict[str, Any], apps: dict[str, App], nodes: NodeSettings, max_wall_time_min: float, where: str
) -> Job:
    """A Job from a creation request, or JobSpecError listing every problem (used by the
    local API and by sync for jobs created through the central database)."""
    unknown = set(spec) - CREATE_FIELDS
    if unknown:
        raise JobSpecError(where, [f"unknown field(s) {sorted(unknown)}; known: {sorted(CREATE_FIELDS)}"])
    problems: list[str] = []
    app = apps.get(spec.get("app", ""))
    if app is None:
        raise JobSpecError(where, [unknown_app_message(spec.get("app", ""), apps)])
    try:
        workdir = normalize_workdir(spec.get("workdir", ""))
    except ValueError as exc:
        problems.append(str(exc))
        workdir = ""
    params, param_problems = resolve_parameters(app, dict(spec.get("parameters") or {}))
    problems += param_problems
    fields = {k: v for k, v in spec.items() if k not in ("parameters", "workdir")}
    fields["parent_ids"] = list(fields.get("parent_ids") or [])
    try:
        job = msgspec.convert({**fields, "id": job_id, "workdir": workdir, "parameters": params}, Job)
    except msgspec.ValidationError as exc:
        raise JobSpecError(where, [*problems, f"bad value: {exc}"]) from None
    problems += resource_problems(job, nodes, max_wall_time_min)
    try:  # the job travels as msgpack (RPC, warm workers): it must fit
        msgspec.msgpack.encode(job)
    except (OverflowError, TypeError, msgspec.EncodeError) as exc:
        problems.append(f"parameters or data cannot be stored ({exc}); pass very large numbers as strings")
    if problems:
        raise JobSpecError(where, problems)
    return job
