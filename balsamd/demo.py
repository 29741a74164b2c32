"""A demo campaign on a fresh local site: what `balsamd demo` (the README's main job) runs.

It makes a site, three apps, 1,000 no-op command jobs, a few Python-function jobs, a small DAG
(one root, three children, one fan-in) and a 2-rank MPI job over two posed nodes, runs them
with a serial and an mpi launcher, and reports what happened.  Then it leaves a day of made-up
campaign history in the site (``demo_history``), so that ``balsamd report ...`` has something
to show.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from balsamd.api import Site
from balsamd.demo_history import HistorySummary, app_sources, write_history
from balsamd.launch.leader.main import run_launcher
from balsamd.models import JobMode
from balsamd.modes import PRIVATE, write_file
from balsamd.results import value_of
from balsamd.site import init_site
from balsamd.states import FINAL, JobState

SQUARE_APP = '''\
from balsamd import ApplicationDefinition


class Square(ApplicationDefinition):
    """Squares a number in a warm Python worker."""

    def run(self, x: int) -> int:
        return x * x
'''

SERIAL_ROUNDS = 3
MPI_HELLO = 'echo "rank $PMI_RANK of $PMI_SIZE on $(hostname)"'


@dataclass
class DemoReport:
    site: Path
    counts: dict[str, int]
    noop_jobs: int
    serial_seconds: float
    squares: dict[int, int]
    dag_order_ok: bool
    mpi_output: str
    mpi_skipped: str = ""
    history: HistorySummary = field(default_factory=HistorySummary)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_demo(parent: Path | None = None, noop_jobs: int = 1000) -> DemoReport:
    parent = parent or Path(tempfile.mkdtemp(prefix="balsamd-demo-"))
    layout = init_site(parent / "demo-site", name="demo")
    mpiexec = shutil.which("mpiexec")
    # two nodes for the MPI job, four for the history's batch jobs
    text = layout.settings.read_text().replace("max_nodes = 1", "max_nodes = 4")
    if mpiexec:
        text = text.replace('mpiexec = "mpiexec"', f'mpiexec = "{mpiexec}"')
    layout.settings.write_text(text)
    for name, source in (
        ("square.py", SQUARE_APP),
        ("noop.py", _command_app("Noop", "true")),
        ("mpi_hello.py", _command_app("MpiHello", MPI_HELLO)),
        *app_sources().items(),
    ):
        write_file(layout.apps / name, source, PRIVATE.file)
    with Site(layout) as site:
        site.jobs.bulk_create({"app": "Noop", "workdir": f"noop/{i:05d}"} for i in range(noop_jobs))
        squares = site.jobs.bulk_create(
            {"app": "Square", "workdir": f"square/{x}", "parameters": {"x": x}} for x in range(1, 6)
        )
        root = site.jobs.create(app="Square", workdir="dag/root", parameters={"x": 2}, tags={"dag": "demo"})
        kids = [
            site.jobs.create(
                app="Square",
                workdir=f"dag/child{i}",
                parameters={"x": i},
                parent_ids=[root.id],
                tags={"dag": "demo"},
            )
            for i in range(3)
        ]
        join = site.jobs.create(
            app="Square", workdir="dag/join", parameters={"x": 10}, parent_ids=[k.id for k in kids],
            tags={"dag": "demo"},
        )  # fmt: skip
        mpi_job = site.jobs.create(app="MpiHello", workdir="mpi/hello", num_nodes=2)

        start = time.perf_counter()
        # a launcher stops once idle for idle_ttl; on a busy machine the DAG's children may
        # become runnable just after that, so another one takes what is left
        for _ in range(SERIAL_ROUNDS):
            run_launcher(layout, site.settings, site.store, site.apps.sync(), JobMode.SERIAL, idle_ttl=0.5)
            if not _serial_work_left(site):
                break
        serial_seconds = time.perf_counter() - start

        skipped = ""
        if mpiexec:
            run_launcher(
                layout, site.settings, site.store, site.apps.sync(), JobMode.MPI,
                idle_ttl=0.5, nodes=["localhost", "127.0.0.1"],
            )  # fmt: skip
        else:
            skipped = "no mpiexec on PATH (install the mpich wheel or load an MPI module)"
            site.jobs.kill([mpi_job.id])

        report = DemoReport(
            site=layout.root,
            counts=site.jobs.counts_by_state(),
            noop_jobs=noop_jobs,
            serial_seconds=serial_seconds,
            squares={j.parameters["x"]: value_of(j.refresh().record) for j in squares},
            dag_order_ok=_dag_in_order(site, root.id, [k.id for k in kids], join.id),
            mpi_output=(layout.data / "mpi/hello/job.out").read_text() if mpiexec else "",
            mpi_skipped=skipped,
        )
        report.problems = _problems(report, site)
        report.history = write_history(site.store, layout, site.settings.scheduler, time.time())
    return report


def _serial_work_left(site: Site) -> bool:
    """Whether jobs of the serial launcher's apps are still waiting or runnable."""
    waiting = [s for s in JobState if s not in FINAL]
    return any(site.jobs.count(app=app, state=waiting) for app in ("Noop", "Square"))


