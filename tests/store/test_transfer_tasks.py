"""The store's side of the transfer service, over every transport: jobs wait at READY for their
inbound items and at POSTPROCESSED for their outbound ones; items are bound to a task once;
a task's results move jobs on, retry failed items with backoff, and fail a job whose item ran
out of tries with the backend's error; a retry tries the transfer again."""

from __future__ import annotations

import pytest

from balsamd.models import App, JobSpec, TransferSlot
from balsamd.states import JobState
from balsamd.store.contract import Store
from balsamd.transfers.backend import ItemResult
from balsamd.transfers.records import TransferFilter, TransferState
from balsamd.validate import Refused
from tests.store import history, run_all

S = JobState
T = TransferState
STAGED = App(
    name="staged",
    command_template="true",
    transfers={
        "input": TransferSlot(direction="in", local_path="in.dat"),
        "extra": TransferSlot(direction="in"),
        "result": TransferSlot(direction="out", local_path="out.dat"),
    },
)
RSYNC_ERROR = 'rsync: [sender] link_stat "/base/in/1.dat" failed: No such file or directory (2)'


@pytest.fixture
def staged(store: Store) -> Store:
    store.put_apps([STAGED])
    return store


def make(store: Store, n: int = 1, **transfers: str) -> list[str]:
    items = transfers or {"input": "far:/in/1.dat"}
    jobs = store.create_jobs([JobSpec(app="staged", workdir=f"w{i}", transfers=items) for i in range(n)])
    return [j.id for j in jobs]


def run_task(store: Store, task_id: str, ok: bool = True, error: str = "", **kw) -> list[int]:
    """Take every due item in one task and finish it with the same result for each."""
    work = store.transfer_work(1000, kw.get("now"))
    first = work[0]
    task = store.start_transfer_task(task_id, first.direction, first.location, [w.id for w in work], kw.get("now"))
    results = [ItemResult(item_id=i.id, ok=ok, bytes=7 if ok else 0, error=error) for i in task.items]
    store.finish_transfer_task(task_id, results, kw.get("max_attempts", 3), 10.0, kw.get("now"))
    return [i.id for i in task.items]


def state(store: Store, job_id: str) -> JobState:
    return store.get(job_id).state


def test_a_job_waits_ready_for_its_inbound_items_and_moves_on_when_they_are_done(staged: Store) -> None:
    [job] = make(staged)
    assert state(staged, job) == S.READY
    [item] = staged.transfer_work(10)
    assert (item.job_id, item.direction, item.location, item.path, item.local_path, item.workdir) == (
        job, "in", "far", "/in/1.dat", "in.dat", "w0")  # fmt: skip
    run_task(staged, "t1")
    assert history(staged, job) == [S.CREATED, S.READY, S.STAGED_IN, S.PREPROCESSED]
    [done] = staged.transfers(TransferFilter(job_ids=[job]))
    assert (done.state, done.task_id, done.bytes, done.error) == (T.DONE, "t1", 7, "")


def test_jobs_of_an_app_with_slots_but_no_items_pass_through_in_the_same_transaction(staged: Store) -> None:
    [job] = staged.create_jobs([JobSpec(app="staged", workdir="w")])
    assert history(staged, job.id) == [S.CREATED, S.READY, S.STAGED_IN, S.PREPROCESSED]
    run_all(staged, [staged.get(job.id)])
    assert state(staged, job.id) == S.JOB_FINISHED
    assert staged.transfer_work(10) == []


def test_outbound_items_wait_for_the_run_and_the_job_finishes_when_they_are_done(staged: Store) -> None:
    [job] = make(staged, result="far:/out/1.dat", input="far:/in/1.dat")
    run_task(staged, "in")
    assert staged.transfer_work(10) == [], "outbound items wait for the run"
    run_all(staged, [staged.get(job)])
    assert state(staged, job) == S.POSTPROCESSED
    [item] = staged.transfer_work(10)
    assert (item.direction, item.local_path) == ("out", "out.dat")
    run_task(staged, "out")
    assert history(staged, job)[-3:] == [S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED]


