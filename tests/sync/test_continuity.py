"""The continuity decision as a pure function: what the store and central recorded in, what a
round repairs and where its check of acknowledgements resumes out."""

from __future__ import annotations

import msgspec

from balsamd.sync.continuity import Break, CentralRecord, Plan, Repair, SiteRecord, plan

# a store that pushed under mark "m2" (central committed it) and has checked acknowledgements
# through number 7 of the 9 central gave
SITE = SiteRecord(
    store_id="s1", central_id="c1", pushed_seq=40, pushed_event=90, max_seq=45, mark="m2", confirmed="m2",
    acks_checked=7, repair=Repair.NONE,
)  # fmt: skip
CENTRAL = CentralRecord(central_id="c1", store_id="s1", pushed_seq=40, pushed_event=90, mark="m2", acked_seq=9)


def site(**changes: object) -> SiteRecord:
    return msgspec.structs.replace(SITE, **changes)


def central(**changes: object) -> CentralRecord:
    return msgspec.structs.replace(CENTRAL, **changes)


def test_one_history_needs_no_repair_and_checks_the_acknowledgements_it_has_not() -> None:
    assert plan(SITE, CENTRAL) == Plan(
        found=Break.NONE, repair=Repair.NONE, drop_events=False, acks_checked=7, confirmed="m2"
    )


def test_a_push_that_died_before_central_committed_is_no_break() -> None:
    # the store wrote m3 for a push central never committed: central still holds m2
    assert plan(site(mark="m3"), CENTRAL).found == Break.NONE
    # ...or central committed m3 and the store died before recording it: m3 is now confirmed
    assert plan(site(mark="m3"), central(mark="m3", pushed_seq=45)) == Plan(
        found=Break.NONE, repair=Repair.NONE, drop_events=False, acks_checked=7, confirmed="m3"
    )


def test_a_store_without_centrals_mark_is_older_even_when_its_counter_is_ahead() -> None:
    # restored from a copy, then written to: its counter passed what central received
    restored = site(mark="m1", confirmed="m1", pushed_seq=20, pushed_event=50, max_seq=60, acks_checked=3)
    assert plan(restored, CENTRAL) == Plan(
        found=Break.STORE_OLDER, repair=Repair.REBUILD, drop_events=True, acks_checked=3, confirmed="m2"
    )


def test_a_store_restored_from_before_it_ever_synced_checks_every_acknowledgement() -> None:
    blank = site(central_id=None, pushed_seq=0, pushed_event=0, max_seq=80, mark=None, confirmed=None,
                 acks_checked=None)  # fmt: skip
    assert plan(blank, CENTRAL) == Plan(
        found=Break.STORE_OLDER, repair=Repair.REBUILD, drop_events=True, acks_checked=0, confirmed="m2"
    )


def test_without_marks_in_central_only_the_counter_tells() -> None:
    assert plan(site(max_seq=30), central(mark=None)).found == Break.STORE_OLDER
    assert plan(site(max_seq=45), central(mark=None)).found == Break.NONE


def test_a_restored_central_is_rebuilt_and_numbers_acknowledgements_again_from_its_copy() -> None:
    restored = central(pushed_seq=30, pushed_event=60, mark="m0", acked_seq=4)
    assert plan(SITE, restored) == Plan(
        found=Break.CENTRAL_LOST, repair=Repair.REBUILD, drop_events=True, acks_checked=4, confirmed="m0"
    )


def test_a_central_restored_to_before_a_push_of_transfer_items_is_rebuilt() -> None:
    # items go in pushes of their own, after their jobs': central kept the jobs' push, not theirs
    pushed = site(pushed_transfer_seq=44, mark="m3", confirmed="m3")
    assert plan(pushed, central(pushed_transfer_seq=40)).found == Break.CENTRAL_LOST
    assert plan(pushed, central(pushed_transfer_seq=44, mark="m3")).found == Break.NONE


def test_a_replaced_store_pushes_everything_and_leaves_the_old_stores_acknowledgements() -> None:
    fresh = site(store_id="s2", central_id=None, pushed_seq=0, pushed_event=0, max_seq=5, mark=None,
                 confirmed=None, acks_checked=None)  # fmt: skip
    assert plan(fresh, CENTRAL) == Plan(
        found=Break.STORE_REPLACED, repair=Repair.PUSH_ALL, drop_events=False, acks_checked=9, confirmed="m2"
    )


def test_another_central_checks_from_the_start_only_what_this_store_acknowledged_there() -> None:
    new = central(central_id="c2", store_id=None, pushed_seq=0, pushed_event=0, mark=None, acked_seq=0)
    assert plan(SITE, new).found == Break.OTHER_CENTRAL
    assert plan(SITE, new).acks_checked == 0
    known = central(central_id="c2", acked_seq=12)  # this store synced there before
    assert (plan(SITE, known).repair, plan(SITE, known).acks_checked) == (Repair.PUSH_ALL, 0)
    someone_elses = central(central_id="c2", store_id="s9", acked_seq=12)
    assert plan(SITE, someone_elses).acks_checked == 12


def test_a_repair_left_unfinished_goes_on_without_starting_again() -> None:
    midway = site(repair=Repair.REBUILD, pushed_seq=10, pushed_event=20)
    assert plan(midway, central(pushed_seq=10, pushed_event=20)) == Plan(
        found=Break.NONE, repair=Repair.REBUILD, drop_events=False, acks_checked=7, confirmed="m2"
    )
    # a new break during it: the rebuild, which does everything the others do, stays
    assert plan(midway, central(store_id="s9")).repair == Repair.REBUILD


def test_a_restored_central_never_leaves_acknowledgements_unchecked() -> None:
    # central went back to number 4 and gave 5.. to new acknowledgements; the store had checked 7
    assert plan(site(acks_checked=7), central(acked_seq=4)).acks_checked == 4
