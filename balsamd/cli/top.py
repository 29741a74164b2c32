"""``balsamd top``: a live view of the site's campaign."""

from __future__ import annotations

import shutil
import sys

import click

from balsamd.cli.common import Finite, ensure_site, json_option, parse_pairs
from balsamd.render import print_json
from balsamd.top.frame import View
from balsamd.top.live import Watcher, daemon_services, run_plain, run_screen
from balsamd.top.render import render

# what a frame is rendered at when no terminal says its width (a pipe, a script)
PLAIN_SIZE = (120, 50)


@click.command("top")
@click.option(
    "--interval", type=Finite(min=0.1), default=2.0, show_default=True, metavar="SECONDS",
    help="Seconds between frames.",
)  # fmt: skip
@click.option("--once", is_flag=True, help="Print one frame to stdout and exit.")
@click.option("--app", metavar="NAME", help="Show only jobs of this app (the / key changes it).")
@click.option("--tag", "-t", "tags", multiple=True, metavar="KEY=VALUE", help="Show only jobs with this tag.")
@json_option
@click.pass_context
def top_cmd(
    ctx: click.Context, interval: float, once: bool, app: str | None, tags: tuple[str, ...], as_json: bool
) -> None:
    """A live view: jobs by state and their change, throughput, busy and idle nodes of running
    batch jobs, recent failures, and the sync and transfer services' lag.

    Keys: q quits; / asks for a filter (app=NAME KEY=VALUE ...; empty shows every job).  Not on
    a terminal (or with --once), frames are printed as text; --once --json prints the frame's data.
    """
    if as_json and not once:
        raise click.UsageError("--json prints one frame's data: give --once with it")
    site = ensure_site(ctx)
    view = View(app=app, tags=parse_pairs(tags, "--tag"))
    watcher = Watcher(site.store, site.name, view, lambda: daemon_services(site.layout))
    width = shutil.get_terminal_size(PLAIN_SIZE).columns
    if once:
        frame = watcher.next()
        if as_json:
            print_json(frame)
        else:
            click.echo("\n".join(render(frame, width)))
    elif sys.stdout.isatty() and sys.stdin.isatty():
        run_screen(watcher, interval)
    else:
        run_plain(watcher, interval, sys.stdout, width)
