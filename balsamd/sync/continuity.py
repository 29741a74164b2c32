"""Whether a site store and the central database still tell one history, and what to repair.

Pure decisions over what each side recorded (``SiteRecord``, ``CentralRecord``); the engine
reads them and carries the plan out.

**A store older than central's copy of it.**  A store restored from a copy, or one that lost
the last commits of its WAL to a power loss, holds an earlier state of itself than central
has; if it has written since, its change counter may already be past what central received,
so counters cannot tell.  Marks can: before each push that carries anything, the store
records a new random mark, after reading what the push holds, and the push gives it to
central with the rows.  A store holding central's mark holds everything central was given
(what was read before the mark was committed before it); one that does not is older.  The
store remembers its last mark and the last one central is known to hold: a push that died
before central committed leaves central with the second, so only a mark the store never had,
or no longer has, is a break.  Rounds of one site take turns (an advisory lock), so no other
round writes marks in between.

**Acknowledgements a store lost.**  Central numbers each site's acknowledgements (``ack_seq``)
under the lock of the site's row, so for one site they commit in the order of their numbers:
once a number is visible, so is every smaller one.  The store keeps in its own meta the number
through which it has found every acknowledged intent among those it applied.  That record
rolls back with the store: whatever earlier state it returns to, it holds what was applied
before its record was written, so every intent numbered up to its record.  Each round checks
the numbers above it (normally the acknowledgements of the round before, whatever order the
intents were written to central in), applies again what is missing, acknowledges it again
under a new number, and moves the record up.
"""

from __future__ import annotations

import enum

import msgspec


class Break(enum.StrEnum):
    """Why the two sides no longer tell one history (a report says it as it is)."""

    NONE = ""
    OTHER_CENTRAL = "this site now syncs with a different central database"
    STORE_REPLACED = "the site store was replaced since the last sync"
    CENTRAL_LOST = "the central database lost changes it had acknowledged (restored from a backup?)"
    STORE_OLDER = "the site store is older than what central received (restored from a backup?)"


class Repair(enum.StrEnum):
    """What a round does about a break; kept in the store until done, so a round that dies
    midway is finished by the next."""

    NONE = ""
    # another store or another central: everything is pushed again, over central's rows
    PUSH_ALL = "push-all"
    # one side went back in time: central's copy of this store is rebuilt (its events of this
    # store dropped, everything pushed again, job rows the store no longer has removed)
    REBUILD = "rebuild"


class SiteRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the store recorded of its syncing."""

    store_id: str
    central_id: str | None  # the central it last synced with
    pushed_seq: int
    pushed_event: int
    max_seq: int
    pushed_transfer_seq: int = 0  # transfer items are pushed from a cursor of their own
    mark: str | None  # the last mark it wrote
    confirmed: str | None  # the last mark central is known to hold
    acks_checked: int | None  # every intent acknowledged up to this number is in the store
    repair: Repair  # a repair a round began and did not finish


class CentralRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What central holds of the site."""

    central_id: str
    store_id: str | None  # the store that pushed last
    pushed_seq: int
    pushed_event: int
    pushed_transfer_seq: int = 0
    mark: str | None  # the mark of the last push
    acked_seq: int  # the number of the site's last acknowledgement


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    found: Break  # a break found now: the cursors start again from nothing
    repair: Repair  # the repair this round does (a new one, or one left unfinished)
    drop_events: bool  # central's events of this store go before they are pushed again
    acks_checked: int  # where the check of acknowledgements resumes
    confirmed: str | None  # the mark central is now known to hold


# one side went back: central may hold events under ids the store has since given to others
_WENT_BACK = (Break.CENTRAL_LOST, Break.STORE_OLDER)


def _found(site: SiteRecord, central: CentralRecord) -> Break:
    if site.central_id not in (None, central.central_id):
        return Break.OTHER_CENTRAL
    if central.store_id is not None and central.store_id != site.store_id:
        return Break.STORE_REPLACED
    if (
        central.pushed_seq < site.pushed_seq
        or central.pushed_event < site.pushed_event
        or central.pushed_transfer_seq < site.pushed_transfer_seq
    ):
        return Break.CENTRAL_LOST
    if central.mark is None:  # pushed by a balsamd without marks: the counter is all there is
        return Break.STORE_OLDER if central.pushed_seq > site.max_seq else Break.NONE
    if central.mark not in (site.mark, site.confirmed):
        return Break.STORE_OLDER
    return Break.NONE


def plan(site: SiteRecord, central: CentralRecord) -> Plan:
    found = _found(site, central)
    repair = site.repair
    if found in _WENT_BACK or repair == Repair.REBUILD:
        repair = Repair.REBUILD
    elif found != Break.NONE:
        repair = Repair.PUSH_ALL
    if found == Break.STORE_REPLACED or (found == Break.OTHER_CENTRAL and central.store_id != site.store_id):
        # what central holds acknowledged was applied by another store: not this one's to redo
        checked = central.acked_seq
    elif found == Break.OTHER_CENTRAL:
        checked = 0  # numbers of another central mean nothing here
    else:
        # a restored central numbers again from where its copy stopped
        checked = min(site.acks_checked or 0, central.acked_seq)
    # after a break the repair makes central follow the store, whatever mark it held
    confirmed = central.mark if found != Break.NONE or central.mark == site.mark else site.confirmed
    return Plan(found=found, repair=repair, drop_events=found in _WENT_BACK, acks_checked=checked, confirmed=confirmed)
