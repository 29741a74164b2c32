"""The rsync-over-ssh backend: one rsync process moves a task's items, whatever their number.

The task's items are listed (a line each, relative to the location's base directory, or for a
stage-in to the directory its items share: ``_common_directory``) in a ``--files-from`` file
(for a stage-in, sent ahead of rsync's protocol in the same ssh session: ``sent_ahead``), and
move through the task's staging directory, on the filesystem of the working directories:

- in: ``rsync USER@HOST:BASE/COMMON/ STAGING/tree/``, then each item that arrived is renamed
  into its job's working directory (a copy when items of the task share a remote path or lie
  inside one another).  A job's working directory that does not exist yet is, where it can
  be, the staged directory its file arrived in, renamed: each directory made costs a
  filesystem as much as a small file, and a campaign's inputs usually lie a directory per run.
  Those renames happen while rsync runs, as it finishes each file (``arrivals``);
- out: each item is hard linked (or copied, across filesystems) into ``STAGING/tree/PATH``, then
  ``rsync STAGING/tree/ USER@HOST:BASE/``.

rsync is idempotent, so a resumed task (the same staging directory, maybe holding part of the
last attempt) simply runs again.  Paths reach the remote rsync through its protocol (``-s``),
never through the remote shell.  rsync moves regular files and directories only
(``--no-links --no-D``): a symbolic link or special file at the location is reported, never
brought; a job's side must lead inside its working directory (``confine``), and a directory item
holding a link is refused before it is staged.  Directories above an item are left as they are
(``--no-implied-dirs``) and resolved by the remote rsync on its host: sending, rsync 3.5 refuses a
path through a link that leads out of the base; bringing, rsync follows such a link, whatever
its options (it sends the directories above a listed file as directories).  balsamd never makes
one there, since it sends no links: keep such links off a base directory on its remote host.

A task with a directory item runs with ``-r``, which rsync applies to every path listed: a plain
item that names a directory then arrives whole before it is refused (its slot is not recursive).

rsync's exit code 23 or 24 means some files failed: its lines are attributed to items by the
paths they quote (``rsync_messages``) and an item's error is rsync's own line.  Any other code
(255: ssh failed; 12: the remote end went away) fails every item with rsync's last lines.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import stat
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple

from balsamd.transfers import cancellable
from balsamd.transfers.arrivals import ARRIVED, OUT_FORMAT, Arrivals
from balsamd.transfers.backend import Arrived, Early, Item, ItemResult, Task, TransferError
from balsamd.transfers.confine import (
    RealPaths,
    Refused,
    made_fresh,
    make_parent,
    not_recursive,
    source,
    tree_size,
)
from balsamd.transfers.locations import Location
from balsamd.transfers.noreplace import rename_new
from balsamd.transfers.place import describe, install, link_or_copy, put, remove
from balsamd.transfers.rsync_messages import Attribution, attribute, directories_above, read_lines
from balsamd.transfers.sshmux import share_login

WORKDIR = "the job's working directory"
# rsync's lines an error keeps when they cannot be tied to one file
LAST_LINES = 5
# rsync's exit codes when some files were not moved, the others were
PARTIAL = (23, 24)
# a stage-in's list goes ahead of rsync's protocol in its ssh session: ``cat`` sends the list,
# then relays rsync's own bytes (a stage-in sends few); it is left running, not waited for, and
# ends when rsync closes its end
SEND_AHEAD = 'exec 3<&0; { cat "$0" - <&3 & } | "$@" 3<&-'
# on the remote host, with the list's size as $0: read exactly the list, then give it to rsync
# as fd 3 while rsync's protocol keeps stdin; rsync's exit code is the session's.  GNU head reads
# no further than asked; others may read ahead into rsync's protocol (a buffered stdin, as
# busybox's or uutils'), so elsewhere dd reads a byte at a time
READ_AHEAD = ('list=$(case $(head --version 2>/dev/null) in (*"GNU coreutils"*) head -c "$0";; '
              '(*) dd bs=1 count="$0" 2>/dev/null;; esac)'
              ' && { printf "%s\\n" "$list" | rsync "$@" 3<&0 0<&4; } 4<&0')  # fmt: skip
CANCELLED = "cancelled"
# held by a task placing a batch of arrived files: the kernel renames across directories under
# one lock per filesystem, so tasks placing side by side take turns a batch each rather than
# contend for it file by file
PLACING = threading.Lock()
RSYNC_OUT = "rsync.out"  # in the task's staging directory: what rsync said
# what rsync says of a symbolic link or special file it leaves out (--no-links --no-D)
SKIPPED = "skipping non-regular file"


# rsync's options for its list of paths (a file, a line each), called once it is written, as
# rsync is about to start
FilesFrom = Callable[[str], list[str]]
_LINE_BREAK = re.compile("[\n\r]")


class _Planned(NamedTuple):
    """An item going into this task's rsync: its path relative to the base and to the staging
    tree, and (out) its size.  (A tuple: a task plans thousands, and a frozen dataclass costs
    several times as much to make.)"""

    item: Item
    path: str
    size: int = 0


class RsyncBackend:
    """Moves a task's items with one ``rsync`` over ``ssh`` (argv of the ssh that logs in, as
    ``[transfers] ssh``; the location's port is put first so that it wins).  ``shared``: the
    argv holds ``sshmux.multiplex_options``, and the shared connection is opened once, first."""

    def __init__(self, ssh: Sequence[str], io_timeout_s: int = 0, shared: bool = False) -> None:
        self._ssh = list(ssh)
        self._timeout = [f"--timeout={io_timeout_s}"] if io_timeout_s else []
        self._shared = shared  # ssh's options share one connection per host (sshmux)

    def run(
        self, task: Task, record: Callable[[str], None], cancel: threading.Event, arrived: Arrived | None = None
    ) -> list[ItemResult]:
        rsync, ssh = self._tools(task.location)
        # -s: paths go through rsync's protocol, never through the remote shell;
        # --files-from makes -a imply no -r: it is added for tasks with directory items.  A
        # file's owner, group and mode bits belong to the host it left, not the one it reaches
        # (as root, -a would make a remote uid or a set-user-id bit this host's): what arrives is
        # the receiving user's, its mode the sent one less the umask and any special bit
        command = [rsync, "-a", "--no-owner", "--no-group", "--no-perms", "-s", "--no-links", "--no-D",
                   "--no-implied-dirs", *self._timeout]  # fmt: skip
        tree = os.path.join(task.staging, "tree")
        resumed = os.path.isdir(tree)  # a last attempt's files may be in it
        os.makedirs(tree, exist_ok=True)

        def files_from(listing: str) -> list[str]:
            # logged in once the list is made: the login the service started may be done by then
            self.log_in(task.location, cancel, os.path.join(task.staging, "login.out"))
            if task.direction == "in":
                return sent_ahead(ssh, listing)
            return ["-e", shlex.join(ssh), f"--files-from={listing}"]

        if task.direction == "in":
            results = _stage_in(task, command, files_from, tree, cancel, resumed, arrived)
        else:
            results = _stage_out(task, command, files_from, tree, cancel)
        return [results.get(item.item_id) or _failed(item, CANCELLED) for item in task.items]

    def log_in(self, location: Location, cancel: threading.Event, output: str = os.devnull) -> None:
        """Open the connection tasks to ``location`` share, if they share one and it is not
        open (``sshmux.share_login``); the service calls it as soon as it knows a task will go
        there, so that logging in overlaps recording the task."""
        if not self._shared:
            return
        try:
            ssh = self._tools(location)[1]
        except TransferError:  # the task says what is missing
            return
        share_login(ssh, _login(location), output, cancel)

    def _tools(self, location: Location) -> tuple[str, list[str]]:
        """rsync, and the ssh that logs in to ``location``; TransferError if either is missing."""
        rsync = shutil.which("rsync")
        if rsync is None:
            raise TransferError("rsync is not installed on this host (not found on PATH); install it (e.g. "
                                "apt install rsync), here and on the hosts of rsync locations")  # fmt: skip
        if shutil.which(self._ssh[0]) is None:
            raise TransferError(f"{self._ssh[0]!r}, the ssh of [transfers] ssh, was not found on PATH; install "
                                "OpenSSH's client (e.g. apt install openssh-client) or give its full path")  # fmt: skip
        port = ["-p", str(location.port)] if location.port else []
        return rsync, [self._ssh[0], *port, *self._ssh[1:]]


def sent_ahead(ssh: list[str], listing: str) -> list[str]:
    """rsync's options for a stage-in that sends ``listing`` ahead of rsync's protocol, in the
    ssh session that runs the remote rsync.

    rsync sending from a remote host reads a list given on this host more slowly the longer it
    is: 10,000 small files took 4.4-5.3 s so, 1.6-1.9 s with the list on the remote host,
    1.2-1.5 s as a plain tree copy.  Put there by an ssh session of its own, the list cost one
    more remote login shell (on a cluster, often its modules' set-up) per task; sent ahead it
    costs none, and leaves no file on the remote host.  The remote user's login shell may be
    any (sh, bash, csh, fish): it only starts ``sh``, which needs ``head`` or ``dd`` and
    ``/dev/fd`` (Linux, macOS)."""
    size = os.path.getsize(listing)
    return ["-e", shlex.join(["sh", "-c", SEND_AHEAD, listing, *ssh]), "--files-from=:/dev/fd/3",
            f"--rsync-path=sh -c {shlex.quote(READ_AHEAD)} {size}"]  # fmt: skip


def _login(location: Location) -> str:
    return f"{location.user}@{location.host}" if location.user else location.host


def _remote(location: Location, below: str = "") -> str:
    """rsync's name of the directory ``below`` the location's base (a relative path)."""
    return f"{_login(location)}:{_remote_dir(location, below).rstrip('/')}/"


def _remote_dir(location: Location, below: str = "") -> str:
    return posixpath.normpath(posixpath.join(location.base, below))


def _common_directory(paths: list[str]) -> str:
    """The deepest directory (relative) holding every path's directory's directory: what a
    stage-in's rsync may start from, so that its list names each path below it.  rsync reads
    its list a byte at a time, and a campaign's paths often share most of their length; each
    path keeps its directory, which may become its job's working directory."""
    # the paths are normalized: a directory is what comes before a "/"; a campaign's paths
    # usually share few such directories, which commonpath then compares
    above = {path.rpartition("/")[0].rpartition("/")[0] for path in paths}
    if "" in above:
        return ""
    return posixpath.commonpath(above)


def _stage_in(
    task: Task,
    command: list[str],
    files_from: FilesFrom,
    tree: str,
    cancel: threading.Event,
    resumed: bool,
    arrived: Arrived | None,
) -> dict[int, ItemResult]:
    """Bring the items into the staging tree, then each into its working directory.  Whether an
    item's local path stays inside its working directory is decided when it is placed, where
    the working directory is known to exist or to be new."""
    results: dict[int, ItemResult] = {}
    planned = []
    root = _root(task.location)
    for item in task.items:
        try:
            path = _relative(item, root)
        except Refused as exc:
            results[item.item_id] = _failed(item, str(exc))
        else:
            planned.append(_Planned(item=item, path=path))
    if not planned:
        return results
    # the paths, in the list and in the staging tree, are below their common directory
    below = _common_directory([p.path for p in planned])
    if below:
        cut = len(below) + 1
        planned = [_Planned(p.item, p.path[cut:]) for p in planned]
    # --delete: files of a directory item left in the staging tree by an interrupted attempt
    recursive = ["-r", "--delete"] if any(p.item.recursive for p in planned) else []
    ends = [_remote(task.location, below), f"{tree}/"]
    fresh: set[str] = set()
    whole: dict[str, int] = {}  # path -> index of the items whose staged directory may become their workdir
    moved: dict[int, int] = {}  # index -> size of those whose did while rsync ran
    for_good: set[int] = set()  # those of them rsync said nothing of: done, whatever it says after
    arrivals = Arrivals(os.path.join(task.staging, RSYNC_OUT))
    early = Early(arrived)

    def make_workdirs() -> None:
        # while rsync runs: which staged directories become workdirs, and the other new
        # workdirs made (a directory each to make, in another directory)
        whole.update((planned[i].path, i) for i in _whole_directories(planned))
        chosen = set(whole.values())
        fresh.update(p.item.workdir for i, p in enumerate(planned) if i not in chosen and made_fresh(p.item.workdir))

    def move_finished(ended: bool = False) -> None:
        # while rsync runs, and once more when it ended well: the files it has finished become
        # their workdirs at once (not in a resumed attempt, whose files may be there already
        # and are not named again); those rsync said nothing of are done for good, and handed
        # on after each batch placed, so that recording them overlaps placing the others
        with PLACING:
            for path, size, quiet in arrivals.finished(ended):
                index = whole.get(path)  # a regular file (rsync names a directory with a final "/")
                if index is None or index in moved or size is None:  # else placed once rsync has ended
                    continue
                if _became_workdir(planned[index], tree, resumed=False):
                    moved[index] = size
                    if quiet:
                        for_good.add(index)
                        early.add(ItemResult(item_id=planned[index].item.item_id, ok=True, bytes=size))
        early.hand_on()

    # --inplace: the staging tree is private, so files are written under their names at once
    # (a rename fewer per file); an interrupted file differs in size and is sent again
    argv = [*command, "--inplace", OUT_FORMAT, *recursive]
    early_moves = not (resumed or recursive)
    try:
        done = _transfer(task, argv, files_from, planned, ends, _remote_dir(task.location, below), cancel,
                         make_workdirs, move_finished if early_moves else None)  # fmt: skip
        if done is not None and done[0] == 0 and early_moves:
            move_finished(ended=True)
    finally:
        arrivals.close()
    if done is None:
        return results
    code, found = done
    if code or found.own or found.above or found.other:  # rsync said something: it may have written one again
        _forget_rewritten(planned, moved, tree)
    to_place = []
    for index, plan in enumerate(planned):
        if index in moved:  # a line of rsync's about it fails it, unless it was done for good before
            lines = None if index in for_good else found.own.get(index)
            ok = ItemResult(item_id=plan.item.item_id, ok=True, bytes=moved[index])
            results[plan.item.item_id] = _failed(plan.item, _explain(lines)) if lines else ok
            continue
        problem, size = _arrival(plan, tree, index, found)
        if problem:
            results[plan.item.item_id] = _failed(plan.item, problem)
        elif whole.get(plan.path) == index and _became_workdir(plan, tree, resumed):
            results[plan.item.item_id] = ItemResult(item_id=plan.item.item_id, ok=True, bytes=size)
        else:
            to_place.append(plan)
    results.update(_place(to_place, tree, RealPaths(), fresh))
    return results


def _whole_directories(planned: list[_Planned]) -> set[int]:
    """The indexes of plain files that arrive alone in their staged directory, which may then
    become their working directory: the only path of the task in that directory, no path of
    the task at it or above it, and a local name without directories."""
    paths = {p.path for p in planned}
    above = [directories_above(p.path) for p in planned]
    inside = Counter(directory for directories in above for directory in directories)  # each item counts
    chosen = set()
    for index, plan in enumerate(planned):
        directory = posixpath.dirname(plan.path)
        # the directory and those above it: not paths of the task
        if (directory and not plan.item.recursive and "/" not in plan.item.local and inside[directory] == 1
                and paths.isdisjoint(above[index])):  # fmt: skip
            chosen.add(index)
    return chosen


def _became_workdir(plan: _Planned, tree: str, resumed: bool) -> bool:
    """Rename the staged directory holding ``plan``'s file alone to be its working directory,
    when that does not exist yet; False, changing nothing, when it cannot be done.  rsync made
    the staged directory as mkdir makes one (it is above a listed path, and
    ``--no-implied-dirs`` makes those with default attributes), so it needs no chmod."""
    staged = os.path.join(tree, posixpath.dirname(plan.path))
    name = posixpath.basename(plan.path)
    item = plan.item
    try:
        if resumed and os.listdir(staged) != [name]:  # a last attempt's leftovers: placed one by one
            return False
        try:
            placed = rename_new(staged, item.workdir)
        except FileNotFoundError:  # its parent is new too, as made one by one would make it
            os.makedirs(os.path.dirname(item.workdir), exist_ok=True)
            placed = rename_new(staged, item.workdir)
    except OSError:  # placed one by one, which says what is wrong
        return False
    if not placed:  # one that is there keeps its mode, owner and contents
        return False
    if name != item.local:
        os.rename(os.path.join(item.workdir, name), os.path.join(item.workdir, item.local))
    return True


def _forget_rewritten(planned: list[_Planned], moved: dict[int, int], tree: str) -> None:
    """Forget the early move of each file rsync wrote again afterwards (one whose checksum
    failed is sent again at the end, into a staged directory made anew): it is placed again,
    as any file that arrived."""
    for index in [i for i in moved if os.path.lexists(os.path.join(tree, planned[i].path))]:
        del moved[index]


def _arrival(plan: _Planned, tree: str, index: int, found: Attribution) -> tuple[str, int]:
    """Why ``plan``'s item is not in the staging tree as it should be ("" when it is), and the
    size of what arrived."""
    if index in found.own:
        return _explain(found.own[index]), 0
    try:
        info = os.lstat(os.path.join(tree, plan.path))
    except FileNotFoundError:
        return _explain(found.above.get(index) or found.other) or f"rsync did not bring {plan.item.remote}", 0
    if stat.S_ISDIR(info.st_mode) and not plan.item.recursive:
        return not_recursive(plan.item.remote), 0
    return "", info.st_size


def _place(arrived: list[_Planned], tree: str, paths: RealPaths, fresh: set[str]) -> dict[int, ItemResult]:
    """Rename each arrived item into its working directory; copy those whose staged files are
    another item's too."""
    shared = _overlapping([p.path for p in arrived])
    results = {}
    for index, plan in enumerate(arrived):
        item, staged = plan.item, os.path.join(tree, plan.path)
        dest = os.path.join(item.workdir, item.local)
        try:
            info = os.lstat(staged)
            directory = stat.S_ISDIR(info.st_mode)
            size = tree_size(staged) if directory else info.st_size
            if item.workdir in fresh:  # new and empty: nothing in it leads out
                if os.path.dirname(item.local):
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
            else:
                make_parent(paths.real(item.workdir), dest, WORKDIR, paths.real)
            if index in shared:
                install(staged, dest, shutil.copy2, tree=directory)
            else:
                put(staged, dest)
        except Refused as exc:
            results[item.item_id] = _failed(item, str(exc))
        except OSError as exc:
            results[item.item_id] = _failed(item, describe(exc))
        else:
            results[item.item_id] = ItemResult(item_id=item.item_id, ok=True, bytes=size)
    return results


def _stage_out(
    task: Task, command: list[str], files_from: FilesFrom, tree: str, cancel: threading.Event
) -> dict[int, ItemResult]:
    results: dict[int, ItemResult] = {}
    planned: list[_Planned] = []
    taken: set[str] = set()
    above_taken: set[str] = set()
    paths = RealPaths()
    root = _root(task.location)
    for item in task.items:
        if cancel.is_set():
            return results
        try:
            path = _relative(item, root)
            if path in taken or path in above_taken or taken.intersection(directories_above(path)):
                raise Refused(f"another item of this task sends to {item.remote}, a directory above it or a path "
                              "inside it; this one is sent by a later task")  # fmt: skip
            size = _stage_one(item, os.path.join(tree, path), paths)
        except Refused as exc:
            results[item.item_id] = _failed(item, str(exc))
        except OSError as exc:
            results[item.item_id] = _failed(item, describe(exc))
        else:
            taken.add(path)
            above_taken.update(directories_above(path))
            planned.append(_Planned(item=item, path=path, size=size))
    if not planned:
        return results
    recursive = ["-r"] if any(p.item.recursive for p in planned) else []
    ends = [f"{tree}/", _remote(task.location)]
    done = _transfer(task, [*command, *recursive], files_from, planned, ends, task.location.base, cancel)
    if done is None:
        return results
    code, found = done
    for index, plan in enumerate(planned):
        # a line rsync did not tie to a file may concern any of them: none is taken as sent
        lines = found.own.get(index) or found.above.get(index) or (found.other if code else [])
        if lines:
            results[plan.item.item_id] = _failed(plan.item, _explain(lines))
        else:
            results[plan.item.item_id] = ItemResult(item_id=plan.item.item_id, ok=True, bytes=plan.size)
    return results


def _stage_one(item: Item, staged: str, paths: RealPaths) -> int:
    """Put a link (or a copy) of ``item``'s file or directory at ``staged``; its size."""
    local = os.path.join(item.workdir, item.local)
    moved = source(paths.real(item.workdir), local, WORKDIR, recursive=item.recursive, real=paths.real)
    os.makedirs(os.path.dirname(staged), exist_ok=True)
    # a resumed task's last attempt may have staged it already, from files since rewritten
    remove(staged)
    install(moved.real, staged, link_or_copy, tree=moved.directory)
    return moved.size


def _transfer(
    task: Task,
    argv: list[str],
    files_from: FilesFrom,
    planned: list[_Planned],
    ends: list[str],
    remote_dir: str,
    cancel: threading.Event,
    meanwhile: Callable[[], None] | None = None,
    each: Callable[[], None] | None = None,
) -> tuple[int, Attribution] | None:
    """Run rsync once for ``planned`` (paths below ``remote_dir`` at the location), listed for
    it by ``files_from``; its exit code and its lines by item, or None when cancelled.  An exit
    code other than success or partial success fails every item.  ``meanwhile`` and ``each``
    run while rsync does (``cancellable.run``)."""
    if cancel.is_set():
        return None
    listing = os.path.join(task.staging, "files-from")
    with open(listing, "wb") as out:
        # rsync skips an entry starting with '#' or ';' as a comment, and takes "/x" as "x";
        # a path holds no line break (``_relative``)
        out.writelines(b"/" + os.fsencode(path) + b"\n" for path in sorted({p.path for p in planned}))
    output = os.path.join(task.staging, RSYNC_OUT)
    code = cancellable.run([*argv, *files_from(listing), *ends], output, cancel, meanwhile, each)
    if code is None:
        return None
    with open(output, "rb") as out:
        lines = [line for line in read_lines(out.read()) if not line.startswith(ARRIVED)]
    if code and code not in PARTIAL:
        last = "\n".join(lines[-LAST_LINES:]) or f"rsync exited with code {code}"
        return code, Attribution(own={index: [last] for index in range(len(planned))})
    roots = [remote_dir, os.path.join(task.staging, "tree")]
    return code, attribute(lines, [p.path for p in planned], roots)


def _root(location: Location) -> str:
    """The location's base directory, as the start of the paths inside it."""
    return posixpath.normpath(location.base).rstrip("/") + "/"


def _relative(item: Item, root: str) -> str:
    """``item``'s remote path relative to ``root``, its location's base directory (``_root``)."""
    path = posixpath.normpath(item.remote)
    if not path.startswith(root) or path == root:
        raise Refused(f"{item.remote} is not inside the location's base directory {root.rstrip('/') or '/'}")
    if _LINE_BREAK.search(path):  # refused when the job was made; a line each in rsync's list
        raise Refused(f"{item.remote!r} holds a line break; give a plain path")
    return path[len(root) :]


def _overlapping(paths: list[str]) -> set[int]:
    """The indexes of ``paths`` that are another's too, lie inside another, or hold another."""
    count: dict[str, int] = {}
    above: set[str] = set()
    for path in paths:
        count[path] = count.get(path, 0) + 1
        above.update(directories_above(path))
    return {
        index
        for index, path in enumerate(paths)
        if count[path] > 1 or path in above or any(count.get(d) for d in directories_above(path))
    }


def _explain(lines: list[str]) -> str:
    """rsync's lines as an item's error; a line about a skipped file gets a word on why."""
    text = "\n".join(dict.fromkeys(lines[-LAST_LINES:]))
    if any(line.startswith(SKIPPED) for line in lines):
        text += "\n(rsync moves only regular files and directories here: symbolic links and special files are refused)"
    return text


def _failed(item: Item, error: str) -> ItemResult:
    return ItemResult(item_id=item.item_id, ok=False, error=error)
