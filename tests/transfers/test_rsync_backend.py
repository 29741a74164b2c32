"""The rsync-over-ssh backend, with the real rsync and ssh and the private sshd as the remote
host: the contract every backend keeps, and what is its own (one rsync per task, rsync's
messages, ssh failing, a resumed or cancelled task)."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest

from balsamd.transfers import backend
from balsamd.transfers.backend import Item, ItemResult, TransferError
from balsamd.transfers.locations import Location
from balsamd.transfers.rsync import RsyncBackend
from tests.conftest import SmallDisk
from tests.transfers.conftest import SshHost, keygen, rsync_then
from tests.transfers.contract import BackendContract, Harness, fingerprint, make_tree, tree, write

# how rsync ends its line about a file that is not there
ENOENT = "No such file or directory (2)"


def ssh_options(ssh_host: SshHost) -> list[str]:
    """The private sshd's ssh command without its port and login name: the location gives those."""
    argv = list(ssh_host.ssh_command)
    for flag in ("-p", "-l"):
        at = argv.index(flag)
        del argv[at : at + 2]
    return argv


def rsync_harness(root: Path, ssh_host: SshHost, ssh: list[str] | None = None) -> Harness:
    base = root / "base"
    base.mkdir()
    location = Location(scheme="rsync", base=str(base), host="127.0.0.1", user=ssh_host.user, port=ssh_host.port)
    backend = RsyncBackend(ssh if ssh is not None else ssh_options(ssh_host))
    return Harness(backend=backend, location=location, base=base, root=root)


@pytest.fixture
def harness(tmp_path: Path, ssh_host: SshHost) -> Harness:
    return rsync_harness(tmp_path, ssh_host)


class TestRsyncBackend(BackendContract):
    pass


