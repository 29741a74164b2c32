"""What the daemon tells a hook about its job: where its workdir is, and its parents.

A central user's job may name parents, and its hooks run as the site's owner with the
parents' data and workdirs within reach.  So a hook reads a parent only when the parent is
its job's owner's (the site's own jobs read any), and a workdir only when it resolves inside
the site's data/ (a symbolic link a user's run left on its path is not followed out).
"""

from __future__ import annotations

import msgspec

from balsamd.apps import ParentJob
from balsamd.daemon.hooks import ParentsReply
from balsamd.launch.workdirs import WorkdirOutside, job_workdir
from balsamd.models import Job
from balsamd.store.queries import JobFilter
from balsamd.store.store import SiteStore


def hook_workdir(data_prefix: str, job: Job) -> str:
    """The absolute workdir a hook of ``job`` runs in (``WorkdirOutside`` when it may not)."""
    return job_workdir(data_prefix, job)


def parent_refusal(job: Job, parent: Job) -> str | None:
    """Why a hook of ``job`` may not read ``parent``, if it may not."""
    if job.owner and parent.owner != job.owner:
        return f"parent {parent.id} of job {job.id} is another user's; a hook reads only its own user's parents"
    return None


def parents_reply(store: SiteStore, data_prefix: str, job_id: str) -> ParentsReply:
    """The parents of ``job_id`` as a hook of it may see them, in the order of its parent_ids
    (a parent removed since is left out)."""
    job = store.get(job_id)
    if not job.parent_ids:
        return ParentsReply()
    found = {p.id: p for p in store.filter(JobFilter(ids=job.parent_ids))}
    parents = []
    for parent in (found[i] for i in job.parent_ids if i in found):
        refusal = parent_refusal(job, parent)
        if refusal is not None:
            return ParentsReply(error=refusal)
        try:
            path = job_workdir(data_prefix, parent)
        except WorkdirOutside as exc:
            return ParentsReply(error=f"parent {parent.id}: {exc}")
        parents.append(ParentJob(**msgspec.structs.asdict(parent), workdir_path=path))
    return ParentsReply(parents)
