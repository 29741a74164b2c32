"""The daemon records the site's apps at start and whenever apps/ changes (sync publishes them);
one bad app file is recorded with its error and the other apps keep working."""

from __future__ import annotations

import textwrap
from pathlib import Path

from balsamd.models import App
from tests.daemon.conftest import DaemonSite, new_site, wait_until

# an app file as Balsam users write them
BALSAM_STYLE = '''\
from balsamd import ApplicationDefinition


class Greet(ApplicationDefinition):
    """Greets someone."""

    site = "theta"
    environment_variables = {"GREETING": "hello"}
    command_template = "echo $GREETING {{ who }} $SUFFIX > greeting.txt"
    parameters = {"who": {"required": False, "default": "world", "help": "whom to greet"}}
    cleanup_files = ["*.tmp"]
    transfers = {"input": {"direction": "in", "local_path": "in.dat", "description": "the input"}}

    def shell_preamble(self):
        return f"export SUFFIX={self.job.parameters['who']}-again"
'''


def apps_of(site: DaemonSite) -> dict[str, App]:
    with site.store() as store:
        return store.apps()


def test_the_daemon_records_the_apps_at_start_and_follows_added_changed_and_removed_files(
    site: DaemonSite,
) -> None:
    site.command_app("Hello", "echo {{ msg }}")
    site.start()
    hello = wait_until(lambda: apps_of(site).get("Hello"), "the app is recorded, without `app ls`")
    assert hello.parameters["msg"].required

    site.command_app("Added", "true")
    wait_until(lambda: "Added" in apps_of(site), "the added app is recorded")
    site.command_app("Hello", "echo {{ msg }} {{ other }}")
    wait_until(lambda: "other" in apps_of(site)["Hello"].parameters, "the changed app is recorded")
    (site.root / "apps" / "added.py").unlink()
    wait_until(lambda: "Added" not in apps_of(site), "the removed app is dropped")
    assert sorted(apps_of(site)) == ["Hello"]
    assert site.status()["services"][0]["detail"] == {"apps": 1, "broken": []}


def test_a_balsam_app_file_carries_over_and_runs_with_its_environment_and_preamble(daemon: DaemonSite) -> None:
    (daemon.root / "apps" / "greet.py").write_text(BALSAM_STYLE)
    greet = wait_until(lambda: apps_of(daemon).get("Greet"), "the Balsam app is recorded")
    assert greet.environment == {"GREETING": "hello"}
    assert greet.parameters["who"].default == "world" and greet.parameters["who"].help == "whom to greet"
    assert greet.preamble_per_job and greet.cleanup_files == ["*.tmp"]
    assert greet.transfers["input"].direction == "in" and greet.transfers["input"].local_path == "in.dat"
    assert greet.description == "Greets someone."
    assert greet.warnings == [
        "apps/greet.py, app Greet: site = 'theta' is ignored: an app belongs to the site whose apps/ holds "
        "its file (daemontest); move the file to that site's apps/ to publish it there",
    ]
    assert "apps/greet.py, app Greet: site = 'theta' is ignored" in daemon.daemon_log()

    [job_id] = daemon.create("Greet", parameters={"who": "ada"})
    daemon.finish(daemon.start_launcher("--job-mode", "serial", "--idle-ttl", "0.5"))
    job = daemon.wait_state(job_id, "JOB_FINISHED")
    assert (daemon.root / "data" / job.workdir / "greeting.txt").read_text() == "hello ada ada-again\n"


BROKEN_FILES = {
    "preamble.py": """\
        from balsamd import ApplicationDefinition

        class Preamble(ApplicationDefinition):
            command_template = "true"
            environment_variables = {"THREADS": 4}
        """,
    "imports.py": """\
        from balsam.api import ApplicationDefinition

        class OldStyle(ApplicationDefinition):
            command_template = "true"
        """,
}


def test_broken_app_files_are_recorded_with_their_errors_and_the_other_apps_keep_working(site: DaemonSite) -> None:
    site.command_app("Hello", "echo {{ msg }}")
    for name, source in BROKEN_FILES.items():
        (site.root / "apps" / name).write_text(textwrap.dedent(source))
    site.start()
    apps = wait_until(lambda: len(apps_of(site)) == 3 and apps_of(site), "the apps are recorded")
    assert apps["Hello"].error == ""
    assert apps["Preamble"].error == (
        "apps/preamble.py: app Preamble: environment_variables['THREADS'] must map a name to a string, "
        "not an int; write e.g. {'THREADS': '4'}"
    )
    assert apps["OldStyle"].error == (
        f"{site.root / 'apps' / 'imports.py'}: error while importing: ModuleNotFoundError: No module named 'balsam'"
    )
    assert site.status()["healthy"]
    assert "app OldStyle cannot be used until its file is fixed" in site.daemon_log()

    refused = site.balsamd("job", "create", "--app", "Preamble", "--workdir", "p", code=1)
    assert (
        refused.stderr == f"Error: site {site.root}: job: app Preamble cannot be used until its file is fixed: "
        f"{apps['Preamble'].error}\n"
    )
    [job_id] = site.create("Hello", parameters={"msg": "still here"})
    site.finish(site.start_launcher("--job-mode", "serial", "--idle-ttl", "0.5"))
    site.wait_state(job_id, "JOB_FINISHED")

    fixed = textwrap.dedent(BROKEN_FILES["preamble.py"]).replace("4", "'4'")
    (site.root / "apps" / "preamble.py").write_text(fixed)
    wait_until(lambda: not apps_of(site)["Preamble"].error, "the fixed app is recorded as usable")
    assert apps_of(site)["Preamble"].environment == {"THREADS": "4"}


HANGS = """\
import time
time.sleep(600)

from balsamd import ApplicationDefinition

class Sleepy(ApplicationDefinition):
    command_template = "true"
"""


def test_an_app_file_whose_import_hangs_is_recorded_as_broken_and_the_others_are_published(tmp_path: Path) -> None:
    with new_site(tmp_path, {"daemon.apps_load_timeout_sec": 2.0}) as site:
        site.command_app("Hello", "echo {{ msg }}")
        (site.root / "apps" / "hangs.py").write_text(HANGS)
        site.start()
        apps = wait_until(lambda: len(apps_of(site)) == 2 and apps_of(site), "the apps are recorded")
        assert apps["Hello"].error == ""
        assert apps["Sleepy"].error == (
            f"{site.root / 'apps' / 'hangs.py'}: importing it took longer than 2 s "
            "(daemon.apps_load_timeout_sec); stopped; fix the file (the site's other apps go on working)"
        )
        assert site.status()["services"][0]["detail"] == {"apps": 2, "broken": ["Sleepy"]}
