"""The live view's loop: frames on a full screen (curses) with keys, or plain frames on stdout.

A thin layer: ``Watcher`` reads frames (``build_frame``) and the daemon's services (as
``balsamd status`` has them, asked at most every ``STATUS_SEC``); the screen draws what
``render`` made and reads keys.
"""

from __future__ import annotations

import contextlib
import curses
import locale
import time
from collections.abc import Callable
from typing import IO

from balsamd.rpc.protocol import ServiceHealth
from balsamd.site import SiteLayout
from balsamd.store.contract import Store
from balsamd.top.frame import Frame, Tally, View, build_frame
from balsamd.top.render import KEYS, clip, render

STATUS_SEC = 5.0
STATUS_TIMEOUT = 3.0  # a daemon that does not answer by then is shown as such, and asked again later


def daemon_services(layout: SiteLayout) -> list[ServiceHealth] | str:
    """The daemon's services as ``balsamd status`` has them, or why there are none (the view
    goes on without them)."""
    from balsamd.daemon import control
    from balsamd.rpc.client import RpcRefused

    try:
        return control.services(layout, STATUS_TIMEOUT)
    except (control.NotRunning, RpcRefused) as exc:
        return str(exc)


def parse_view(text: str) -> View:
    """``app=NAME KEY=VALUE ...`` as typed at the filter prompt; empty is every job."""
    app = None
    tags: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{word!r} is not KEY=VALUE: give app=NAME and tags as KEY=VALUE")
        if key == "app":
            app = value
        elif key in tags:
            raise ValueError(f"tag {key} is given twice; give each key once")
        else:
            tags[key] = value
    return View(app=app, tags=tags)


class Watcher:
    """Frames of one site's store, each built on the tally of the one before."""

    def __init__(
        self, store: Store, site: str, view: View, services: Callable[[], list[ServiceHealth] | str],
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.store = store
        self.site = site
        self.view = view
        self.services = services
        self.clock = clock
        self.tally: Tally | None = None
        self._services: list[ServiceHealth] | str = ""
        self._services_at = float("-inf")

    def next(self) -> Frame:
        now = self.clock()
        if now - self._services_at >= STATUS_SEC:
            self._services, self._services_at = self.services(), now
        frame, self.tally = build_frame(self.store, self.site, self.view, self.tally, self._services, now)
        return frame


def run_plain(watcher: Watcher, interval: float, out: IO[str], width: int) -> None:
    """Frames one after another on ``out`` (not a terminal), until interrupted."""
    try:
        while True:
            out.write("\n".join(render(watcher.next(), width)) + "\n\n")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def run_screen(watcher: Watcher, interval: float) -> None:
    """The full-screen view until ``q`` (or Ctrl-C)."""
    locale.setlocale(locale.LC_ALL, "")
    try:
        curses.wrapper(_screen, watcher, interval)
    except KeyboardInterrupt:
        return


def _screen(stdscr: curses.window, watcher: Watcher, interval: float) -> None:
    with contextlib.suppress(curses.error):  # a terminal that cannot hide its cursor
        curses.curs_set(0)
    frame = watcher.next()
    due = time.monotonic() + interval
    message = ""
    while True:
        _draw(stdscr, frame, message)
        stdscr.timeout(max(int((due - time.monotonic()) * 1000), 0))
        key = stdscr.getch()
        if key in (ord("q"), ord("Q")):
            return
        if key == ord("/"):
            try:
                watcher.view = parse_view(_prompt(stdscr, f"filter (now: {watcher.view.describe() or 'all jobs'}): "))
                message = ""
            except ValueError as exc:
                message = str(exc)
            due = 0.0
        if time.monotonic() >= due:
            frame = watcher.next()
            due = time.monotonic() + interval


def _draw(stdscr: curses.window, frame: Frame, message: str) -> None:
    height, width = stdscr.getmaxyx()
    stdscr.erase()
    # the last cell of the screen cannot be written without an error: one column is left free
    for row, line in enumerate(render(frame, width - 1)[: max(height - 1, 0)]):
        stdscr.addstr(row, 0, line)
    if height > 0:
        stdscr.addstr(height - 1, 0, clip(message or KEYS, width - 1), curses.A_REVERSE if message else 0)
    stdscr.refresh()


def _prompt(stdscr: curses.window, label: str) -> str:
    height, width = stdscr.getmaxyx()
    stdscr.move(height - 1, 0)
    stdscr.clrtoeol()
    stdscr.addstr(height - 1, 0, clip(label, width - 1))
    stdscr.timeout(-1)
    curses.echo()
    with contextlib.suppress(curses.error):
        curses.curs_set(1)
    try:
        typed = stdscr.getstr(height - 1, min(len(label), width - 1), 200)
    finally:
        curses.noecho()
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
    return typed.decode(errors="replace")