@pytest.fixture
def rsync_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file that gets the process id of every rsync started on this host: the first rsync on
    PATH becomes a script that writes it, then runs the real rsync in its place."""
    real = shutil.which("rsync")
    assert real is not None
    shim = tmp_path / "shim"
    shim.mkdir()
    starts = tmp_path / "rsync-starts"
    starts.touch()
    (shim / "rsync").write_text(f'#!/bin/sh\necho $$ >> "{starts}"\nexec "{real}" "$@"\n')
    (shim / "rsync").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    return starts


def test_a_task_of_many_items_is_one_rsync_each_way(harness: Harness, rsync_starts: Path) -> None:
    for i in range(50):
        write(harness.base / "in" / f"{i}.dat", os.urandom(1000 + i))
        write(harness.root / f"w{i}" / "result.dat", os.urandom(2000 + i))
    make_tree(harness.base / "in" / "mesh")
    inward = [harness.item(i, f"in/{i}.dat", "input.dat", workdir=f"w{i}") for i in range(50)]
    inward.append(harness.item(50, "in/mesh", "mesh", workdir="w0", recursive=True))
    outward = [harness.item(100 + i, f"out/{i}/result.dat", "result.dat", workdir=f"w{i}") for i in range(50)]

    came = harness.run(harness.task("in", *inward, task_id="in"))
    assert len(rsync_starts.read_text().split()) == 1
    went = harness.run(harness.task("out", *outward, task_id="out"))
    assert len(rsync_starts.read_text().split()) == 2

    assert all(r.ok for r in [*came.values(), *went.values()])
    for i in range(50):
        assert fingerprint(harness.root / f"w{i}" / "input.dat") == fingerprint(harness.base / "in" / f"{i}.dat")
        assert fingerprint(harness.base / "out" / str(i) / "result.dat") == fingerprint(
            harness.root / f"w{i}" / "result.dat"
        )
    assert tree(harness.root / "w0" / "mesh") == tree(harness.base / "in" / "mesh")


def test_a_missing_file_fails_its_item_with_rsyncs_own_line(harness: Harness) -> None:
    write(harness.base / "in" / "1.dat", b"one")
    items = [harness.item(1, "in/1.dat", "1.dat"), harness.item(3, "in/3.dat", "3.dat")]

    results = harness.run(harness.task("in", *items))

    assert results[1].ok
    assert results[3].error == f'rsync: [sender] link_stat "{harness.base}/in/3.dat" failed: {ENOENT}'


def test_a_missing_base_directory_fails_every_item_with_rsyncs_line(harness: Harness) -> None:
    harness.base.rmdir()
    items = [harness.item(1, "in/1.dat", "1.dat"), harness.item(2, "in/2.dat", "2.dat")]

    results = harness.run(harness.task("in", *items))

    assert [r.ok for r in results.values()] == [False, False]
    for result in results.values():
        assert f'change_dir "{harness.base}/" failed: {ENOENT}' in result.error


def test_ssh_refusing_the_key_fails_every_item_with_sshs_message(tmp_path: Path, ssh_host: SshHost) -> None:
    keygen(tmp_path / "stranger", "a key the host was not given")
    ssh = ssh_options(ssh_host)
    ssh[ssh.index(str(ssh_host.key))] = str(tmp_path / "stranger")
    harness = rsync_harness(tmp_path, ssh_host, ssh)
    write(harness.base / "in" / "1.dat", b"one")
    write(harness.root / "w" / "2.dat", b"two")

    came = harness.run(harness.task("in", harness.item(1, "in/1.dat", "1.dat"), task_id="in"))
    went = harness.run(harness.task("out", harness.item(2, "out/2.dat", "2.dat"), task_id="out"))

    for result in (came[1], went[2]):
        assert not result.ok
        assert "Permission denied (publickey)." in result.error
    assert not (harness.root / "w" / "1.dat").exists()
    assert not (harness.base / "out").exists()


def test_a_missing_rsync_or_ssh_says_what_to_install(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = harness.task("in", harness.item(1, "in/1.dat", "1.dat"))

    with pytest.raises(TransferError, match=r"'no-such-ssh', the ssh of \[transfers\] ssh, was not found on PATH"):
        RsyncBackend(["no-such-ssh", "-o", "BatchMode=yes"]).run(task, lambda _: None, threading.Event())
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(TransferError, match="rsync is not installed on this host"):
        harness.run(task)


def test_a_path_with_a_line_break_is_refused_before_rsync_lists_it(harness: Harness) -> None:
    """rsync's list holds a path a line; jobs' paths are plain text already, and the backend
    refuses one that is not rather than list it as two."""
    write(harness.base / "in" / "1.dat", b"one")
    items = [harness.item(1, "in/1.dat", "1.dat"), harness.item(2, "in/1.dat\nin/x", "2.dat", workdir="w2")]

    results = harness.run(harness.task("in", *items))

    assert results[1].ok
    remote = f"{harness.base}/in/1.dat\nin/x"
    assert results[2].error == f"{remote!r} holds a line break; give a plain path"
    assert not (harness.root / "w2").exists()


def test_logging_in_ahead_without_rsync_or_ssh_leaves_the_task_to_say_so(harness: Harness) -> None:
    """The service logs in while it records a task; what is missing, the task's own run says."""
    backend = RsyncBackend(["no-such-ssh"], shared=True)
    task = harness.task("in", harness.item(1, "in/1.dat", "1.dat"))

    backend.log_in(harness.location, threading.Event())  # nothing to log in with: it returns
    with pytest.raises(TransferError, match="'no-such-ssh', the ssh of \\[transfers\\] ssh, was not found"):
        backend.run(task, lambda _: None, threading.Event())


def test_two_items_bringing_one_file_each_get_it(harness: Harness) -> None:
    source = write(harness.base / "in" / "shared.dat", b"shared input")
    items = [harness.item(i, "in/shared.dat", "input.dat", workdir=f"w{i}") for i in (1, 2, 3)]

    results = harness.run(harness.task("in", *items))

    assert all(r.ok for r in results.values())
    assert {fingerprint(harness.root / f"w{i}" / "input.dat") for i in (1, 2, 3)} == {fingerprint(source)}


def test_a_large_stage_in_sends_its_list_ahead_in_the_one_session_that_brings_the_files(
    harness: Harness, rsync_starts: Path
) -> None:
    """rsync reads a list sent from here one name at a time: the remote rsync gets its own copy,
    sent ahead of rsync's protocol in the same ssh session, and nothing is left on the remote
    host."""
    count = 3000
    for i in range(count):
        write(harness.base / "in" / str(i) / "in.dat", f"run {i}".encode())
    items = [harness.item(i, f"in/{i}/in.dat", "in.dat", workdir=f"runs/{i}") for i in range(count)]
    home = Path.home()  # the remote user's: the private sshd logs in as this user
    before = sorted(os.listdir(home))

    results = harness.run(harness.task("in", *items, task_id="many"))

    assert all(r.ok for r in results.values())
    assert [(harness.root / "runs" / str(i) / "in.dat").read_bytes() for i in range(count)] == [
        f"run {i}".encode() for i in range(count)
    ]
    assert len(rsync_starts.read_text().split()) == 1
    assert sorted(os.listdir(home)) == before


