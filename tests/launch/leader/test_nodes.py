"""Node discovery: each scheduler's way of naming the hosts of an allocation."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsamd.launch.leader.nodes import (
    discover_nodes,
    expand_cobalt_partname,
    expand_slurm_hostlist,
    node_share,
    resolve_nodes,
)


def no_file(path: str) -> str:
    raise AssertionError(f"unexpected read of {path}")


def this_host() -> str:
    return "login-or-laptop"


def discover(env: dict[str, str], files: dict[str, str] | None = None) -> list[str]:
    def read(path: str) -> str:
        if files is None or path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]

    return discover_nodes(env, read_file=read, hostname=this_host)


# --- Slurm compressed host lists --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("nid0001", ["nid0001"]),
        ("nid[0001-0004,0010]", ["nid0001", "nid0002", "nid0003", "nid0004", "nid0010"]),
        ("a[1-2],b3,c[01-02]-ib", ["a1", "a2", "b3", "c01-ib", "c02-ib"]),
        (
            "rack[1-2]-node[01-02]",
            ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"],
        ),
        ("n[8-11]", ["n8", "n9", "n10", "n11"]),
        ("n[08-11]", ["n08", "n09", "n10", "n11"]),
        ("n[7]", ["n7"]),
        ("x1000c0s0b0n0,x1000c0s0b0n1", ["x1000c0s0b0n0", "x1000c0s0b0n1"]),
        ("node-[1-2].cluster", ["node-1.cluster", "node-2.cluster"]),
        ("  nid[1-2]\n", ["nid1", "nid2"]),
    ],
)
def test_slurm_hostlist_expands_ranges_keeping_zero_padding(text: str, hosts: list[str]) -> None:
    assert expand_slurm_hostlist(text) == hosts


def test_slurm_range_width_follows_its_lower_bound() -> None:
    assert expand_slurm_hostlist("n[098-101]") == ["n098", "n099", "n100", "n101"]


def test_empty_slurm_hostlist_names_no_hosts() -> None:
    assert expand_slurm_hostlist("") == []
    assert expand_slurm_hostlist("   ") == []


@pytest.mark.parametrize(
    "text",
    [
        "nid[1-4",  # unclosed
        "nid1-4]",  # close without open
        "nid[[1-2]]",  # nested
        "nid[]",  # empty group
        "nid[1,,2]",  # empty item
        "nid[a-b]",  # not numbers
        "nid[4-1]",  # backwards
        "nid[1-2-3]",  # two dashes
        "a,,b",  # empty host
        "a,b,",  # trailing comma
        "a b",  # blank inside a name
    ],
)
def test_malformed_slurm_hostlist_is_an_error_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="bad host list in the Slurm host list") as error:
        expand_slurm_hostlist(text)
    assert repr(text) in str(error.value)


# --- each scheduler's environment -------------------------------------------------------------


def test_slurm_job_nodelist_is_expanded() -> None:
    assert discover({"SLURM_JOB_NODELIST": "nid[001-003]"}) == ["nid001", "nid002", "nid003"]


def test_slurm_nodelist_is_used_when_job_nodelist_is_absent() -> None:
    assert discover({"SLURM_NODELIST": "c[1-2]"}) == ["c1", "c2"]


def test_slurm_job_nodelist_wins_over_slurm_nodelist() -> None:
    assert discover({"SLURM_JOB_NODELIST": "a1", "SLURM_NODELIST": "b1"}) == ["a1"]


def test_pbs_nodefile_lists_each_host_once_in_file_order() -> None:
    nodefile = "x3002c0s1b0n0\nx3002c0s1b0n0\nx3001c0s7b0n0\n\nx3001c0s7b0n0\nx3002c0s1b0n0\n"
    env = {"PBS_NODEFILE": "/var/spool/pbs/aux/123.pbs"}
    hosts = discover(env, {"/var/spool/pbs/aux/123.pbs": nodefile})
    assert hosts == ["x3002c0s1b0n0", "x3001c0s7b0n0"]


def test_unreadable_pbs_nodefile_is_an_error_naming_the_file() -> None:
    with pytest.raises(ValueError, match=r"PBS_NODEFILE=/missing could not be read"):
        discover({"PBS_NODEFILE": "/missing"})


def test_empty_pbs_nodefile_is_an_error_suggesting_nodes_option() -> None:
    with pytest.raises(ValueError, match=r"names no compute hosts; pass them with --nodes"):
        discover({"PBS_NODEFILE": "/nodes"}, {"/nodes": "\n\n"})


def test_pbs_nodefile_is_read_from_disk_by_default(tmp_path: Path) -> None:
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("h1\nh1\nh2\n")
    assert discover_nodes({"PBS_NODEFILE": str(nodefile)}) == ["h1", "h2"]


@pytest.mark.parametrize(
    ("partname", "nids"),
    [
        ("3", ["3"]),
        ("1-4,10", ["1", "2", "3", "4", "10"]),
        ("3824-3826,3830", ["3824", "3825", "3826", "3830"]),
        ("0007", ["7"]),
    ],
)
def test_cobalt_partname_gives_integer_node_ids(partname: str, nids: list[str]) -> None:
    assert expand_cobalt_partname(partname) == nids
    assert discover({"COBALT_PARTNAME": partname}) == nids


@pytest.mark.parametrize("partname", ["1-", "a-b", "4-1", "1,,2", "nid1"])
def test_malformed_cobalt_partname_is_an_error_naming_it(partname: str) -> None:
    with pytest.raises(ValueError, match="bad host list in COBALT_PARTNAME") as error:
        expand_cobalt_partname(partname)
    assert repr(partname) in str(error.value)


def test_lsf_mcpu_hosts_skips_batch_and_login_hosts_and_slot_counts() -> None:
    env = {"LSB_MCPU_HOSTS": "batch3 1 a01n01 42 a01n02 42 login2 1"}
    assert discover(env) == ["a01n01", "a01n02"]


def test_lsf_mcpu_hosts_lists_each_host_once() -> None:
    assert discover({"LSB_MCPU_HOSTS": "h1 2 h2 2 h1 2"}) == ["h1", "h2"]


@pytest.mark.parametrize("value", ["h1 2 h2", "h1 two"])
def test_lsf_mcpu_hosts_must_pair_hosts_with_slot_counts(value: str) -> None:
    with pytest.raises(ValueError, match="expected pairs of 'host slots'"):
        discover({"LSB_MCPU_HOSTS": value})


def test_lsf_mcpu_hosts_with_only_the_batch_host_is_an_error() -> None:
    with pytest.raises(ValueError, match="LSB_MCPU_HOSTS names no compute hosts"):
        discover({"LSB_MCPU_HOSTS": "batch1 1"})


def test_lsb_hosts_repeats_per_slot_and_lists_each_host_once() -> None:
    env = {"LSB_HOSTS": "batch1 h1 h1 h1 h2 h2 h2"}
    assert discover(env) == ["h1", "h2"]


def test_lsb_mcpu_hosts_wins_over_lsb_hosts() -> None:
    assert discover({"LSB_MCPU_HOSTS": "m1 4", "LSB_HOSTS": "l1 l1"}) == ["m1"]


def test_outside_an_allocation_the_launcher_runs_on_this_host() -> None:
    assert discover({}) == ["login-or-laptop"]


def test_empty_scheduler_variables_count_as_unset() -> None:
    assert discover({"SLURM_JOB_NODELIST": "", "PBS_NODEFILE": "  "}) == ["login-or-laptop"]


def test_schedulers_are_consulted_in_a_fixed_order() -> None:
    env = {
        "LSB_HOSTS": "l1",
        "LSB_MCPU_HOSTS": "m1 1",
        "COBALT_PARTNAME": "5",
        "PBS_NODEFILE": "/nodes",
        "SLURM_JOB_NODELIST": "s1",
    }
    files = {"/nodes": "p1\n"}
    assert discover(env, files) == ["s1"]
    del env["SLURM_JOB_NODELIST"]
    assert discover(env, files) == ["p1"]
    del env["PBS_NODEFILE"]
    assert discover(env, files) == ["5"]
    del env["COBALT_PARTNAME"]
    assert discover(env, files) == ["m1"]
    del env["LSB_MCPU_HOSTS"]
    assert discover(env, files) == ["l1"]


# --- the --nodes override ---------------------------------------------------------------------


def test_explicit_nodes_override_the_allocation() -> None:
    env = {"SLURM_JOB_NODELIST": "nid[1-4]"}
    assert resolve_nodes(["a", "b"], env, read_file=no_file, hostname=this_host) == ["a", "b"]


def test_explicit_nodes_are_stripped_and_listed_once() -> None:
    hosts = resolve_nodes([" a", "b ", "a", ""], {}, read_file=no_file, hostname=this_host)
    assert hosts == ["a", "b"]


def test_without_override_nodes_are_discovered() -> None:
    env = {"SLURM_JOB_NODELIST": "nid[1-2]"}
    assert resolve_nodes(None, env, read_file=no_file, hostname=this_host) == ["nid1", "nid2"]


def test_an_override_naming_no_hosts_is_an_error() -> None:
    with pytest.raises(ValueError, match="--nodes was given but names no hosts"):
        resolve_nodes(["", " "], {}, read_file=no_file, hostname=this_host)


def test_a_partition_takes_its_share_of_the_allocation_in_order() -> None:
    hosts = ["n1", "n2", "n3", "n4"]
    assert node_share(hosts, 0, 3) == ["n1", "n2", "n3"]
    assert node_share(hosts, 3, 1) == ["n4"]


def test_a_one_host_allocation_is_shared_by_every_partition() -> None:
    assert node_share(["laptop"], 0, 2) == ["laptop"]
    assert node_share(["laptop"], 2, 1) == ["laptop"]


def test_a_share_beyond_the_allocation_says_what_to_do() -> None:
    with pytest.raises(ValueError) as info:
        node_share(["n1", "n2"], 1, 2)
    assert str(info.value) == (
        "the share 1:2 needs 3 nodes but the allocation has 2; ask for more nodes, or give the partitions fewer"
    )
