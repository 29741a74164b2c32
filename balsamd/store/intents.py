"""What an intent from the central database asks for, read without trusting it.

Users write intents with plain SQL, so every field is checked here before the store acts on
it: a malformed intent becomes a rejection with the reason, never an error that stops a site
from syncing.  Pure functions; the store applies what they return (``SiteStore.apply_intents``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from balsamd import ids
from balsamd.appcode import code_problems, name_problem
from balsamd.batchspec import batch_job, read_spec
from balsamd.models import (
    App,
    BatchJob,
    DeclaredApp,
    Intent,
    IntentKind,
    IntentOutcome,
    JobChanges,
    JobSpec,
    declared_app_file,
)
from balsamd.validate import JobSpecError, Refused, job_spec


@dataclass(frozen=True)
class Create:
    jobs: list[tuple[str, JobSpec]]  # (id chosen by the requester, what to create)


@dataclass(frozen=True)
class Edit:
    changes: JobChanges


@dataclass(frozen=True)
class AddParents:
    parent_ids: list[str]


@dataclass(frozen=True)
class KillOrRetry:
    kind: IntentKind


@dataclass(frozen=True)
class InstallApp:
    name: str
    code: str  # the module's text: imports and the class (``balsamd.appcode``)


@dataclass(frozen=True)
class BatchCreate:
    batch: BatchJob  # its id is the one the requester chose (the intent's job_id)


@dataclass(frozen=True)
class BatchDelete:
    batch_id: str


Action = Create | Edit | AddParents | KillOrRetry | InstallApp | BatchCreate | BatchDelete

MAX_PARENTS = 10_000  # of one add_parents intent: more is no request a person makes


def parse_intent(intent: Intent) -> Action:
    """The action an intent asks for; Refused saying what is wrong with it."""
    where = f"{intent.kind} intent {intent.id}"
    try:
        kind = IntentKind(intent.kind)
    except ValueError:
        raise Refused(where, [f"unknown intent kind {intent.kind!r}; use one of {', '.join(IntentKind)}"]) from None
    if not isinstance(intent.payload, Mapping):
        raise Refused(where, ["its payload must be a JSON object"])
    if kind == IntentKind.CREATE:
        return Create(_creations(intent))
    if kind == IntentKind.BATCH_CREATE:
        return BatchCreate(_batch_request(intent, where))
    if kind == IntentKind.BATCH_DELETE:
        return BatchDelete(intent.job_id)
    if kind == IntentKind.UPDATE:
        try:
            return Edit(msgspec.convert(intent.payload, JobChanges))
        except msgspec.ValidationError as exc:
            raise Refused(
                where, [f"only parameters, tags and data (as objects) and resources can be edited: {exc}"]
            ) from None
    if kind == IntentKind.APP:
        return _install(intent, where)
    if kind == IntentKind.ADD_PARENTS:
        return _add_parents(intent.payload, where)
    return KillOrRetry(kind)


def _install(intent: Intent, where: str) -> InstallApp:
    name, code = intent.payload.get("name"), intent.payload.get("code")
    problem = name_problem(name)
    if problem:
        raise Refused(where, [problem])
    assert isinstance(name, str)
    problems = code_problems(name, code)
    if problems:
        raise Refused(f"app {name}", problems)
    assert isinstance(code, str)
    return InstallApp(name, code)


def install_refusal(
    action: InstallApp, owner: str, accept_from: list[str], apps: Mapping[str, App], declared: DeclaredApp | None
) -> str | None:
    """Why the site does not install a declared app (None when it does): its author must be
    named in ``[apps] accept_from``, and it replaces no app of the site's own files, nor one
    another user declared."""
    if owner not in accept_from:
        return (
            f"central user {owner or '(none)'} may not install apps at this site: ask the site's owner to add you "
            "to [apps] accept_from in settings.toml"
        )
    file = declared_app_file(action.name)
    existing = apps.get(action.name)
    if existing is not None and existing.source != file:
        return (
            f"the site has its own app {action.name} (apps/{existing.source}), which a declared app never replaces; "
            "rename your class"
        )
    if declared is None and any(app.source == file for app in apps.values()):
        return f"apps/{file} is a file of the site's own, which a declared app never replaces; rename your class"
    if declared is not None and declared.owner != owner:
        return f"app {action.name} was declared by {declared.owner}; only they may replace it: rename your class"
    return None


def _creations(intent: Intent) -> list[tuple[str, JobSpec]]:
    specs = intent.payload.get("jobs")
    if not isinstance(specs, list) or not specs:
        raise Refused("create intent", ['it needs "jobs": a non-empty list of job specs'])
    out = []
    for n, spec in enumerate(specs):
        where = f"job {n}" if len(specs) > 1 else "job"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("id"), str):
            raise JobSpecError(where, ['it is not an object with a string "id"'])
        if not ids.looks_like_id(spec["id"]):
            raise JobSpecError(where, [f"id {spec['id']!r} is not a balsamd id (26 letters and digits, see ids.py)"])
        _check_ownership(spec["id"], intent, where)
        out.append((spec["id"], job_spec({k: v for k, v in spec.items() if k != "id"}, where)))
    if len({job_id for job_id, _ in out}) != len(out):
        raise Refused("create intent", ["it names a job id more than once"])
    return out


def _add_parents(payload: Mapping[str, object], where: str) -> AddParents:
    parents = payload.get("parent_ids")
    if (
        not isinstance(parents, list)
        or not 0 < len(parents) <= MAX_PARENTS
        or not all(isinstance(p, str) and ids.looks_like_id(p) for p in parents)
    ):
        raise Refused(where, [f'it needs "parent_ids": a list of 1 to {MAX_PARENTS} job ids'])
    return AddParents(list(parents))


def _batch_request(intent: Intent, where: str) -> BatchJob:
    """The batch job a batch_create asks for, under the id it names (its job_id)."""
    if not ids.looks_like_id(intent.job_id):
        raise Refused(where, [f"batch job id {intent.job_id[:40]!r} is not a balsamd id (26 letters and digits)"])
    return batch_job(intent.job_id, read_spec(intent.payload, where))


def _check_ownership(job_id: str, intent: Intent, where: str) -> None:
    """A create makes new jobs at the site it addresses, owned by its author: a row central
    holds under the id must be at this site and the author's (what the API writes with the
    intent).  Anything else would put this site's job, and its events, on someone else's row."""
    row = intent.central.get(job_id)
    if row is None:
        return
    if not row.here:
        raise Refused(where, [f"id {job_id} is taken in the central database by a job of another site"])
    if row.owner != intent.owner:
        raise Refused(where, [f"id {job_id} is taken in the central database by a job {intent.owner or 'the site'} "
                              "does not own"])  # fmt: skip


_outcome_decode = msgspec.json.Decoder(IntentOutcome).decode
_encode = msgspec.json.Encoder().encode


def encode_outcome(outcome: IntentOutcome) -> str:
    return _encode(outcome).decode()


def decode_outcome(text: str) -> IntentOutcome:
    return _outcome_decode(text)
