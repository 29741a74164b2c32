"""``balsamd transfer ...``: the files jobs bring in and send out, as their site moves them."""

from __future__ import annotations

import click

from balsamd.cli.common import LIMIT, json_option
from balsamd.cli.mode import connection, is_central, pick_site, site_name_option
from balsamd.render import print_json, table
from balsamd.transfers.records import TransferItem, TransferState

ERROR_WIDTH = 60


@click.group("transfer")
def transfer_group() -> None:
    """List the transfer items of jobs: their apps' slots, each filled with LOCATION:/path."""


@transfer_group.command("ls")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in TransferState],
              case_sensitive=False), help="Only items in this state (may be given again).")  # fmt: skip
@click.option("--job", "jobs", multiple=True, metavar="ID",
              help="Only this job's items (may be given again; at a site, a unique prefix of its id).")  # fmt: skip
@click.option("--task", metavar="ID", help="Only the items of this transfer task.")
@click.option("--direction", type=click.Choice(["in", "out"]), help="Only items coming in, or only those going out.")
@click.option("--location", metavar="NAME", help="Only items at this location of [transfers.locations].")
@click.option("--limit", type=LIMIT, help="At most this many items.")
@click.option("--by-state", is_flag=True, help="Counts per state instead of items.")
@site_name_option
@json_option
@click.pass_context
def transfer_ls(ctx: click.Context, states: tuple[str, ...], jobs: tuple[str, ...], task: str | None,
                direction: str | None, location: str | None, limit: int | None, by_state: bool,
                site_name: str | None, as_json: bool) -> None:  # fmt: skip
    """List transfer items, oldest first, the error of each cut short (--json: whole); through
    central, those of your jobs at every site you see, or at --site-name."""
    conn = connection(ctx)
    site = pick_site(ctx, site_name, required=False)
    if by_state:
        if states or jobs or task or direction or location or limit is not None:
            raise click.UsageError("--by-state counts every item; give it without the options that choose items")
        counts = conn.transfers.counts(site=site)
        if as_json:
            print_json(counts)
        else:
            click.echo(table(list(counts.items()), ("STATE", "COUNT")) if counts else "no transfer items")
        return
    items = conn.transfers.filter(site=site, state=list(states) or None, job=list(jobs) or None, task=task,
                                  direction=direction, location=location, limit=limit)  # fmt: skip
    if as_json:
        print_json(items)
        return
    sited = is_central(ctx)
    rows = [_row(i, sited) for i in items]
    head = ["JOB", *(["SITE"] if sited else []), "SLOT", "DIR", "ITEM", "LOCAL PATH", "STATE", "TASK", "ATTEMPTS",
            "BYTES", "ERROR"]  # fmt: skip
    click.echo(table(rows, head) if rows else "no transfer items")


def _row(item: TransferItem, sited: bool) -> list[object]:
    where = [item.site] if sited else []
    return [item.job_id, *where, item.slot, item.direction, f"{item.location}:{item.path}", item.local_path,
            item.state, item.task_id or "-", item.attempts, item.bytes, short_error(item.error)]  # fmt: skip


def short_error(error: str) -> str:
    """An error as one cell: its first line (a backend says what failed there), its end kept
    when long (where that line says why)."""
    line = next((text.strip() for text in error.splitlines() if text.strip()), "")
    if not line:
        return "-"
    return line if len(line) <= ERROR_WIDTH else "..." + line[-(ERROR_WIDTH - 3) :]