def local_host(tmp_path: Path, path: str) -> Path:
    """An ssh that runs the remote command on this host, as sshd would, with ``path`` as PATH
    (the remote host's programs)."""
    ssh = tmp_path / "local-ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        'while [ $# -gt 0 ]; do case $1 in -l|-p) shift 2;; -*) shift;; *) break;; esac; done\n'
        f'shift; PATH="{path}" exec sh -c "$*"\n'
    )  # fmt: skip
    ssh.chmod(0o755)
    return ssh


@pytest.mark.parametrize(
    "version", ["exit 1", "echo 'head (uutils coreutils) 0.2.2'"], ids=["no-version", "another-head"]
)
def test_a_remote_host_without_gnu_head_reads_the_list_a_byte_at_a_time(tmp_path: Path, version: str) -> None:
    """Only GNU head is known to read no further than asked; a host with another (here one that
    would take everything, as a buffered one may) reads the list with dd, and rsync's protocol
    after it is left for rsync."""
    programs = tmp_path / "remote-bin"
    programs.mkdir()
    (programs / "head").write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then {version}; exit; fi\nexec cat\n')
    (programs / "head").chmod(0o755)
    ssh = local_host(tmp_path, f"{programs}{os.pathsep}{os.environ['PATH']}")
    location = Location(scheme="rsync", base=str(tmp_path / "base"), host="far")
    harness = Harness(backend=RsyncBackend([str(ssh)]), location=location, base=tmp_path / "base", root=tmp_path)
    names = ["plain.dat", "with space.dat", "it's.dat", "#hash.dat", ";semi.dat", "star*.dat", "-dash.dat"]
    for i, name in enumerate(names):
        write(harness.base / "in" / name, f"input {i}".encode())
    items = [harness.item(i, f"in/{name}", "in.dat", workdir=f"runs/{i}") for i, name in enumerate(names)]

    results = harness.run(harness.task("in", *items))

    assert all(r.ok for r in results.values()), results
    assert [(tmp_path / "runs" / str(i) / "in.dat").read_bytes() for i in range(len(names))] == [
        f"input {i}".encode() for i in range(len(names))
    ]


def test_inputs_laid_out_a_directory_per_run_arrive_in_new_workdirs_made_as_mkdir_makes_them(
    harness: Harness,
) -> None:
    """A campaign's usual layout: the staged directory of each run's file becomes its new
    working directory (its parent made if new), with the mode a new directory gets here, not
    the remote one's."""
    for i in range(3):
        write(harness.base / "in" / str(i) / f"input_{i}.dat", f"run {i}".encode())
        (harness.base / "in" / str(i)).chmod(0o777)
    write(harness.root / "runs" / "2" / "kept.txt", b"made by a hook")
    (harness.root / "runs" / "2").chmod(0o750)
    (harness.root / "runs").rename(harness.root / "old")
    workdirs = [harness.root / "runs" / "0", harness.root / "runs" / "1", harness.root / "old" / "2"]
    items = [harness.item(i, f"in/{i}/input_{i}.dat", "input.dat", workdir=str(w)) for i, w in enumerate(workdirs)]
    umask = os.umask(0o022)
    os.umask(umask)

    results = harness.run(harness.task("in", *items))

    assert [(r.ok, r.bytes) for r in results.values()] == [(True, 5)] * 3
    assert [(w / "input.dat").read_bytes() for w in workdirs] == [f"run {i}".encode() for i in range(3)]
    # new ones hold only their file, with mkdir's mode; one that was there keeps its mode and files
    assert [sorted(os.listdir(w)) for w in workdirs] == [["input.dat"], ["input.dat"], ["input.dat", "kept.txt"]]
    assert [w.stat().st_mode & 0o777 for w in workdirs] == [0o777 & ~umask] * 2 + [0o750]
    # the new ones are the staged directories themselves (the tree starts below in/, the paths'
    # common directory): no directory more was made for them
    assert sorted(os.listdir(harness.root / "staging" / "t1" / "tree")) == ["2"]


