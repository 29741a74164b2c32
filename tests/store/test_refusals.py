"""Bad writes are refused inside the contract: every transport gives the same error, with the
same message, and nothing is written.  The first cases are what a review did over the RPC with
the site's secret before the checks moved into the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from balsamd.models import App, AppKind, AppParameter, BatchJob, ClaimLimits, JobChanges, JobSpec, StateUpdate
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.validate import Refused
from tests.conftest import make_jobs


def _session(s: Store) -> str:
    return s.open_session().id


def _job(s: Store) -> str:
    return make_jobs(s, 1)[0].id


def _batch(s: Store) -> str:
    return s.create_batch_job(BatchJob(id="b3", num_nodes=1, wall_time_min=10)).id


def _nothing(_s: Store) -> None:
    return None


# case -> (what it needs made first, the call given that, the message it is refused with)
CASES: dict[str, tuple[Callable[[Store], Any], Callable[[Store, Any], object], str]] = {
    "a workdir that climbs out of data/": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="../../x")]),
        "job: workdir '../../x' contains '..'; give a path inside the site's data/ directory without it",
    ),
    "a negative node count": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="w", num_nodes=-5)]),
        "job: num_nodes must be a whole number from 1 to 1048576 (got -5); give one in that range",
    ),
    "a missing required parameter": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="needs", workdir="w")]),
        "job: missing required parameter x (the input): add -p x=VALUE",
    ),
    "a batch job id with a newline": (
        _nothing,
        lambda s, _: s.create_batch_job(BatchJob(id="b1\n#SBATCH --wrap=id", num_nodes=1, wall_time_min=10)),
        "batch job refused: id 'b1\\n#SBATCH --wrap=id' must be 1-64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit",
    ),
    "a queue that is two words": (
        _nothing,
        lambda s, _: s.create_batch_job(BatchJob(id="b2", num_nodes=1, wall_time_min=10, queue="debug -A x")),
        "batch job refused: queue 'debug -A x' is not a scheduler's queue name (letters, digits and _.@+:-, one word); "
        "give the scheduler's name for it",
    ),
    "more nodes than the site has": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="w", num_nodes=65)]),
        "job: num_nodes=65 exceeds the site's max_nodes=64 (lower --num-nodes, or raise [nodes] max_nodes in "
        "settings.toml)",
    ),
    "an unknown parameter and a tag key with '='": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="w", parameters={"y": 1}, tags={"a=b": "c"})]),
        "job: unknown parameter(s) y for app noop (it takes: none); correct the name or leave it out; tag key 'a=b' "
        "must be one word without '=', spaces or control characters; give KEY=VALUE with a KEY such as experiment "
        "or run_1",
    ),
    "a launch parameter that is not an option name": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="w", launch_params={"x; rm -rf ~": ""})]),
        "job: launch parameter 'x; rm -rf ~' is not an option name: give the MPI launcher's option without dashes, "
        "of letters, digits, _ and - (e.g. --launch-param cpu-bind=core)",
    ),
    "a launch parameter the site does not allow": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="w", launch_params={"task-prolog": "/tmp/x"})]),
        "job: launch parameter 'task-prolog' is not allowed at this site (allowed: cpu-bind); its owner may add it "
        "to [launcher] allowed_launch_params in settings.toml",
    ),
    "a parameter of three megabytes": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="echo", workdir="w", parameters={"x": "y" * 3_000_000})]),
        "job: parameters take 3.0 MB; a job keeps at most 1.0 MB of them (pass large inputs as files in its workdir)",
    ),
    "a workdir too long for a filesystem": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="d/" + "x" * 300)]),
        "job: workdir of 302 characters is too long: at most 1024, and 255 bytes a directory name",
    ),
    "a tag too long": (
        _nothing,
        lambda s, _: s.create_jobs([JobSpec(app="noop", workdir="w", tags={"k": "v" * 2000})]),
        "job: tag 'k'... is too long: keys take at most 128 characters, values 1024; shorten it",
    ),
    "a session label spanning lines": (
        _nothing,
        lambda s, _: s.open_session(label="a\nb"),
        "session: label must be one line of at most 1024 characters",
    ),
    "a negative claim size": (
        _session,
        lambda s, session: s.claim(session, ClaimLimits(max_jobs=-1)),
        "claim: max_jobs must not be negative (got -1)",
    ),
    "an edit with nothing in it": (
        _job,
        lambda s, job: s.update_jobs({job: JobChanges()}),
        "nothing to edit: give parameters, tags, data or resources",
    ),
    "an edit to resources the site's nodes do not have": (
        _job,
        lambda s, job: s.update_jobs({job: JobChanges(num_nodes=65, ranks_per_node=2)}),
        "num_nodes=65 exceeds the site's max_nodes=64 (lower --num-nodes, or raise [nodes] max_nodes in settings.toml)",
    ),
    "an edit to a wall time no job can have": (
        _job,
        lambda s, job: s.update_jobs({job: JobChanges(wall_time_min=-1.0)}),
        "wall_time_min must be a finite number, 0 or more (got -1.0); give one",
    ),
    "an app whose placeholder is quoted, or not a parameter": (
        _nothing,
        lambda s, _: s.put_apps(
            [App(name="q", command_template='echo "{{ x }}" {{ y }}', parameters={"x": AppParameter()})]
        ),
        "app 'q': placeholder {{ y }} is not a parameter; placeholder {{ x }} is inside \" quotes in the command "
        "template; remove those quotes (every value is shell-quoted already)",
    ),
    "an app from a file outside apps/": (
        _nothing,
        lambda s, _: s.put_apps([App(name="p", kind=AppKind.PYTHON, source="../../x.py", class_name="p")]),
        "app 'p': source '../../x.py' must be the name of a .py file in the site's apps/ directory",
    ),
    "an app whose cleanup glob leaves its workdir": (
        _nothing,
        lambda s, _: s.put_apps([App(name="c", command_template="true", cleanup_files=["*.tmp", "../*"])]),
        "app 'c': cleanup_files glob '../*' goes up with '..'; it may name files in the workdir only",
    ),
    "a meta key that is no cursor": (
        _nothing,
        lambda s, _: s.meta_set({"store_id": "forged"}),
        "meta: 'store_id' does not start with 'sync.' or 'cleanup.': only cursors can be set",
    ),
    "a scheduler id that is two words": (
        _batch,
        lambda s, batch: s.update_batch_job(batch, scheduler_id="12 34"),
        "batch job b3: scheduler id '12 34' is not one word of letters, digits and _.@+:[]-",
    ),
}


def snapshot(store: Store) -> tuple[object, ...]:
    return store.filter(), store.events(), store.batch_jobs(), store.sessions()


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_write_is_refused_with_its_reason_and_nothing_is_written(store: Store, case: str) -> None:
    prepare, act, message = CASES[case]
    store.put_apps(
        [App(name="needs", command_template="echo {{ x }}", parameters={"x": AppParameter(help="the input")})]
    )
    made = prepare(store)
    before = snapshot(store)
    with pytest.raises(Refused) as refused:
        act(store, made)
    assert str(refused.value).endswith(message)
    assert snapshot(store) == before


def test_one_bad_report_is_rejected_and_the_rest_of_its_batch_recorded(store: Store) -> None:
    session = store.open_session()
    jobs = make_jobs(store, 2)
    store.claim(session.id, ClaimLimits())
    bad = StateUpdate(job_id=jobs[0].id, state=JobState.KILLED, ts=1.0)
    good = StateUpdate(job_id=jobs[1].id, state=JobState.RUNNING, ts=1.0)
    outcome = store.update_states(session.id, [bad, good])
    assert outcome.rejected == {jobs[0].id: "a launcher reports RUNNING, RUN_DONE, RUN_ERROR, RUN_TIMEOUT, not KILLED"}
    assert outcome.applied == [jobs[1].id]
    assert [store.get(j.id).state for j in jobs] == [JobState.PREPROCESSED, JobState.RUNNING]
