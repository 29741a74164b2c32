"""``balsamd events``: the state changes, filtered in the store, and followed as they happen."""

from __future__ import annotations

import sys

import click
import msgspec

from balsamd.cli.common import LIMIT, MOMENT, STATE, json_option, parse_pairs
from balsamd.cli.mode import connection
from balsamd.models import Event
from balsamd.render import EVENT_HEAD, event_cells, events_table, print_json
from balsamd.states import JobState
from balsamd.store.queries import EventFilter

FOLLOW_FIRST = 10  # events --follow shows before the new ones, unless told --latest or --since
WIDTHS = (19, 26, 16, 16)  # a followed line's columns: time, job id, two states


@click.command("events")
@click.option("--job", "job_id", help="Only this job's events.")
@click.option("--state", "states", multiple=True, type=STATE, help="Only changes to this state (may be given again).")
@click.option("--from-state", "from_states", multiple=True, type=STATE, help="Only changes from this state.")
@click.option("--since", type=MOMENT, help="Only changes at or after this time: ISO, or a time ago (30m, 2h, 1d).")
@click.option("--until", type=MOMENT, help="Only changes at or before this time (as --since).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only changes of jobs with this tag.")
@click.option("--app", "app_name", help="Only changes of jobs of this app.")
@click.option("--latest", type=LIMIT, metavar="N", help="Only the last N (still oldest first).")
@click.option("--limit", type=LIMIT, help="At most this many (the oldest).")
@click.option(
    "--follow", "-f", is_flag=True,
    help=f"Then print each new change as it happens, until Ctrl-C (first the last {FOLLOW_FIRST}, unless "
    "--latest or --since says otherwise).",
)  # fmt: skip
@click.option(
    "--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True, metavar="SECONDS",
    help="With --follow: how often to look for new changes.",
)  # fmt: skip
@json_option
@click.pass_context
def events_cmd(ctx: click.Context, job_id: str | None, states: tuple[str, ...], from_states: tuple[str, ...],
               since: float | None, until: float | None, tags: tuple[str, ...], app_name: str | None,
               latest: int | None, limit: int | None, follow: bool, poll: float, as_json: bool) -> None:  # fmt: skip
    """Show the state-change history, oldest first; --follow streams it on."""
    where = EventFilter(
        states=[JobState(s) for s in states], from_states=[JobState(s) for s in from_states], since=since,
        until=until, tags=parse_pairs(tags, "--tag"), app=app_name, latest=latest,
    )  # fmt: skip
    conn = connection(ctx)
    if not follow:
        events = conn.events(job_id, limit=limit, where=where)
        if as_json:
            print_json(events)
        else:
            click.echo(events_table(events, with_job=True))
        return
    if limit is not None:
        raise click.UsageError("--limit takes the oldest events, --follow the newest: give --latest N instead")
    if latest is None and since is None:
        where = msgspec.structs.replace(where, latest=FOLLOW_FIRST)
    if not as_json:
        click.echo(_line(list(EVENT_HEAD)))
    try:
        for event in conn.follow_events(job_id, where=where, poll=poll):
            _print(event, as_json)
    except KeyboardInterrupt:  # how a follow ends
        return


def _print(event: Event, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(event).decode() + "\n")
    else:
        sys.stdout.write(_line(event_cells(event)) + "\n")
    sys.stdout.flush()  # a reader (a pipe, a log) sees each change when it happens


def _line(cells: list[str]) -> str:
    """Cells in the widths every followed line shares (a table cannot wait for its widest row)."""
    padded = [str(c).ljust(w) for c, w in zip(cells, WIDTHS, strict=False)]
    return "  ".join([*padded, *cells[len(WIDTHS) :]]).rstrip()