def _command_app(name: str, template: str) -> str:
    return (
        "from balsamd import ApplicationDefinition\n\n\n"
        f"class {name}(ApplicationDefinition):\n"
        f"    command_template = {template!r}\n"
    )


def _finished_at(site: Site, job_id: str) -> float:
    return max(e.ts for e in site.store.events(job_id) if e.to_state == "RUN_DONE")


def _dag_in_order(site: Site, root: str, kids: list[str], join: str) -> bool:
    try:
        root_done = _finished_at(site, root)
        kids_done = [_finished_at(site, k) for k in kids]
        started = {e.job_id: e.ts for e in site.store.events() if e.to_state == "RUNNING"}
    except ValueError:
        return False
    return all(started[k] >= root_done for k in kids) and started[join] >= max(kids_done)


def _problems(report: DemoReport, site: Site) -> list[str]:
    problems = []
    unfinished = {s: n for s, n in report.counts.items() if s not in ("JOB_FINISHED", "KILLED")}
    if unfinished:
        problems.append(f"jobs not finished: {unfinished}")
    if any(report.squares[x] != x * x for x in report.squares):
        problems.append(f"wrong Python results: {report.squares}")
    if not report.dag_order_ok:
        problems.append("the DAG did not run in dependency order")
    if not report.mpi_skipped and report.mpi_output.count("rank ") != 2:
        problems.append(f"the MPI job did not print from 2 ranks: {report.mpi_output!r}")
    return problems


def format_report(r: DemoReport) -> str:
    rate = r.noop_jobs / r.serial_seconds if r.serial_seconds else 0.0
    lines = [
        f"demo site: {r.site}",
        "jobs by state: " + ", ".join(f"{s}={n}" for s, n in r.counts.items()),
        f"serial launcher: {r.noop_jobs} no-op jobs + 10 Python jobs in {r.serial_seconds:.2f} s "
        f"({rate:.0f} no-op jobs/s)",
        "Python results: " + ", ".join(f"{x}^2={v}" for x, v in sorted(r.squares.items())),
        f"DAG root -> 3 children -> join ran in dependency order: {'yes' if r.dag_order_ok else 'NO'}",
    ]
    if r.mpi_skipped:
        lines.append(f"MPI job skipped: {r.mpi_skipped}")
    else:
        lines.append("MPI job (2 nodes x 1 rank): " + " | ".join(r.mpi_output.strip().splitlines()))
    h = r.history
    lines.append(
        f"history: a day of made-up campaign in the same site: {h.jobs} jobs of Simulate, Analyze and Square, "
        f"{h.runs} runs ({h.failed_runs} failed or timed out) in {h.batch_jobs} batch jobs"
    )
    lines.append(f"see it with: balsamd --site {r.site} report throughput (or utilization, failures, runtimes, queue)")
    lines.append("result: OK" if r.ok else "result: PROBLEMS: " + "; ".join(r.problems))
    return "\n".join(lines)