def test_work_is_the_oldest_due_items_of_either_direction_up_to_the_limit(staged: Store) -> None:
    first = make(staged, input="far:/in/0.dat", result="far:/out/0.dat")[0]
    run_task(staged, "in")
    run_all(staged, [staged.get(first)])
    later = make(staged, 2, input="far:/in/1.dat", result="far:/out/1.dat")
    not_run_yet = {i.id for i in staged.transfers(TransferFilter(direction="out")) if i.job_id in later}

    two = staged.transfer_work(2)
    every = staged.transfer_work(10)

    assert [(i.job_id, i.direction) for i in two] == [(first, "out"), (later[0], "in")]
    assert [(i.job_id, i.direction) for i in every] == [(first, "out"), (later[0], "in"), (later[1], "in")]
    assert [i.id for i in every] == sorted(i.id for i in every)
    assert not_run_yet.isdisjoint(i.id for i in every), "outbound items of jobs not run yet are not due"


def test_a_slot_without_local_path_takes_the_items_file_name(staged: Store) -> None:
    make(staged, input="far:/in/1.dat", extra="far:/params/run.yaml")
    names = {i.slot: i.local_path for i in staged.transfer_work(10)}
    assert names == {"input": "in.dat", "extra": "run.yaml"}


def test_items_are_bound_to_one_task_only(staged: Store) -> None:
    make(staged, 3)
    ids = [w.id for w in staged.transfer_work(10)]
    first = staged.start_transfer_task("a", "in", "far", ids)
    again = staged.start_transfer_task("b", "in", "far", ids)
    assert [i.id for i in first.items] == ids
    assert again.items == []
    assert [t.id for t in staged.transfer_tasks()] == ["a"]
    assert staged.transfer_work(10) == []


def test_a_task_binds_only_items_of_its_direction_and_location(staged: Store) -> None:
    make(staged, input="far:/in/1.dat", extra="archive:/x.dat")
    ids = [w.id for w in staged.transfer_work(10)]
    task = staged.start_transfer_task("a", "in", "far", ids)
    assert [i.location for i in task.items] == ["far"]


def test_items_of_a_killed_job_are_not_taken_and_are_cancelled(staged: Store) -> None:
    [job] = make(staged)
    staged.kill([job])
    assert staged.transfer_work(10) == []
    assert [i.state for i in staged.transfers()] == [T.CANCELLED]


def test_a_failed_item_is_retried_after_a_backoff_then_fails_its_job_with_the_backends_error(staged: Store) -> None:
    [job] = make(staged)
    run_task(staged, "t1", ok=False, error=RSYNC_ERROR, now=1000.0)
    [item] = staged.transfers()
    assert (item.state, item.attempts, item.not_before, item.error) == (T.PENDING, 1, 1010.0, RSYNC_ERROR)
    assert staged.transfer_work(10, 1009.0) == [], "not before its backoff"
    run_task(staged, "t2", ok=False, error=RSYNC_ERROR, now=1010.0)
    assert staged.transfers()[0].not_before == 1030.0, "the wait doubles"
    run_task(staged, "t3", ok=False, error=RSYNC_ERROR, now=1030.0)
    failed = staged.get(job)
    assert failed.state == S.FAILED
    assert failed.state_reason == f"stage-in of input (far:/in/1.dat) failed after 3 tries: {RSYNC_ERROR}"
    assert staged.transfers()[0].state == T.FAILED


def test_a_failing_item_fails_only_its_own_job(staged: Store) -> None:
    jobs = make(staged, 3)
    work = staged.transfer_work(10)
    task = staged.start_transfer_task("t", "in", "far", [w.id for w in work])
    bad = task.items[1]
    results = [ItemResult(item_id=i.id, ok=i.id != bad.id, error=RSYNC_ERROR) for i in task.items]
    staged.finish_transfer_task("t", results, 1, 0.0)
    assert {j: state(staged, j) for j in jobs} == {j: S.FAILED if j == bad.job_id else S.PREPROCESSED for j in jobs}


def test_a_job_retried_after_a_failed_stage_in_stages_in_again(staged: Store) -> None:
    [job] = make(staged)
    run_task(staged, "t1", ok=False, error=RSYNC_ERROR, max_attempts=1)
    assert staged.retry([job]) == {job: S.READY}
    [item] = staged.transfer_work(10)
    assert (item.state, item.attempts, item.error, item.task_id) == (T.PENDING, 0, "", None)
    run_task(staged, "t2")
    assert state(staged, job) == S.PREPROCESSED


