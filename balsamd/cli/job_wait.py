"""``balsamd job wait``: block until jobs end, with a bar on a terminal and an exit code for scripts."""

from __future__ import annotations

import sys

import click
import msgspec

from balsamd.cli.common import DURATION, STATE, ExitCode, json_option, parse_pairs
from balsamd.cli.mode import connection, pick_site, site_name_option
from balsamd.cli.progress import elapsed, progress, rate
from balsamd.render import print_json
from balsamd.waiting import WaitOutcome, wait_criteria, wait_for


@click.command("wait")
@click.argument("job_ids", nargs=-1)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Only jobs with this tag.")
@click.option("--app", "app_name", help="Only jobs of this app.")
@click.option("--state", "states", multiple=True, type=STATE, help="Only jobs in this state when the wait begins.")
@click.option("--timeout", type=DURATION, help="Give up after this long: seconds, or 30m, 2h (exit code 124).")
@site_name_option
@json_option
@click.pass_context
def job_wait(ctx: click.Context, job_ids: tuple[str, ...], tags: tuple[str, ...], app_name: str | None,
             states: tuple[str, ...], timeout: float | None, site_name: str | None, as_json: bool) -> None:  # fmt: skip
    """Wait until the jobs given (or with --tag, of --app, in --state; all jobs when none is named) end.

    Exits 0 when every one finished, 4 when all ended and some failed or were killed, 124 when
    --timeout passed first.  Through central, as far as the sites have synced."""
    conn = connection(ctx)
    criteria = wait_criteria([conn.jobs.get(i).id for i in job_ids] if job_ids else None,
                             parse_pairs(tags, "--tag"), app_name)  # fmt: skip
    site = pick_site(ctx, site_name, required=False)
    if site:
        criteria["site"] = site
    if states:  # jobs leave the states they are waited in: the jobs in them now, by id (read once)
        now_in = conn.jobs.filter(**criteria, state=list(states))
        criteria = {**wait_criteria([j.id for j in now_in], None, None), **({"site": site} if site else {})}
    with progress(0, "waiting") as bar:
        first: list[int] = []  # jobs that had ended when the wait began: the rate counts the others

        def show(now: WaitOutcome) -> None:
            first[:] = first or [now.ended]
            bad = now.failed + now.killed
            speed = rate(now.ended - first[0], now.seconds)
            bar.show(now.ended, f"{bad} failed  {speed}  {elapsed(now.seconds)}", total=now.total)

        outcome = wait_for(conn.jobs, criteria=criteria, timeout=timeout, progress=show)
    if outcome.total == 0:
        raise click.ClickException("no job matches what was given: nothing to wait for (see `balsamd job ls`)")
    if as_json:
        print_json({**msgspec.to_builtins(outcome), "pending": outcome.pending})
    else:
        click.echo(summary(outcome))
    if outcome.timed_out:
        sys.exit(ExitCode.TIMED_OUT)
    if outcome.failed or outcome.killed:
        sys.exit(ExitCode.JOBS_FAILED)


def summary(o: WaitOutcome) -> str:
    """The counts, then each failed job shown with the last line of its reason."""
    head = (
        f"{o.total} job(s): {o.finished} finished, {o.failed} failed, {o.killed} killed, {o.pending} not ended "
        f"({elapsed(o.seconds)})"
    )
    if o.timed_out:
        head = f"timed out: {head}"
    lines = [head]
    for f in o.failures:
        reason = f.reason.strip().splitlines()[-1] if f.reason.strip() else "-"
        lines.append(f"  {f.state} {f.id}: {reason[:200]}")
    more = o.failed + o.killed - len(o.failures)
    if more > 0:
        lines.append(f"  and {more} more (`balsamd job ls --state FAILED --state KILLED` lists them)")
    return "\n".join(lines)
