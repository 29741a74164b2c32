"""What every transfer backend does, as tests run against each (``BackendContract``).

A test module subclasses ``BackendContract`` and gives the ``harness`` fixture: a backend and a
location whose base directory is on this host (for rsync, reached over the private sshd).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from balsamd.transfers.backend import Backend, Direction, Item, ItemResult, Task
from balsamd.transfers.locations import Location

# a time in the past that a moved file keeps
MTIME = 1_600_000_000


@dataclass
class Harness:
    """A backend, its location (base directory ``base``) and a place for working directories
    and staging directories (``root``)."""

    backend: Backend
    location: Location
    base: Path
    root: Path

    def item(self, item_id: int, remote: str, local: str, *, workdir: str = "w", recursive: bool = False) -> Item:
        """Item ``item_id`` between ``remote`` (relative to the base) and ``local`` in the
        working directory ``workdir`` (relative to ``root``)."""
        return Item(
            item_id=item_id, remote=os.path.join(str(self.base), remote), workdir=str(self.root / workdir),
            local=local, recursive=recursive,
        )  # fmt: skip

    def task(self, direction: Direction, *items: Item, task_id: str = "t1") -> Task:
        staging = self.root / "staging" / task_id
        staging.mkdir(parents=True, exist_ok=True)
        return Task(task_id=task_id, direction=direction, location=self.location, items=items, staging=str(staging))

    def run(
        self, task: Task, cancel: threading.Event | None = None, arrived: list[ItemResult] | None = None
    ) -> dict[int, ItemResult]:
        """The task's results by item id (one per item, as the contract says); what the backend
        hands on as moved while it runs goes to ``arrived`` as it does, each with the result it
        returns for it too (the contract says so)."""
        handed: list[ItemResult] = [] if arrived is None else arrived
        results = self.backend.run(task, lambda _: None, cancel or threading.Event(), handed.extend)
        assert sorted(r.item_id for r in results) == sorted(i.item_id for i in task.items)
        by_id = {r.item_id: r for r in results}
        assert all(r.ok and by_id[r.item_id] == r for r in handed), "an item handed on as moved ended otherwise"
        assert len({r.item_id for r in handed}) == len(handed), "an item handed on twice"
        return by_id


def write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """A file at ``path`` (its directories made) holding ``data``, with ``mode`` and ``MTIME``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, (MTIME, MTIME))
    return path


def fingerprint(path: Path) -> tuple[str, int, int]:
    """What a move keeps of a file: the sha256 of its bytes, its mode and its mtime."""
    info = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mode, info.st_mtime_ns


def tree(root: Path) -> dict[str, tuple[str, int, int] | str]:
    """Every entry under ``root`` by relative path: a file's fingerprint, or "directory"."""
    return {str(p.relative_to(root)): "directory" if p.is_dir() else fingerprint(p) for p in root.rglob("*")}


def make_tree(root: Path) -> int:
    """A directory of nested files and an empty directory; the bytes of its files."""
    files = {"a.txt": b"a" * 10, "sub/b.bin": os.urandom(5000), "sub/deeper/c": b"", "sub/deeper/d": b"d" * 7}
    for name, data in files.items():
        write(root / name, data, 0o640)
    (root / "empty").mkdir()
    return sum(len(d) for d in files.values())


def strange_names(marker: str) -> list[str]:
    """File names a shell would read as more than a name; one that runs them makes ``marker``."""
    return [
        "#not a comment.dat",
        ";nor this.dat",
        "a b'c\"d.dat",
        f"$(touch {marker}) ; touch {marker} & `touch {marker}`.dat",
        "-e x |<>*?[x]\\.dat",
        "é ü \u2603.dat",
    ]