def test_an_empty_working_directory_made_before_keeps_its_mode_and_gets_its_file(harness: Harness) -> None:
    """Made by a hook or by hand, it is the job's: the staged directory never replaces it."""
    write(harness.base / "in" / "0" / "input.dat", b"run 0")
    workdir = harness.root / "runs" / "0"
    workdir.mkdir(parents=True)
    workdir.chmod(0o705)

    results = harness.run(harness.task("in", harness.item(0, "in/0/input.dat", "input.dat", workdir=str(workdir))))

    assert [(r.ok, r.bytes) for r in results.values()] == [(True, 5)]
    assert (workdir / "input.dat").read_bytes() == b"run 0"
    assert workdir.stat().st_mode & 0o777 == 0o705


def test_a_file_arrives_as_the_sites_own_without_the_remote_owner_or_special_mode_bits(harness: Harness) -> None:
    """Whoever can write in a location's base must not make a set-user-id program, or a file
    of another local user, appear in a job's workdir (as root, -a alone would)."""
    tool = write(harness.base / "in" / "tool", b"#!/bin/sh\n")
    tool.chmod(0o6777)
    if os.geteuid() == 0:
        os.chown(tool, 4321, 4321)
    umask = os.umask(0o022)
    os.umask(umask)

    results = harness.run(harness.task("in", harness.item(0, "in/tool", "tool", workdir=str(harness.root / "w"))))

    assert [r.ok for r in results.values()] == [True]
    info = (harness.root / "w" / "tool").stat()
    assert stat.S_IMODE(info.st_mode) == 0o777 & ~umask, "no set-user-id, set-group-id or sticky bit"
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())


def test_files_of_one_remote_directory_for_several_new_workdirs_all_arrive(harness: Harness) -> None:
    for i in range(3):
        write(harness.base / "in" / f"{i}.dat", f"run {i}".encode())
    items = [harness.item(i, f"in/{i}.dat", "input.dat", workdir=f"runs/{i}") for i in range(3)]

    results = harness.run(harness.task("in", *items))

    assert all(r.ok for r in results.values())
    assert [(harness.root / "runs" / str(i) / "input.dat").read_bytes() for i in range(3)] == [
        f"run {i}".encode() for i in range(3)
    ]


def test_a_second_item_sending_to_the_same_path_waits_for_a_later_task(harness: Harness) -> None:
    write(harness.root / "w1" / "result.dat", b"first")
    write(harness.root / "w2" / "result.dat", b"second")
    items = [harness.item(i, "out/result.dat", "result.dat", workdir=f"w{i}") for i in (1, 2)]

    results = harness.run(harness.task("out", *items))

    assert results[1].ok
    assert not results[2].ok and "sent by a later task" in results[2].error
    assert (harness.base / "out" / "result.dat").read_bytes() == b"first"


def test_a_resumed_task_finishes_from_what_its_staging_directory_holds(harness: Harness) -> None:
    write(harness.base / "in" / "big.dat", os.urandom(1 << 20))
    write(harness.base / "in" / "small.dat", b"small")
    make_tree(harness.base / "in" / "mesh")
    write(harness.root / "w" / "small.dat", b"placed by the attempt before")
    task = harness.task(
        "in", harness.item(1, "in/big.dat", "big.dat"), harness.item(2, "in/small.dat", "small.dat"),
        harness.item(3, "in/mesh", "mesh", recursive=True),
    )  # fmt: skip
    # what an interrupted attempt leaves: half a file, and rsync's temporary files
    staged = Path(task.staging) / "tree" / "in"
    write(staged / "big.dat", (harness.base / "in" / "big.dat").read_bytes()[: 1 << 19])
    write(staged / ".big.dat.Ab12Cd", b"partial")
    write(staged / "mesh" / "sub" / ".b.bin.Zz99Qq", b"partial")
    write(staged / "mesh" / "a.txt", b"a" * 10, mode=0o640)  # its mode as that attempt made it

    results = harness.run(task)

    assert all(r.ok for r in results.values()), results
    assert fingerprint(harness.root / "w" / "big.dat") == fingerprint(harness.base / "in" / "big.dat")
    assert (harness.root / "w" / "small.dat").read_bytes() == b"small"
    assert tree(harness.root / "w" / "mesh") == tree(harness.base / "in" / "mesh")


