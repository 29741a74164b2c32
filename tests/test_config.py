"""settings.toml: defaults, and errors that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsamd.config import (
    LauncherSettings,
    Settings,
    SettingsError,
    SiteInfo,
    default_cpus,
    load_settings,
    render_settings,
)


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = settings_file(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    return str(info.value).replace(str(path), "FILE")


def test_an_empty_file_means_every_default(tmp_path: Path) -> None:
    assert load_settings(settings_file(tmp_path, "")) == Settings()


def test_the_written_template_loads(tmp_path: Path) -> None:
    settings = load_settings(settings_file(tmp_path, render_settings("theta", "slurm")))
    assert settings.site == SiteInfo(name="theta", group_readable=False)
    assert settings.nodes.cpus_per_node == default_cpus()
    assert settings.scheduler.kind == "slurm"
    # apart from what site init fills in, the template shows the defaults
    assert settings.launcher == Settings().launcher
    assert settings.sync == Settings().sync
    assert settings.daemon == Settings().daemon
    assert settings.elastic == Settings().elastic
    assert settings.logging == Settings().logging


def test_values_are_read(tmp_path: Path) -> None:
    text = (
        '[nodes]\ncpus_per_node = 128\ngpus_per_node = 4\nmax_nodes = 16\n\n'
        '[launcher]\nmpi = "srun"\ngpu_env = ["ROCR_VISIBLE_DEVICES"]\nheartbeat_sec = 5\n'
    )  # fmt: skip
    settings = load_settings(settings_file(tmp_path, text))
    assert (settings.nodes.cpus_per_node, settings.nodes.gpus_per_node, settings.nodes.max_nodes) == (
        128,
        4,
        16,
    )
    assert settings.launcher.mpi == "srun"
    assert settings.launcher.gpu_env == ["ROCR_VISIBLE_DEVICES"]
    assert settings.launcher.heartbeat_sec == 5.0


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path / "settings.toml")
    assert str(info.value) == (
        f"{tmp_path}/settings.toml: settings file not found; is this a site directory? "
        "Create one with `balsamd site init DIR`."
    )


def test_a_directory_instead_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").mkdir()
    with pytest.raises(SettingsError, match=r"settings\.toml: is a directory, not a settings file; remove it"):
        load_settings(tmp_path / "settings.toml")


# ----- not valid TOML -------------------------------------------------------------------


def test_bad_toml_names_line_and_key(tmp_path: Path) -> None:
    assert error(tmp_path, "[nodes]\ncpus_per_node = 4\ngpus_per_node = \n") == (
        "FILE:3: key nodes.gpus_per_node: not valid TOML: Invalid value (column 17); "
        "put strings in double quotes, numbers and true/false without"
    )


def test_bad_toml_at_the_end_of_the_file(tmp_path: Path) -> None:
    assert error(tmp_path, '[launcher]\ngpu_env = ["A",\n') == (
        "FILE:2: key launcher.gpu_env: not valid TOML: Invalid value (at end of document); "
        "put strings in double quotes, numbers and true/false without"
    )


def test_bad_toml_on_a_table_header(tmp_path: Path) -> None:
    assert error(tmp_path, "[nodes]\nmax_nodes = 2\n\n[nodes]\ncpus_per_node = 4\n") == (
        "FILE:4: key nodes: not valid TOML: Cannot declare ('nodes',) twice (column 7); "
        "a table is declared twice; keep one"
    )


def test_bad_toml_without_a_key(tmp_path: Path) -> None:
    assert error(tmp_path, "[nodes\n") == (
        "FILE:1: not valid TOML: Expected ']' at the end of a table declaration (column 7); "
        "correct the TOML syntax there"
    )


# ----- wrong types and values -----------------------------------------------------------


def test_wrong_type(tmp_path: Path) -> None:
    assert error(tmp_path, '# comment\n[nodes]\ncpus_per_node = "64"\n') == (
        "FILE:3: key nodes.cpus_per_node: expected a whole number, got a string; give a whole number, "
        "or remove the line to use the default (cpus_per_node = 1)"
    )


def test_wrong_type_inside_a_list(tmp_path: Path) -> None:
    assert error(tmp_path, "[launcher]\nmpi = 'srun'\ngpu_env = [1]\n") == (
        "FILE:3: key launcher.gpu_env: expected a string, got a whole number; give a string, "
        'or remove the line to use the default (gpu_env = ["CUDA_VISIBLE_DEVICES"])'
    )


def test_value_out_of_range(tmp_path: Path) -> None:
    assert error(tmp_path, "[launcher]\nheartbeat_sec = 0\n") == (
        "FILE:2: key launcher.heartbeat_sec: expected a number of at least 0.001 (got 0); "
        "give a value of at least 0.001, or remove the line to use the default (heartbeat_sec = 60.0)"
    )


def test_log_sizes_are_checked(tmp_path: Path) -> None:
    assert error(tmp_path, "[logging]\nmax_bytes = 100\n") == (
        "FILE:2: key logging.max_bytes: expected a whole number of at least 4096 (got 100); "
        "give a value of at least 4096, or remove the line to use the default (max_bytes = 20971520)"
    )
    assert error(tmp_path, "[logging]\nbackups = -1\n") == (
        "FILE:2: key logging.backups: expected a whole number of at least 0 (got -1); "
        "give a value of at least 0, or remove the line to use the default (backups = 5)"
    )
    assert error(tmp_path, '[logging]\nmax_bytes = "20MB"\n') == (
        "FILE:2: key logging.max_bytes: expected a whole number, got a string; give a whole number, "
        "or remove the line to use the default (max_bytes = 20971520)"
    )


def test_a_section_given_as_a_value(tmp_path: Path) -> None:
    assert error(tmp_path, "nodes = 3\n") == "FILE:1: key nodes: expected a table, got a whole number; give a table"


def test_an_unknown_choice_lists_the_choices(tmp_path: Path) -> None:
    assert error(tmp_path, '[scheduler]\nkind = "sge"\n') == (
        "FILE:2: key scheduler.kind: 'sge' is not one of its values; use one of 'local', 'slurm', 'pbs', 'cobalt', "
        "'lsf'"
    )


def test_dotted_keys_and_inline_tables_are_located(tmp_path: Path) -> None:
    expected = (
        "FILE:2: key nodes.cpus_per_node: expected a whole number, got a string; give a whole number, "
        "or remove the line to use the default (cpus_per_node = 1)"
    )
    assert error(tmp_path, '# c\nnodes.cpus_per_node = "x"\n') == expected
    assert error(tmp_path, '# c\nnodes = { cpus_per_node = "x" }\n') == expected
    assert error(tmp_path, '[ nodes ]\n"cpus_per_node" = "x"  # quoted key\n') == expected


# ----- unknown keys ---------------------------------------------------------------------


def test_unknown_key_in_a_section(tmp_path: Path) -> None:
    assert error(tmp_path, "[nodes]\ncpus_per_node = 4\ncpu_per_node = 4\n") == (
        "FILE:3: key nodes.cpu_per_node: unknown key; did you mean cpus_per_node? remove it or correct its name "
        "(known keys: cpus_per_node, gpus_per_node, max_nodes)"
    )


def test_unknown_section(tmp_path: Path) -> None:
    assert error(tmp_path, "[node]\ncpus_per_node = 4\n") == (
        "FILE:1: key node: unknown key; did you mean nodes? remove it or correct its name "
        "(known keys: site, nodes, scheduler, launcher, sync, daemon, elastic, apps, transfers, logging)"
    )


def test_unknown_sub_table(tmp_path: Path) -> None:
    known = ", ".join(LauncherSettings.__struct_fields__)
    assert error(tmp_path, "[sync]\n\n[launcher.extra]\nx = 1\n") == (
        f"FILE:3: key launcher.extra: unknown key; remove it or correct its name (known keys: {known})"
    )


def test_unknown_key_in_an_inline_table(tmp_path: Path) -> None:
    assert error(tmp_path, "site = { name = 'x', nmae = 'y' }\n") == (
        "FILE:1: key site.nmae: unknown key; did you mean name? remove it or correct its name "
        "(known keys: name, group_readable)"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("min_nodes = 4\nmax_nodes = 2\n", "2: key elastic.min_nodes: 4 exceeds max_nodes (2); lower it"),
        (
            "min_wall_time_min = 60\nmax_wall_time_min = 30\n",
            "2: key elastic.min_wall_time_min: 60 exceeds max_wall_time_min (30); lower it",
        ),
        (
            "min_wall_time_min = 5\nwall_time_pad_min = 5\n",
            "3: key elastic.wall_time_pad_min: 5 must be smaller than min_wall_time_min (5)",
        ),
    ],
)
def test_elastic_limits_that_contradict_each_other_are_refused(tmp_path: Path, body: str, message: str) -> None:
    assert error(tmp_path, "[elastic]\n" + body).startswith(f"FILE:{message}")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[scheduler]\ndefault_queue = "debug\\n#SBATCH --wrap=touch pwned"\n', "scheduler.default_queue"),
        ('[scheduler]\ndefault_project = "a b"\n', "scheduler.default_project"),
        ('[scheduler]\nallowed_queues = ["debug", "x;y"]\n', "scheduler.allowed_queues"),
        ('[elastic]\nproject = "$(id)"\n', "elastic.project"),
    ],
)
def test_a_queue_or_project_that_is_not_one_word_is_refused(tmp_path: Path, text: str, key: str) -> None:
    assert error(tmp_path, text).startswith(
        f"FILE:2: key {key}: expected one word of letters, digits and _.@+:[]- "
        "(a scheduler's name for it), without spaces, quotes or line breaks (got "
    )


def test_an_allowed_launch_parameter_must_be_an_option_name(tmp_path: Path) -> None:
    assert error(tmp_path, '[launcher]\nallowed_launch_params = ["--x"]\n') == (
        "FILE:2: key launcher.allowed_launch_params: expected an option name of letters, "
        'digits, _ and -, as the MPI launcher takes it (got "--x"); correct it, or remove the line to use the '
        "default (allowed_launch_params = [])"
    )


def test_apps_are_accepted_from_nobody_unless_the_owner_names_central_users(tmp_path: Path) -> None:
    assert load_settings(settings_file(tmp_path, "")).apps.accept_from == []
    assert load_settings(
        settings_file(tmp_path, '[apps]\naccept_from = ["alice", "bob.s@lab"]\n')
    ).apps.accept_from == [
        "alice",
        "bob.s@lab",
    ]
    assert error(tmp_path, '[apps]\naccept_from = ["alice smith"]\n') == (
        "FILE:2: key apps.accept_from: expected a central user's name (their PostgreSQL role) of letters, digits "
        'and _.@-, at most 64 characters (got "alice smith"); correct it, or remove the line to use the default '
        "(accept_from = [])"
    )


def test_transfer_locations_are_read_by_name(tmp_path: Path) -> None:
    text = '[transfers.locations]\nfar = "file:///data/far"\nhpss = "rsync://me@dtn.example:2222/archive"\n'
    settings = load_settings(settings_file(tmp_path, text))
    assert settings.transfers.locations == {"far": "file:///data/far", "hpss": "rsync://me@dtn.example:2222/archive"}
