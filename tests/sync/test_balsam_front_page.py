"""The examples of Balsam's documentation front page, run from a laptop as they are written there
but for their imports and a connect line: a researcher's script declares a command app and a
Python app, creates a job and a batch job by Balsam's names, submits ten numpy vectors to a
four-rank app that asks mpi4py for its rank, and gathers their norms.  A real PostgreSQL, two
sites with their daemons running on the local scheduler (``my-laptop`` runs the batch job the
script asks for; ``theta-gpu``'s elastic queue runs the multi-rank jobs under the mpich wheel's
``mpiexec``).  A user the sites do not name is refused, saying who can change that."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from balsamd.arrays import decode
from balsamd.models import BatchJobState, JobMode
from balsamd.states import JobState
from tests.daemon.conftest import PROCESS_TIMEOUT, child_env, wait_until
from tests.sync.conftest import Central, SiteMaker, SyncSite

PAGE = Path(__file__).with_name("balsam_front_page.txt")
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")

# the page's three examples, one after the other; only the import lines and the connect line differ
SCRIPT = """\
import sys
import balsamd
from balsamd import ApplicationDefinition
balsamd.connect(sys.argv[1])

class Hello(ApplicationDefinition):
    site = "my-laptop"
    command_template = "echo hello {{ name }}"

    def handle_timeout(self):
        self.job.state = "RESTART_READY"
# On any machine with internet access...
from balsamd import Job, BatchJob

# Create Jobs:
job = Job.objects.create(
    site_name="my-laptop",
    app_id="Hello",
    workdir="test/say-hello",
    parameters={"name": "world!"},
)

# Or allocate resources:
BatchJob.objects.create(
    site_id=job.site_id,
    num_nodes=1,
    wall_time_min=10,
    job_mode="serial",
    project="local",
    queue="local",
)
import numpy as np

class MyApp(ApplicationDefinition):
    site = "theta-gpu"

    def run(self, vec):
        from mpi4py import MPI
        rank = MPI.COMM_WORLD.Get_rank()
        print("Hello from rank", rank)
        return np.linalg.norm(vec)

jobs = [
    MyApp.submit(
        workdir=f"test/{i}",
        vec=np.random.rand(3),
        ranks_per_node=4,
        gpus_per_rank=0,
    )
    for i in range(10)
]

for job in Job.objects.as_completed(jobs):
   print(job.workdir, job.result())