def test_cancel_stops_the_running_rsync_and_its_ssh(tmp_path: Path, ssh_host: SshHost, rsync_starts: Path) -> None:
    # a proxy that never connects keeps ssh, and so rsync, waiting
    proxy_pid = tmp_path / "proxy.pid"
    ssh = [*ssh_options(ssh_host), "-o", f"ProxyCommand=sh -c 'echo $$ > {proxy_pid}; exec sleep 600'"]
    harness = rsync_harness(tmp_path, ssh_host, ssh)
    write(harness.base / "in" / "1.dat", b"one")
    task = harness.task("in", harness.item(1, "in/1.dat", "1.dat"))
    cancel = threading.Event()
    done: dict[int, ItemResult] = {}
    runner = threading.Thread(target=lambda: done.update(harness.run(task, cancel)))

    runner.start()
    while not proxy_pid.exists() or not proxy_pid.read_text().strip():
        time.sleep(0.05)
    cancel.set()
    runner.join(timeout=30)

    assert not runner.is_alive()
    assert [(r.ok, r.error) for r in done.values()] == [(False, "cancelled")]
    assert ends(int(rsync_starts.read_text()))
    assert ends(int(proxy_pid.read_text()))
    assert not (harness.root / "w" / "1.dat").exists()


def ends(pid: int) -> bool:
    """Whether process ``pid`` is gone, or has exited and waits to be reaped, within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_names_holding_quotes_get_rsyncs_line_about_their_own_file(harness: Harness) -> None:
    write(harness.base / "in" / 'a "quoted" name.dat', b"here")
    items = [harness.item(1, 'in/a "quoted" name.dat', "1"), harness.item(2, 'in/a "quoted" nam.dat', "2"),
             harness.item(3, 'in/a "quoted"', "3")]  # fmt: skip

    results = harness.run(harness.task("in", *items))

    assert results[1].ok
    for i, name in ((2, 'a "quoted" nam.dat'), (3, 'a "quoted"')):
        assert results[i].error == f'rsync: [sender] link_stat "{harness.base}/in/{name}" failed: {ENOENT}'


def test_a_file_that_cannot_take_its_place_there_fails_only_its_item(harness: Harness) -> None:
    write(harness.root / "w" / "x", b"x")
    write(harness.root / "w" / "y", b"y")
    write(harness.base / "out" / "x" / "inside", b"a directory in the way")

    results = harness.run(harness.task("out", harness.item(1, "out/x", "x"), harness.item(2, "out/y", "y")))

    assert (results[1].ok, results[2].ok) == (False, True)
    assert "cannot delete non-empty directory: out/x" in results[1].error
    assert (harness.base / "out" / "y").read_bytes() == b"y"


def test_a_working_directory_on_another_filesystem_is_copied_to_the_staging_directory(
    harness: Harness, small_disk: SmallDisk
) -> None:
    source = write(small_disk.path / "w" / "result.dat", b"result")
    item = harness.item(1, "out/result.dat", "result.dat", workdir=str(small_disk.path / "w"))

    results = harness.run(harness.task("out", item))

    assert results[1].ok
    assert fingerprint(harness.base / "out" / "result.dat") == fingerprint(source)


def test_stage_out_never_writes_through_a_directory_link_out_of_the_base(harness: Harness) -> None:
    # the remote rsync's own rule (rsync 3.5 resolves a destination beneath it): balsamd relies on it
    write(harness.root / "w" / "result.dat", b"result")
    (harness.root / "elsewhere").mkdir()
    (harness.base / "out").symlink_to(harness.root / "elsewhere")

    results = harness.run(harness.task("out", harness.item(1, "out/result.dat", "result.dat")))

    assert not results[1].ok
    assert f'"{harness.base}/out/result.dat": Too many levels of symbolic links' in results[1].error
    assert list((harness.root / "elsewhere").iterdir()) == []


def test_files_rsync_has_finished_become_workdirs_while_it_runs(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file is finished once rsync names the next one: the last is placed when rsync ends,
    the others before (here, while rsync's process waits two seconds more), and handed on as
    moved then."""
    rsync_then(tmp_path, monkeypatch, "sleep 2")
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    count = 30
    for i in range(count):
        write(harness.base / "in" / f"{i:02d}" / "in.dat", f"run {i}".encode())
    items = [harness.item(i, f"in/{i:02d}/in.dat", "in.dat", workdir=f"runs/{i}") for i in range(count)]
    results: dict[int, ItemResult] = {}
    arrived: list[ItemResult] = []
    task = threading.Thread(target=lambda: results.update(harness.run(harness.task("in", *items), arrived=arrived)))
    task.start()

    runs = harness.root / "runs"
    deadline = time.monotonic() + 30
    while len(list(runs.glob("*/in.dat")) if runs.exists() else []) < count - 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    placed_while_running = sorted(int(p.parent.name) for p in runs.glob("*/in.dat"))
    time.sleep(0.2)  # the next look at rsync's output hands them on
    handed_while_running = sorted(r.item_id for r in arrived)
    running = task.is_alive()
    task.join()

    assert running and placed_while_running == list(range(count - 1))
    assert handed_while_running == list(range(count - 1))
    assert all(r.ok for r in results.values())
    assert [(runs / str(i) / "in.dat").read_bytes() for i in range(count)] == [
        f"run {i}".encode() for i in range(count)
    ]


