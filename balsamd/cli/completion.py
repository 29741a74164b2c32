"""``balsamd completion bash|zsh|fish``: the shell completion script, as click makes it.

The script calls ``balsamd`` again with ``_BALSAMD_COMPLETE`` set for each completion; click
answers from the command tree (commands, options, choices such as job states) and from the
completers below, which read the site only where that is cheap and never fail loudly.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem, get_completion_class

COMPLETE_VAR = "_BALSAMD_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str:
    """The script click's completion class for ``shell`` writes for ``balsamd``."""
    from balsamd.cli import cli  # the command tree is what the script completes

    kind = get_completion_class(shell)
    assert kind is not None, shell  # SHELLS lists only shells click knows
    return kind(cli, {}, "balsamd", COMPLETE_VAR).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_cmd(shell: str) -> None:
    """Print the shell completion script for SHELL; see the README for the line each shell needs."""
    click.echo(completion_script(shell), nl=False)


def complete_app_names(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The app names the site's store records (read only: apps/ is not imported for a key
    press); nothing when no site is found, since a completion that fails would print its
    error into the user's command line."""
    from balsamd.api import Site
    from balsamd.site import find_site

    root = ctx.find_root()
    if root.params.get("central"):
        return []
    try:
        site = Site(find_site(root.params.get("site_path")))
        try:
            names = sorted(name for name, app in site.store.apps().items() if not app.error)
        finally:
            site.close()
    except Exception:  # no site here, or its store is unreadable: no suggestions
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]