def test_a_job_retried_after_a_failed_stage_out_sends_again_without_running_again(staged: Store) -> None:
    [job] = make(staged, input="far:/in/1.dat", result="far:/out/1.dat")
    run_task(staged, "in")
    run_all(staged, [staged.get(job)])
    run_task(staged, "out", ok=False, error="ssh: connect to host dtn port 22: Connection refused", max_attempts=1)
    assert state(staged, job) == S.FAILED
    assert staged.retry([job]) == {job: S.POSTPROCESSED}
    run_task(staged, "out2")
    assert state(staged, job) == S.JOB_FINISHED
    assert staged.get(job).attempts == 1, "the run was not repeated"


def test_a_child_waits_for_its_parents_stage_out(staged: Store) -> None:
    [parent] = make(staged, input="far:/in/1.dat", result="far:/out/1.dat")
    child = staged.create_jobs([JobSpec(app="staged", workdir="c", parent_ids=[parent])])[0].id
    run_task(staged, "in")
    run_all(staged, [staged.get(parent)])
    assert state(staged, child) == S.AWAITING_PARENTS
    run_task(staged, "out")
    assert state(staged, child) == S.PREPROCESSED


def test_items_recorded_done_while_their_task_runs_move_their_jobs_on_at_once(staged: Store) -> None:
    jobs = make(staged, 3)
    work = staged.transfer_work(10)
    task = staged.start_transfer_task("t", "in", "far", [w.id for w in work])
    first, second, third = task.items

    outcome = staged.transfer_items_done("t", [ItemResult(item_id=first.id, ok=True, bytes=5)])

    assert outcome.moved == [first.job_id]
    assert {j: state(staged, j) for j in jobs} == {j: S.PREPROCESSED if j == first.job_id else S.READY for j in jobs}
    assert [t.id for t in staged.transfer_tasks()] == ["t"], "the task still runs"
    results = [ItemResult(item_id=i.id, ok=i.id != third.id, bytes=7, error=RSYNC_ERROR) for i in task.items]
    end = staged.finish_transfer_task("t", results, 1, 0.0)
    assert end.moved == [second.job_id] and list(end.failed) == [third.job_id]
    assert history(staged, first.job_id) == [S.CREATED, S.READY, S.STAGED_IN, S.PREPROCESSED], "moved once"
    assert [(i.state, i.bytes) for i in staged.transfers()] == [(T.DONE, 5), (T.DONE, 7), (T.FAILED, 0)]


def test_a_job_moves_on_early_only_when_all_its_items_that_way_are_done(staged: Store) -> None:
    [job] = make(staged, input="far:/in/1.dat", extra="far:/in/extra.dat")
    work = staged.transfer_work(10)
    task = staged.start_transfer_task("t", "in", "far", [w.id for w in work])

    assert staged.transfer_items_done("t", [ItemResult(item_id=task.items[0].id, ok=True)]).moved == []
    assert state(staged, job) == S.READY
    assert staged.transfer_items_done("t", [ItemResult(item_id=task.items[1].id, ok=True)]).moved == [job]
    assert state(staged, job) == S.PREPROCESSED


def test_recording_items_done_again_or_after_their_task_changes_nothing(staged: Store) -> None:
    [job] = make(staged)
    [item] = staged.transfer_work(10)
    staged.start_transfer_task("t", "in", "far", [item.id])
    done = [ItemResult(item_id=item.id, ok=True, bytes=3)]
    staged.transfer_items_done("t", done)
    events = len(staged.events(job))

    assert staged.transfer_items_done("t", done).moved == []
    assert staged.transfer_items_done("other", done).moved == []
    staged.finish_transfer_task("t", [ItemResult(item_id=item.id, ok=False, error="late")], 1, 0.0)
    assert staged.transfer_items_done("t", done).moved == []
    assert len(staged.events(job)) == events
    assert (staged.transfers()[0].state, state(staged, job)) == (T.DONE, S.PREPROCESSED)


def test_only_moved_items_can_be_recorded_before_their_task_ends(staged: Store) -> None:
    make(staged, 2)
    work = staged.transfer_work(10)
    staged.start_transfer_task("t", "in", "far", [w.id for w in work])
    results = [ItemResult(item_id=work[0].id, ok=True), ItemResult(item_id=work[1].id, ok=False, error="denied")]

    with pytest.raises(Refused, match=r"results\[1\] \(item \d+\) and 0 more are not moved"):
        staged.transfer_items_done("t", results)
    assert {i.state for i in staged.transfers()} == {T.ACTIVE}, "nothing half-written"