def three_runs(harness: Harness) -> list[Item]:
    """Three runs' inputs at the location, a directory each (in/00/in.dat ...), as items."""
    for i in range(3):
        write(harness.base / "in" / f"{i:02d}" / "in.dat", f"run {i}".encode())
    return [harness.item(i, f"in/{i:02d}/in.dat", "in.dat", workdir=f"runs/{i}") for i in range(3)]


def test_a_file_rsync_writes_again_after_it_was_placed_replaces_the_placed_one(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rsync sends a file whose checksum failed again at the end, having warned of it before it
    named the next file: the copy that arrives last is the one the job gets, and the file is not
    handed on as moved before the task ends."""
    # rsync starts from in/, the inputs' common directory, and names each path below it
    warning = "WARNING: 00/in.dat failed verification -- update retained (will try again)."
    # by then placed: rsync has named the next files
    again = 'sleep 1\nmkdir -p "$dest/00" && printf "sent again" > "$dest/00/in.dat"'
    rsync_then(tmp_path, monkeypatch, again, through=f"sed -u '/ 00\\/in.dat$/a {warning}'")
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    arrived: list[ItemResult] = []
    results = harness.run(harness.task("in", *three_runs(harness)), arrived=arrived)

    assert all(r.ok for r in results.values())
    assert [r.item_id for r in arrived] == [1, 2], "the last is finished once rsync ended well"
    assert (harness.root / "runs" / "0" / "in.dat").read_bytes() == b"sent again"
    assert (harness.root / "runs" / "1" / "in.dat").read_bytes() == b"run 1"


def test_the_last_file_is_not_handed_on_when_rsync_ends_badly(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rsync names a file as it starts writing it: the last one named by an rsync that failed
    (here its connection lost, code 12) may be half-written."""
    rsync_then(tmp_path, monkeypatch, "sleep 1\nexit 12")  # the others are handed on meanwhile
    monkeypatch.setattr(backend, "ARRIVED_EVERY_S", 0.0)
    arrived: list[ItemResult] = []
    results = harness.run(harness.task("in", *three_runs(harness)), arrived=arrived)

    assert [r.item_id for r in arrived] == [0, 1]
    assert not results[2].ok


def test_a_campaigns_long_paths_are_listed_below_their_common_directory(harness: Harness) -> None:
    """rsync reads its list a byte at a time: it starts from the directory the inputs share and
    reads each path below it.  A missing input still fails with rsync's own words on its full
    path, and only its item."""
    runs = "project/user/campaign-42/runs"
    for i in range(3):
        write(harness.base / runs / f"run_{i:04d}" / "input.h5", f"run {i}".encode())
    items = [harness.item(i, f"{runs}/run_{i:04d}/input.h5", "input.h5", workdir=f"w/{i}") for i in range(4)]

    results = harness.run(harness.task("in", *items))

    assert (harness.root / "staging" / "t1" / "files-from").read_text().splitlines() == [
        f"/run_{i:04d}/input.h5" for i in range(4)
    ]
    assert [results[i].ok for i in range(4)] == [True, True, True, False]
    assert [(harness.root / "w" / str(i) / "input.h5").read_bytes() for i in range(3)] == [b"run 0", b"run 1", b"run 2"]
    assert results[3].error == f'rsync: [sender] link_stat "{harness.base}/{runs}/run_0003/input.h5" failed: {ENOENT}'


def test_inputs_whose_common_directory_is_missing_fail_with_rsyncs_words_on_it(harness: Harness) -> None:
    items = [harness.item(i, f"gone/runs/r{i}/in.dat", "in.dat", workdir=f"w/{i}") for i in range(2)]

    results = harness.run(harness.task("in", *items))

    for result in results.values():
        assert not result.ok
        assert result.error.startswith(f'rsync: [sender] change_dir "{harness.base}/gone/runs/" failed: {ENOENT}')