"""

RESEARCHER = "alice"
LAPTOP: dict[str, object] = {
    "apps.accept_from": [RESEARCHER],
    "daemon.scheduler_period_sec": 0.3,
    "launcher.idle_ttl_sec": 3.0,
}
GPU: dict[str, object] = {
    **LAPTOP,
    "launcher.mpiexec": MPIEXEC,
    "launcher.idle_ttl_sec": 1.0,
    "elastic.enabled": True,
    "elastic.period_sec": 0.5,
    "elastic.max_nodes": 1,
    "elastic.job_mode": "mpi",
    "elastic.min_wall_time_min": 1,
    "elastic.max_wall_time_min": 10,
    "elastic.wall_time_pad_min": 0,
}
SCRIPT_TIMEOUT = 90.0  # seconds for the whole campaign (within the tests' 120 s): ten four-rank launches


def page_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)


def test_the_script_is_the_pages_examples_but_for_imports_and_the_connect_line() -> None:
    page = "".join(page_examples()).splitlines()
    script = SCRIPT.splitlines()
    # the page has trailing spaces on two lines, which this file does not keep
    diff = list(difflib.ndiff([line.rstrip() for line in page], script))
    removed = [line[2:] for line in diff if line.startswith("- ")]
    added = [line[2:] for line in diff if line.startswith("+ ")]
    assert removed == ["from balsam.api import ApplicationDefinition", "from balsam.api import Job, BatchJob"]
    assert added == [
        "import sys",
        "import balsamd",
        "from balsamd import ApplicationDefinition",
        "balsamd.connect(sys.argv[1])",
        "from balsamd import Job, BatchJob",
    ]


def start_sites(central: Central, make_site: SiteMaker) -> tuple[SyncSite, SyncSite]:
    """The two sites the page names, each started by its owner and publishing its apps."""
    laptop = make_site("my-laptop", settings=LAPTOP, apps=False)
    gpu = make_site("theta-gpu", settings=GPU, apps=False)
    for site in (laptop, gpu):
        site.start()
        wait_until(
            lambda s=site: central.rows("SELECT 1 FROM balsamd.sites WHERE name = %s AND last_sync IS NOT NULL",
                                        (s.name,)),
            f"site {site.name} has synced",
        )  # fmt: skip
    return laptop, gpu


def run_script(central: Central, user: str, where: Path) -> subprocess.CompletedProcess[str]:
    """The script run by ``python`` as a researcher runs it, connecting as ``user``."""
    script = where / "campaign.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), central.dsn_for(user)],
        capture_output=True, text=True, cwd=where, env=child_env(), timeout=SCRIPT_TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
def test_the_front_page_runs_from_a_laptop_against_two_sites(
    central: Central, make_site: SiteMaker, tmp_path: Path
) -> None:
    laptop, gpu = start_sites(central, make_site)
    central.add_user(RESEARCHER)

    done = run_script(central, RESEARCHER, tmp_path)

    assert done.returncode == 0, done.stderr[-3000:]
    printed = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    with central.remote(RESEARCHER) as conn:
        vectors = conn.jobs.filter(site="theta-gpu", app="MyApp")
        assert sorted(printed) == sorted(job.workdir for job in vectors)
        assert len(vectors) == 10
        for job in vectors:
            assert (job.state, job.num_nodes, job.ranks_per_node, job.gpus_per_rank) == (
                JobState.JOB_FINISHED, 1, 4, 0
            ), job.state_reason  # fmt: skip
            norm = np.linalg.norm(decode(job.parameters)["vec"])
            assert job.result() == pytest.approx(norm)  # rank 0's return value
            assert float(printed[job.workdir]) == pytest.approx(norm)
            # four ranks printed, each its own rank (their writes interleave in the one output file)
            output = (gpu.root / "data" / job.workdir / "job.out").read_text()
            assert (output.count("Hello from rank"), sorted(re.findall(r"\d", output))) == (4, ["0", "1", "2", "3"])

        [hello] = conn.jobs.filter(site="my-laptop", app="Hello")
        [batch] = conn.batch_jobs.filter(site="my-laptop")
        [hello] = conn.jobs.wait([hello], timeout=PROCESS_TIMEOUT)
        assert (hello.state, hello.parameters, hello.batch_job_id) == (
            JobState.JOB_FINISHED, {"name": "world!"}, batch.id
        ), hello.state_reason  # fmt: skip
        wait_until(lambda: batch.refresh().state == BatchJobState.FINISHED, "the laptop's batch job finishes")
        assert (batch.owner, batch.num_nodes, batch.wall_time_min, batch.job_mode, batch.project, batch.queue) == (
            RESEARCHER, 1, 10, JobMode.SERIAL, "local", "local"
        )  # fmt: skip
        [declared] = [app for app in conn.apps.list(site="my-laptop") if app.name == "Hello"]
        assert declared.hooks == ["handle_timeout"]
    output = laptop.root / "data" / hello.workdir / "job.out"
    assert output.read_text() == "hello world!\n"
    assert hello.workdir == f"users/{RESEARCHER}/test/say-hello"


@pytest.mark.slow
def test_a_researcher_the_sites_do_not_name_is_told_to_ask_the_owner(
    central: Central, make_site: SiteMaker, tmp_path: Path
) -> None:
    start_sites(central, make_site)
    central.add_user("bob")

    done = run_script(central, "bob", tmp_path)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "balsamd.declare.AppRefused: site my-laptop refused app Hello: central user bob may not install apps at "
        "this site: ask the site's owner to add you to [apps] accept_from in settings.toml"
    )
    assert central.rows("SELECT count(*) FROM balsamd.jobs") == [(0,)]
    assert central.rows("SELECT kind, outcome ->> 'status' FROM balsamd.intents") == [("app", "rejected")]