@pytest.mark.parametrize("record", ["transfer_items_done", "finish_transfer_task"])
def test_a_size_beyond_what_the_store_keeps_is_refused(staged: Store, record: str) -> None:
    make(staged, 2)
    work = staged.transfer_work(10)
    staged.start_transfer_task("t", "in", "far", [w.id for w in work])
    results = [ItemResult(item_id=work[0].id, ok=True, bytes=7), ItemResult(item_id=work[1].id, ok=True, bytes=2**63)]
    args = () if record == "transfer_items_done" else (3, 1.0)

    with pytest.raises(Refused, match=r"results\[1\] \(item \d+\) and 0 more give more than 9223372036854775807 bytes"):
        getattr(staged, record)("t", results, *args)
    assert [(i.state, i.bytes) for i in staged.transfers()] == [(T.ACTIVE, 0)] * 2, "nothing half-written"


def test_finishing_a_task_again_changes_nothing(staged: Store) -> None:
    [job] = make(staged)
    [item] = staged.transfer_work(10)
    staged.start_transfer_task("t", "in", "far", [item.id])
    staged.finish_transfer_task("t", [ItemResult(item_id=item.id, ok=True, bytes=3)], 3, 1.0)
    events = len(staged.events(job))
    outcome = staged.finish_transfer_task("t", [ItemResult(item_id=item.id, ok=False, error="late")], 3, 1.0)
    assert (outcome.moved, outcome.failed, outcome.retrying) == ([], {}, [])
    assert len(staged.events(job)) == events
    assert staged.transfers()[0].state == T.DONE


def test_an_item_the_backend_did_not_answer_for_counts_as_failed(staged: Store) -> None:
    make(staged)
    [item] = staged.transfer_work(10)
    staged.start_transfer_task("t", "in", "far", [item.id])
    staged.finish_transfer_task("t", [], 3, 1.0)
    assert staged.transfers()[0].error == "no result was given for it"


def test_an_unfinished_task_is_listed_with_its_items_and_its_recorded_external_id(staged: Store) -> None:
    make(staged, 2)
    work = staged.transfer_work(10)
    staged.start_transfer_task("g1", "in", "far", [w.id for w in work])
    staged.transfer_external_id("g1", "0a1b2c3d-submission")
    [task] = staged.transfer_tasks()
    assert (task.id, task.direction, task.location, task.external_id) == ("g1", "in", "far", "0a1b2c3d-submission")
    assert [i.state for i in task.items] == [T.ACTIVE, T.ACTIVE]


def test_items_are_listed_by_state_job_and_task_and_counted(staged: Store) -> None:
    jobs = make(staged, 3)
    work = staged.transfer_work(10)
    staged.start_transfer_task("t", "in", "far", [work[0].id])
    assert [i.job_id for i in staged.transfers(TransferFilter(states=[T.PENDING]))] == jobs[1:]
    assert [i.job_id for i in staged.transfers(TransferFilter(task_id="t"))] == jobs[:1]
    assert [i.job_id for i in staged.transfers(TransferFilter(job_ids=[jobs[2]]))] == jobs[2:]
    assert len(staged.transfers(TransferFilter(limit=2))) == 2
    assert staged.transfer_counts() == {"pending": 2, "active": 1}


def test_deleting_a_job_deletes_its_items(staged: Store) -> None:
    [job] = make(staged)
    staged.kill([job])
    staged.delete([job])
    assert staged.transfers() == []


@pytest.mark.parametrize(
    ("task_id", "direction", "problem"),
    [
        ("", "in", "task_id must be 1 to 64 printable characters"),
        ("t" * 65, "in", "task_id must be 1 to 64 printable characters"),
        ("t\n", "in", "task_id must be 1 to 64 printable characters"),
    ],
)
def test_a_malformed_task_is_refused(staged: Store, task_id: str, direction: str, problem: str) -> None:
    with pytest.raises(Refused, match=problem):
        staged.start_transfer_task(task_id, direction, "far", [1])