class BackendContract:
    """Tests every backend passes; ``harness`` comes from the module that runs them."""

    def test_a_batch_of_files_comes_in_unchanged_with_modes_and_times(self, harness: Harness) -> None:
        modes = {i: 0o644 if i % 2 else 0o600 for i in range(1, 21)}
        sources = {i: write(harness.base / "in" / f"{i}.dat", os.urandom(100 * i), mode) for i, mode in modes.items()}
        items = [harness.item(i, f"in/{i}.dat", "input/data.bin", workdir=f"w{i}") for i in sources]

        results = harness.run(harness.task("in", *items))

        assert {i: (r.ok, r.bytes, r.error) for i, r in results.items()} == {i: (True, 100 * i, "") for i in sources}
        for i, source in sources.items():
            assert fingerprint(harness.root / f"w{i}" / "input" / "data.bin") == fingerprint(source)

    def test_a_batch_of_files_goes_out_unchanged_with_modes_and_times(self, harness: Harness) -> None:
        sources = {i: write(harness.root / f"w{i}" / "result.dat", os.urandom(50 * i), 0o640) for i in range(1, 21)}
        items = [harness.item(i, f"out/run{i}/result.dat", "result.dat", workdir=f"w{i}") for i in sources]

        results = harness.run(harness.task("out", *items))

        assert {i: (r.ok, r.bytes, r.error) for i, r in results.items()} == {i: (True, 50 * i, "") for i in sources}
        for i, source in sources.items():
            assert fingerprint(harness.base / "out" / f"run{i}" / "result.dat") == fingerprint(source)

    def test_a_missing_file_fails_only_its_item_with_the_reason(self, harness: Harness) -> None:
        write(harness.base / "in" / "1.dat", b"one")
        write(harness.base / "in" / "2.dat", b"two")
        items = [harness.item(i, f"in/{i}.dat", f"{i}.dat") for i in (1, 2, 3)]

        results = harness.run(harness.task("in", *items))

        assert (results[1].ok, results[2].ok, results[3].ok) == (True, True, False)
        assert "No such file or directory" in results[3].error
        assert f"{harness.base}/in/3.dat" in results[3].error
        assert sorted(os.listdir(harness.root / "w")) == ["1.dat", "2.dat"]

    def test_a_directory_item_moves_the_whole_tree_both_ways(self, harness: Harness) -> None:
        size = make_tree(harness.base / "in" / "mesh")
        before = tree(harness.base / "in" / "mesh")
        inward = harness.item(1, "in/mesh", "mesh", recursive=True)
        outward = harness.item(2, "out/mesh", "mesh", recursive=True)

        came = harness.run(harness.task("in", inward, task_id="in"))
        went = harness.run(harness.task("out", outward, task_id="out"))

        assert (came[1].ok, came[1].bytes, went[2].ok, went[2].bytes) == (True, size, True, size), (came, went)
        assert tree(harness.root / "w" / "mesh") == before
        assert tree(harness.base / "out" / "mesh") == before

    def test_a_directory_named_by_an_item_not_marked_recursive_is_refused(self, harness: Harness) -> None:
        make_tree(harness.base / "in" / "mesh")

        results = harness.run(harness.task("in", harness.item(1, "in/mesh", "mesh")))

        assert not results[1].ok
        assert "is a directory" in results[1].error and "recursive" in results[1].error
        assert not (harness.root / "w" / "mesh").exists()

    def test_names_a_shell_would_read_move_literally_and_run_nothing(self, harness: Harness) -> None:
        marker = f"balsamd-{secrets.token_hex(4)}"
        names = strange_names(marker)
        for n, name in enumerate(names):
            write(harness.base / name, name.encode())
            write(harness.root / "w" / f"{n}.out", name.encode())
        inward = [harness.item(n, name, name) for n, name in enumerate(names)]
        outward = [harness.item(10 + n, f"{name}.sent", f"{n}.out") for n, name in enumerate(names)]

        came = harness.run(harness.task("in", *inward, task_id="in"))
        went = harness.run(harness.task("out", *outward, task_id="out"))

        assert all(r.ok for r in [*came.values(), *went.values()]), [*came.values(), *went.values()]
        for name in names:
            assert (harness.root / "w" / name).read_bytes() == name.encode()
            assert (harness.base / f"{name}.sent").read_bytes() == name.encode()
        # a shell would have run in the remote login's home directory, or here
        made = [*harness.root.rglob(marker), *harness.base.rglob(marker), Path.home() / marker, Path.cwd() / marker]
        assert [p for p in made if p.exists()] == []

    def test_stage_out_refuses_a_file_that_leads_out_of_the_working_directory(self, harness: Harness) -> None:
        secret = write(harness.root / "private" / "id_rsa", b"a private key")
        (harness.root / "w").mkdir()
        (harness.root / "w" / "result.dat").symlink_to(secret)

        results = harness.run(harness.task("out", harness.item(1, "out/result.dat", "result.dat")))

        assert not results[1].ok
        assert "leads out of the job's working directory" in results[1].error
        assert not (harness.base / "out" / "result.dat").exists()

    def test_stage_in_refuses_to_write_through_a_link_out_of_the_working_directory(self, harness: Harness) -> None:
        write(harness.base / "in" / "1.dat", b"one")
        (harness.root / "elsewhere").mkdir()
        (harness.root / "w").mkdir()
        (harness.root / "w" / "inputs").symlink_to(harness.root / "elsewhere")

        results = harness.run(harness.task("in", harness.item(1, "in/1.dat", "inputs/1.dat")))

        assert not results[1].ok
        assert "leads out of the job's working directory" in results[1].error
        assert list((harness.root / "elsewhere").iterdir()) == []

    def test_stage_in_refuses_a_file_that_is_a_link_out_of_the_base(self, harness: Harness) -> None:
        secret = write(harness.root / "private" / "id_rsa", b"a private key")
        (harness.base / "in").mkdir(parents=True)
        (harness.base / "in" / "1.dat").symlink_to(secret)

        results = harness.run(harness.task("in", harness.item(1, "in/1.dat", "1.dat")))

        assert not results[1].ok
        assert "1.dat" in results[1].error
        assert not (harness.root / "w" / "1.dat").exists()

    def test_a_directory_holding_a_symbolic_link_is_refused_both_ways(self, harness: Harness) -> None:
        secret = write(harness.root / "private" / "id_rsa", b"a private key")
        for side in (harness.base / "in" / "mesh", harness.root / "w" / "mesh"):
            make_tree(side)
            (side / "sub" / "key").symlink_to(secret)
        inward = harness.item(1, "in/mesh", "mesh", workdir="other", recursive=True)
        outward = harness.item(2, "out/mesh", "mesh", recursive=True)

        came = harness.run(harness.task("in", inward, task_id="in"))
        went = harness.run(harness.task("out", outward, task_id="out"))

        assert (came[1].ok, went[2].ok) == (False, False)
        assert "sub/key" in came[1].error and "sub/key" in went[2].error
        assert not (harness.root / "other" / "mesh").exists()
        assert not (harness.base / "out" / "mesh").exists()

    def test_a_task_cancelled_before_it_runs_moves_nothing(self, harness: Harness) -> None:
        write(harness.base / "in" / "1.dat", b"one")
        cancel = threading.Event()
        cancel.set()

        results = harness.run(harness.task("in", harness.item(1, "in/1.dat", "1.dat")), cancel)

        assert (results[1].ok, results[1].error) == (False, "cancelled")
        assert not (harness.root / "w" / "1.dat").exists()

    def test_a_task_run_again_ends_the_same(self, harness: Harness) -> None:
        write(harness.base / "in" / "1.dat", b"one")
        make_tree(harness.base / "in" / "mesh")
        items = [harness.item(1, "in/1.dat", "1.dat"), harness.item(2, "in/mesh", "mesh", recursive=True)]
        task = harness.task("in", *items)

        first = harness.run(task)
        again = harness.run(task)

        assert first == again
        assert all(r.ok for r in again.values())
        assert tree(harness.root / "w" / "mesh") == tree(harness.base / "in" / "mesh")
        assert sorted(os.listdir(harness.root / "w")) == ["1.dat", "mesh"]
