"""Grade one submission, walled off: the unit of work of ``g2c autograde`` (local pool or Dask).

A ``Job`` carries everything as bytes (the notebook, a gradebook holding only the assignment), so
a worker on another machine needs no shared folder. ``grade`` builds a private course for the
job, computes the contract verdicts in one sandbox and runs nbgrader's autograde with the kernel
in another (see ``g2c.grading.sandbox``), both forked with torch already imported by the
worker's zygote (``g2c.grading.zygote``), under a wall-clock limit that kills both. It writes no
shared state: the ``Outcome`` goes back to the one process that writes the gradebook.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from g2c.grading.notebook_build import ASSIGNMENT, NOTEBOOK, WIDGET_TAG

KERNEL = "g2c-sandbox"
MAX_OUTPUT_CHARS = 20_000  # kept per cell: feedback stays small whatever the student prints
FLOOD_CHARS = 10_000_000  # received per cell: beyond this the cell is interrupted
TRUNCATED = "\n[g2c: output truncated]\n"
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag
_one_at_a_time = threading.Lock()  # nbgrader and the kernel spec use process-wide state
_zygote = None  # this worker's warm forker of sandboxed processes (g2c.grading.zygote)
warnings.filterwarnings("ignore", message="Object of type <Submitted")  # nbgrader 0.9's own SQLAlchemy noise


@dataclass
class Job:
    student: str
    notebook: bytes | None  # None: nothing submitted
    gradebook: bytes  # a gradebook with the assignment and no students
    checks: dict[str, list[str]]  # test cell grade_id -> contract tests of its hidden part
    timeout: float = 120.0  # seconds for the whole submission
    memory_mb: int | None = None
    hide: list[str] = field(default_factory=list)  # course paths student code must not see
    isolate: bool = True

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.notebook or b"").hexdigest()

    @property
    def limits(self) -> dict[str, float | None]:
        return {"timeout": self.timeout, "memory_mb": self.memory_mb}


@dataclass
class Outcome:
    student_id: str
    status: str  # graded, timeout, memory, crashed, unreadable notebook, missing notebook, grading failed
    digest: str = ""
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, float | None] = field(default_factory=dict)  # grade_id -> score (None: to grade by hand)
    auto_scores: dict[str, float | None] = field(default_factory=dict)  # what goes in the gradebook
    comments: dict[str, str | None] = field(default_factory=dict)  # solution grade_id -> auto comment
    detail: str = ""
    notebook: str | None = None  # the autograded notebook (JSON), for the gradebook's formgrader
    feedback: str | None = None  # the feedback page (HTML)
    seconds: float = 0.0
    leftovers: int = 0  # processes of the student's still alive after grading (killed)
    limits: dict[str, float | None] = field(default_factory=dict)  # the Job's timeout and memory limit


def grade(job: Job) -> Outcome:
    """Grade ``job`` and never raise: every failure is an outcome with a status."""
    start = time.perf_counter()
    with _one_at_a_time:
        try:
            _grading_environment()
            outcome = _grade(job, warm_zygote() if job.isolate else None)
        except Exception as err:  # a grader bug must not cost the batch
            outcome = Outcome(job.student, "grading failed", detail=f"{type(err).__name__}: {err}"[:300])
    outcome.digest, outcome.seconds, outcome.limits = job.digest, time.perf_counter() - start, job.limits
    return outcome


def _grading_environment() -> None:
    """What kernels and contract runs inherit (through the sandbox's KEPT_ENVIRONMENT).

    One thread each: jobs share the cores, and OpenMP threads spinning against each other made
    two jobs on two cores 2.5x slower than one. pytest without installed plugins and without its
    unraisable-exception hooks, whose two full garbage collections per run cost a visible-test
    cell 0.25 s in a kernel holding torch: 4 s a notebook. Neither changes any test's outcome.
    """
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
                      PYTEST_ADDOPTS="-p no:unraisableexception -p no:threadexception")


def warm_zygote():
    """Start this worker's zygote once (again if it died): later jobs fork from it."""
    global _zygote
    _grading_environment()
    if _zygote is None or not _zygote.alive():
        from g2c.grading.zygote import Zygote

        _zygote = Zygote(Path(tempfile.mkdtemp(prefix="g2c-zygote-")))
    return _zygote


def _grade(job: Job, zygote) -> Outcome:
    if job.notebook is None:
        return Outcome(job.student, "missing notebook", detail=f"no {ASSIGNMENT}/{NOTEBOOK} was submitted")
    try:
        nb = sanitized(job.notebook)
    except ValueError as err:
        return Outcome(job.student, "unreadable notebook", detail=str(err)[:300])
    work = Path(tempfile.mkdtemp(prefix="g2c-grade-"))
    try:
        return _grade_in(work, job, nb, zygote)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sanitized(raw: bytes) -> nbformat.NotebookNode:
    """The notebook, with nbgrader's metadata only on the last copy of a duplicated cell, and
    the widget cells marked not to run.

    nbgrader's own DeduplicateIds leaves an empty metadata dict that its validator then rejects
    ("nbgrader update ."), so a student who duplicated a cell would get no grade at all.
    The ungraded widget cells only draw pictures for the student: running them cost 2.5 s of a
    submission's 8 and 310 kB of its feedback page. nbclient skips cells tagged
    ``skip-execution``; a cell nbgrader grades or checks always runs, whatever its tags.
    """
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as err:
        raise ValueError(f"{type(err).__name__}: {err}".splitlines()[0]) from err
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if WIDGET_TAG in tags and "nbgrader" not in cell.metadata and SKIP_TAG not in tags:
            cell.metadata["tags"] = [*tags, SKIP_TAG]
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in seen:
            del cell.metadata["nbgrader"]
        elif grade_id:
            seen.add(grade_id)
    return nb


def _grade_in(work: Path, job: Job, nb: nbformat.NotebookNode, zygote) -> Outcome:
    from g2c.grading.sandbox import Box, job_uids, kill_uid
    from g2c.grading.verdict import store_verdicts

    work.chmod(0o711)  # the sandboxed uids may pass through, never list
    private, home, tests_home, shared = work / "private", work / "kernel", work / "contract", work / "verdicts"
    for folder, mode in ((private, 0o700), (home, 0o700), (tests_home, 0o700), (shared, 0o755)):
        folder.mkdir(mode=mode)
    (private / "gradebook.db").write_bytes(job.gradebook)
    submission = private / "submitted" / job.student / ASSIGNMENT / NOTEBOOK
    submission.parent.mkdir(parents=True)
    nbformat.write(nb, submission)
    verdicts_file = shared / "verdicts.json"
    kernel_uid, tests_uid = job_uids(os.getpid())
    hide = [Path(p) for p in job.hide]

    # The contract run and the kernel start together; the first hidden cell waits for the verdicts.
    verdicts: dict = {}
    tests_box = Box(tests_uid, tests_home, hide) if job.isolate else None
    contract = threading.Thread(target=lambda: verdicts.update(store_verdicts(submission, verdicts_file, job.timeout, job.memory_mb, tests_box, zygote)))
    contract.start()
    kernel_env = {"G2C_VERDICTS_FILE": str(verdicts_file), "G2C_VERDICTS_WAIT": str(job.timeout)}
    kernel_report = private / "kernel-exit.json"
    kernel_box = Box(kernel_uid, home, hide, job.memory_mb, kernel_env, quiet=True, report=kernel_report, see=[shared]) if job.isolate else None
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        kill_uid(kernel_uid)
        kill_uid(tests_uid)

    watchdog = threading.Timer(job.timeout, stop)
    watchdog.start()
    try:
        result = _nbgrader_autograde(private, home, job, kernel_box, kernel_env, zygote)
    finally:
        watchdog.cancel()
        contract.join()
    leftovers = kill_uid(kernel_uid) + kill_uid(tests_uid) if job.isolate else 0

    autograded = home / "autograded" / job.student / ASSIGNMENT / NOTEBOOK
    if timed_out.is_set():
        return Outcome(job.student, "timeout", detail=f"still running after {job.timeout:g} s: stopped", leftovers=leftovers)
    if not result["success"] or not autograded.exists():
        log = f"{result.get('error') or ''}\n{result.get('log') or ''}"
        died = "Kernel died" in log or "DeadKernel" in log
        status = "memory" if "MemoryError" in log or (died and _near_memory_limit(kernel_report, job.memory_mb)) else "crashed" if died else "grading failed"
        detail = _reason(log) + (f" (memory limit {job.memory_mb} MB: --memory)" if status == "memory" else "")
        return Outcome(job.student, status, detail=detail, leftovers=leftovers)
    graded = nbformat.read(autograded, as_version=4)
    outcome = _scores(private / "gradebook.db", job, verdicts)
    outcome.leftovers = leftovers
    if _hit_memory_limit(graded):
        outcome.status, outcome.detail = "memory", f"student code hit the {job.memory_mb} MB memory limit"
    from g2c.grading.feedback import feedback_html

    outcome.notebook = nbformat.writes(graded)
    outcome.feedback = feedback_html(graded, outcome.cells)
    return outcome


def _nbgrader_autograde(private: Path, home: Path, job: Job, box, env: dict[str, str], zygote) -> dict:
    """nbgrader's autograde over the job's private course; the kernel runs inside ``box``."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    runtime = home / "runtime"
    runtime.mkdir()
    spec = private / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": zygote.kernel_argv(box) if box else kernel, "display_name": "Python 3 (g2c grading sandbox)", "language": "python",
        "env": {} if box else env,  # a sandbox passes its own clean environment
    }))
    config = Config()
    config.CourseDirectory.root = str(private)
    config.CourseDirectory.source_directory = "source"
    config.CourseDirectory.submitted_directory = str(private / "submitted")
    config.CourseDirectory.autograded_directory = str(home / "autograded")
    config.CourseDirectory.db_url = f"sqlite:///{private / 'gradebook.db'}"
    config.Execute.timeout = int(job.timeout)
    config.Execute.iopub_timeout = int(job.timeout)  # a flood of output drains; the watchdog bounds it
    config.Execute.kernel_name = KERNEL
    config.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:"]
    config.LimitOutput.max_lines = 200
    config.KernelManager.transport = "ipc"  # Unix sockets: the kernel has no network at all
    config.KernelManager.connection_file = str(runtime / "kernel.json")
    config.KernelManager.ip = str(runtime / "ipc")
    config.Autograde.autograde_preprocessors = _preprocessors()
    os.environ.update(JUPYTER_PATH=str(private / "jupyter"), JUPYTER_RUNTIME_DIR=str(runtime))
    return NbGraderAPI(config=config).autograde(ASSIGNMENT, job.student, force=True, create=True)


def _preprocessors() -> list:
    """nbgrader's autograde steps, with an Execute that keeps at most MAX_OUTPUT_CHARS per cell.

    A cell that floods its output (over FLOOD_CHARS) is interrupted, as a student would with the
    stop button: the flood ends, and the cells after it still run and score.
    """
    import asyncio

    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    class CappedExecute(Execute):
        def output(self, outs, msg, display_id, cell_index):
            size = len(str(msg.get("content", {}).get("text", ""))) + len(json.dumps(msg.get("content", {}).get("data", {})))
            seen = self._received.get(cell_index, 0) + size
            self._received[cell_index] = seen
            if seen <= MAX_OUTPUT_CHARS:
                return super().output(outs, msg, display_id, cell_index)
            if not any(o.get("text") == TRUNCATED for o in outs):
                outs.append(nbformat.v4.new_output("stream", name="stdout", text=TRUNCATED))
            if seen > FLOOD_CHARS and cell_index not in self._interrupted:
                self._interrupted.add(cell_index)
                asyncio.ensure_future(self.km.interrupt_kernel())
            return None

        def preprocess(self, nb, resources=None, km=None):
            self._received: dict[int, int] = {}
            self._interrupted: set[int] = set()
            try:
                return super().preprocess(nb, resources, km)
            finally:  # nbgrader (root) writes here next: take the folder back from the student
                reclaim(Path(resources["metadata"]["path"]))

    steps = Autograde.class_traits()["autograde_preprocessors"].default()
    return [CappedExecute if step is Execute else step for step in steps]


def reclaim(folder: Path) -> None:
    """Give ``folder`` back to root, minus any link or special file student code left in it.

    Without this, a symlink planted at the autograded notebook's path would make nbgrader write
    through it as root.
    """
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.path.islink(path) or not (os.path.isfile(path) or os.path.isdir(path)):
                os.unlink(path)
            else:
                os.lchown(path, 0, 0)
    os.lchown(folder, 0, 0)


def _scores(db: Path, job: Job, verdicts: dict) -> Outcome:
    """Scores from the job's gradebook; a hidden part whose contract tests failed scores 0.

    The contract verdicts come from their own sandbox, so a kernel that fakes its checks gains
    nothing.
    """
    from nbgrader.api import Gradebook

    name = NOTEBOOK.removesuffix(".ipynb")
    with Gradebook(f"sqlite:///{db}") as gb:
        submitted = gb.find_submission_notebook(name, ASSIGNMENT, job.student)
        order = {cell.name: i for i, cell in enumerate(gb.find_notebook(name, ASSIGNMENT).grade_cells)}
        outcome = Outcome(job.student, "graded", max_score=float(submitted.max_score))
        for grade in sorted(submitted.grades, key=lambda g: (order.get(g.name, 1e9), g.name)):
            auto = grade.auto_score
            failed = [t for t in job.checks.get(grade.name, []) if not verdicts.get(t, (False, ""))[0]]
            if failed and auto:
                auto = 0.0
            outcome.auto_scores[grade.name] = auto
            outcome.cells[grade.name] = None if auto is None else float(auto)
        outcome.comments = {c.name: c.auto_comment for c in submitted.comments}
    outcome.score = sum(v for v in outcome.cells.values() if v is not None)
    return outcome


def _near_memory_limit(report: Path, memory_mb: int | None) -> bool:
    """Did the kernel die with its resident peak near the address-space limit?

    A torch kernel maps about 1.3 GB it never touches, so a memory bomb dies (failed allocations,
    often an abort) with its resident peak up to that far below the limit; an honest notebook
    peaks near 0.5 GB.
    """
    try:
        peak = json.loads(report.read_text())["max_rss_mb"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(memory_mb) and peak >= min(0.9 * memory_mb, memory_mb - 1536)


def _hit_memory_limit(nb: nbformat.NotebookNode) -> bool:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("ename", "") + output.get("evalue", "") + str(output.get("text", ""))
            if "MemoryError" in text or "can't allocate memory" in text:
                return True
    return False


def _reason(log: str) -> str:
    """The last exception nbgrader logged, e.g. "DeadKernelError: Kernel died"."""
    errors = re.findall(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception): .*)$", log, re.M)
    return errors[-1][:300] if errors else "unknown error (see nbgrader's log)"
