"""Grade one submission: record in the sandbox, compare outside. The unit of work of ``g2c autograde``.

A ``Job`` carries everything as bytes or plain data (the notebook, a gradebook holding only the
assignment, the source notebook's graded cells), so a worker on another machine needs no shared
folder. ``grade`` runs two sandboxed processes at once, both forked by the worker's zygote
(``g2c.grading.sandbox.zygote``) in sandboxes of their own (``g2c.grading.sandbox.box``):

- the **probe** (``g2c.grading.sandbox.probe``) runs the setup cell and the answer cells on their own and
  records plain data about the student's objects on inputs drawn from a seed made of the answers' code
  and the course's secret (``g2c.grading.seeding``: the same code, the same inputs and grade);
- the **notebook run** (``g2c.grading.sandbox.runner``) executes the whole notebook, hidden tests
  removed, in a real kernel, for the outputs the instructor and the student see.

Both send their data out through files that root created before any student code ran. Then, in
this process, which never imports or runs student code, ``g2c.grading.compare`` decides every
autograded point from the probe's data, and nbgrader's autograde files the notebook and its
outputs in the job's private gradebook (its kernel step replaced by the recorded outputs). The
``Outcome`` goes back to the one process that writes the course's gradebook.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from g2c.grading.assignment import Assignment, load_folder
from g2c.grading.feedback import HIDDEN
from g2c.grading.notebook_build import WIDGET_TAG, facts, preamble
from g2c.grading.sandbox.box import Box, RunFacts, run_uid
from g2c.grading.sandbox.intake import inert_notebook, inert_outputs
from g2c.grading.sandbox.limits import CELL_TIMEOUT, MAX_FILE_BYTES, MEMORY_MB, TIMEOUT
from g2c.grading.sandbox.runner import MAX_IMAGES, MAX_TEXT, TRUNCATED  # the runner caps first; the grader again
from g2c.grading.sandbox.syscalls import open_no_follow

SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag
STUDENT = "student"  # the id in each job's private course (nbgrader reads real ids as glob patterns)
_one_at_a_time = threading.Lock()  # nbgrader uses process-wide state
_zygote = None  # this worker's warm forker of sandboxed processes
_kit: Path | None = None  # this worker's build of the student's g2c package
_runs = itertools.count()  # sandboxed runs this process has asked for: each gets a uid of its own (fresh_uid)
warnings.filterwarnings("ignore", message="Object of type <Submitted")  # nbgrader 0.9's own SQLAlchemy noise


@dataclass
class Job:
    student: str
    assignment: str  # its folder, <course>/source_notebooks/<name>: the spec the worker reads
    notebook: bytes | None  # None: nothing submitted
    gradebook: bytes  # a gradebook with the assignment and no students
    checks: dict[str, list[str]]  # test cell grade_id -> probe scenarios that decide it
    source_cells: dict[str, dict]  # grade_id -> {"cell_type", "source", "nbgrader"} of the source notebook
    timeout: float = TIMEOUT  # seconds for each of the two runs
    memory_mb: int | None = MEMORY_MB  # None: no memory limit
    cell_timeout: float = CELL_TIMEOUT  # seconds per notebook cell
    isolate: bool = True
    secret: bytes = b""  # the course's probe secret (g2c.grading.seeding): never sent to the sandbox
    facts: dict = field(default_factory=dict)  # the facts that train runs (notebook_build.grading_facts), read once per batch
    handed_in_as: str = ""  # the file graded, when it is not the notebook's own name (``training (1).ipynb``)

    @property
    def spec(self) -> Assignment:
        return load_folder(Path(self.assignment))

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
    cells: dict[str, float | None] = field(default_factory=dict)  # grade_id -> autograde score (None: to grade by hand)
    reasons: dict[str, list[str]] = field(default_factory=dict)  # grade_id -> why points were lost
    comments: dict[str, str | None] = field(default_factory=dict)  # solution grade_id -> auto comment
    detail: str = ""
    notebook: str | None = None  # the autograded notebook (JSON), for the gradebook's formgrader
    feedback: str | None = None  # the feedback page (HTML)
    seconds: float = 0.0
    leftovers: int = 0  # processes the student's code left running (killed with its sandbox)
    seed: int = 0  # the probe's inputs were drawn from this
    limits: dict[str, float | None] = field(default_factory=dict)  # the Job's timeout and memory limit


def grade(job: Job) -> Outcome:
    """Grade ``job`` and never raise: every failure is an outcome with a status."""
    start = time.perf_counter()
    with _one_at_a_time:
        try:
            if job.isolate:
                warm_zygote()
            else:
                _grading_environment()
            outcome = _grade(job)
        except Exception as err:  # a grader bug must not cost the batch
            outcome = Outcome(job.student, "grading failed", detail=f"{type(err).__name__}: {err}"[:300])
    outcome.digest, outcome.seconds, outcome.limits = job.digest, time.perf_counter() - start, job.limits
    return outcome


def _grading_environment() -> None:
    """What sandboxed runs inherit (through the sandbox's KEPT_ENVIRONMENT).

    One thread each: jobs share the cores, and OpenMP threads spinning against each other made
    two jobs on two cores 2.5x slower than one. pytest (the visible checks) without installed
    plugins and without its unraisable-exception hooks, whose two full garbage collections per
    run cost a visible-test cell 0.25 s in a kernel holding torch.
    """
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
                      PYTEST_ADDOPTS="-p no:unraisableexception -p no:threadexception")


def private_scratch() -> None:
    """Give this process a temp folder no one else sees, that vanishes with it, however it ends.

    In a mount namespace of its own, a fresh tmpfs covers /dev/shm and becomes the temp folder:
    every job's files, the kit and the zygote's runs live there, and when the worker and its
    children are gone (finished, crashed or killed with SIGKILL) the kernel frees it; nothing is
    ever left in the host's temp folder. Needs root and a single-threaded process (a local pool
    worker); elsewhere (Dask workers) the folders are removed as each job ends.
    """
    from g2c.grading.sandbox.syscalls import CLONE_NEWNS, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_REC, mount, unshare

    try:
        unshare(CLONE_NEWNS)
    except OSError:  # not root, or threads already running
        return
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=2g,mode=0711")
    tempfile.tempdir = "/dev/shm"


def warm_zygote() -> None:
    """Start this worker's zygote and build its kit package once (again if the zygote died)."""
    global _zygote, _kit
    _grading_environment()
    if _kit is None:
        from g2c.grading.kit import build_kit_package

        folder = Path(tempfile.mkdtemp(prefix="g2c-kit-"))
        folder.chmod(0o755)
        _kit = build_kit_package(folder / "g2c")
        import atexit

        atexit.register(shutil.rmtree, folder, True)
    if _zygote is None or not _zygote.alive():
        from g2c.grading.sandbox.zygote import Zygote

        _zygote = Zygote()


def _grade(job: Job) -> Outcome:
    if job.notebook is None:
        return Outcome(job.student, "missing notebook", detail=f"no {job.spec.name}/{job.spec.notebook} was submitted")
    try:
        nb = sanitized(job.notebook, job.source_cells)
    except ValueError as err:
        return Outcome(job.student, "unreadable notebook", detail=str(err)[:300])
    nb = inert_notebook(nb)  # before nbgrader or any renderer sees it
    work = Path(tempfile.mkdtemp(prefix="g2c-grade-"))  # 0700, root's: no sandbox ever sees it
    try:
        return _grade_in(work, job, nb)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sanitized(raw: bytes, source_cells: dict[str, dict]) -> nbformat.NotebookNode:
    """The notebook with nbgrader's metadata taken from the source notebook, not from the student.

    A cell keeps grading metadata only if the source has a cell of that grade_id and type, and
    only its last copy (nbgrader's DeduplicateIds leaves metadata its own validator rejects);
    points, locks and flags are the source's. Widget cells are tagged not to run when grading.
    """
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as err:
        raise ValueError(f"{type(err).__name__}: {err}".splitlines()[0]) from err
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        meta = cell.metadata.get("nbgrader")
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        source = source_cells.get(grade_id) if isinstance(grade_id, str) else None
        if "nbgrader" in cell.metadata:
            del cell.metadata["nbgrader"]
        if source and grade_id not in seen and source["cell_type"] == cell.cell_type:
            cell.metadata["nbgrader"] = json.loads(json.dumps(source["nbgrader"]))
            seen.add(grade_id)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        tags = [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []
        if WIDGET_TAG in tags and "nbgrader" not in cell.metadata and SKIP_TAG not in tags:
            cell.metadata["tags"] = [*tags, SKIP_TAG]
    return nb


def as_released(nb: nbformat.NotebookNode, source_cells: dict[str, dict],
                decided: Collection[str] = ()) -> nbformat.NotebookNode:
    """What the kernel runs: locked cells as the student received them (hidden tests removed).

    The test cells the grader decides (``decided``: their shown output is the grader's verdict,
    ``RecordedOutputs``) are tagged not to run: their run would be thrown away, and their checks
    were a third of an honest notebook's run.
    """
    released = json.loads(json.dumps(nb))
    for cell in released["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("locked"):
            cell["source"] = HIDDEN.sub("", source_cells[meta["grade_id"]]["source"])
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            if meta.get("grade_id") in decided:
                tags = cell["metadata"].get("tags")
                cell["metadata"]["tags"] = [*(tags if isinstance(tags, list) else []), SKIP_TAG]
    return nbformat.from_dict(released)


def probed_sources(nb: nbformat.NotebookNode, probed: list[str]) -> dict[str, str]:
    """grade_id -> source of the cells the probe runs (the answers' cells), as submitted."""
    return {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in nb.cells
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade_id") in probed}


def fresh_uid() -> int:
    """A uid no other run of this batch has (``box.run_uid``): keyrings, process counts and files keyed by uid stay the run's."""
    return run_uid(os.getpid(), next(_runs))


def _grade_in(work: Path, job: Job, nb: nbformat.NotebookNode) -> Outcome:
    from g2c.grading import compare
    from g2c.grading.seeding import probe_seed

    spec = job.spec
    facts(spec).learn(job.facts)  # the coordinator computed them once (the diagnosis key trains real runs)
    sources = probed_sources(nb, spec.probed)
    seed = probe_seed(job.secret, sources, spec.probed) if job.secret else secrets.randbits(31)  # same code, same inputs
    cells = [[grade_id, sources[grade_id]] for grade_id in spec.probed if grade_id in sources]
    probe = {"seed": seed, "scenario_source": spec.scenarios.read_text(), "setup": preamble(spec), "cells": cells,
             "scenarios": spec.scenario_names,
             "cell_seconds": job.cell_timeout}  # an endless loop in one answer cell costs that answer only
    notebook = {"notebook": nbformat.writes(as_released(nb, job.source_cells, job.checks)), "cell_timeout": job.cell_timeout}
    runs = {"probe": _Run(work, "probe", probe), "notebook": _Run(work, "notebook", notebook)}
    kernel_uid, probe_uid = fresh_uid(), fresh_uid()
    threads = [threading.Thread(target=runs["probe"].start, args=(job, probe_uid)),
               threading.Thread(target=runs["notebook"].start, args=(job, kernel_uid))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    record = compare.parse_record(runs["probe"].read(compare.MAX_RECORD), spec.scenario_names)
    checks = compare.decide(spec, record, seed, sources)
    outputs = executed_outputs(runs["notebook"].read(MAX_FILE_BYTES))
    outcome = Outcome(job.student, "graded", seed=seed, leftovers=sum(run.facts.leftovers for run in runs.values()))
    outcome.status, outcome.detail = _status(runs["probe"], record, job)
    verdicts = cell_verdicts(job, checks)
    result = _nbgrader_autograde(work, job, nb, outputs, verdicts)
    autograded = work / "autograded" / STUDENT / spec.name / spec.notebook
    if not result["success"] or not autograded.exists():
        raise RuntimeError(f"nbgrader autograde failed: {_reason(result.get('error') or '')} {_reason(result.get('log') or '')}")
    _scores(work / "gradebook.db", spec, verdicts, outcome)
    graded = nbformat.read(autograded, as_version=4)
    if notes := _notebook_run_notes(runs["notebook"], outputs, job):
        outcome.detail = "; ".join(filter(None, [outcome.detail, notes]))
    return with_pages(outcome, graded, job)


def with_pages(outcome: Outcome, graded: nbformat.NotebookNode, job: Job) -> Outcome:
    """``outcome`` with its autograded notebook and feedback page. A notebook graded from a file under another name
    keeps the file's name in its metadata (``HANDED_IN_KEY``): the page says it under its title, and so do pages
    rendered later from the autograded notebook (after hand grades, or by ``nbgrader generate_feedback``)."""
    from g2c.grading.feedback import HANDED_IN_KEY, feedback_html

    if job.handed_in_as:
        graded.metadata[HANDED_IN_KEY] = {"graded": job.handed_in_as, "expected": job.spec.notebook}
    outcome.notebook = nbformat.writes(graded)
    outcome.feedback = feedback_html(graded, outcome.cells, outcome.reasons)
    return outcome


class _Run:
    """One sandboxed run: its payload goes in as a file, its data comes out as one."""

    def __init__(self, work: Path, kind: str, payload: dict) -> None:
        self.kind, self.payload = kind, work / f"{kind}.json"
        self.output, self.report = work / f"{kind}.out", work / f"{kind}.report"
        self.payload.write_text(json.dumps(payload))
        self.exit: int | None = None
        self.finished = False
        self.facts = RunFacts()

    def start(self, job: Job, uid: int) -> None:
        if job.isolate:
            assert _kit is not None and _zygote is not None
            self.exit = _zygote.run(self.kind, Box(uid, _kit, job.memory_mb), self.payload, self.output, self.report, job.timeout)
            self.facts = RunFacts.read(self.report)
        else:
            self.exit = _run_unsandboxed(self.kind, self.payload, self.output, job.timeout)
        self.finished = self.exit is not None

    def read(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the run's output (root created the file; the run only wrote it)."""
        try:
            with open(self.output, "rb", opener=open_no_follow) as f:
                return f.read(limit)
        except OSError:
            return b""


def _run_unsandboxed(kind: str, payload: Path, output: Path, timeout: float) -> int | None:
    """--no-sandbox: the same run in a plain child process (trusted code only)."""
    import subprocess
    import sys

    code = ("import json, sys; from g2c.grading.sandbox.zygote import run_kind; "
            "run_kind(sys.argv[1], json.load(open(sys.argv[2])))")
    with open(output, "wb") as out:
        try:
            return subprocess.run([sys.executable, "-c", code, kind, str(payload)], stdout=out, stderr=subprocess.DEVNULL,
                                  timeout=timeout, check=False, cwd=tempfile.gettempdir()).returncode
        except subprocess.TimeoutExpired:
            return None


def _status(probe: _Run, record: dict, job: Job) -> tuple[str, str]:
    """The submission's status from what the sandbox measured of the probe's run (its answers decide the points).

    ``timeout``: the worker's clock; ``memory``: the run's cgroup (or init) counted the memory bound reached
    (``RunFacts.memory_hit``), so a rerun with another ``--memory`` regrades it; ``crashed``: its exit. Never
    from the record: a MemoryError an answer raises itself is that answer's error, and costs that part only.
    """
    if not probe.finished:  # whatever the record claims
        return "timeout", f"the answer cells were still running after {job.timeout:g} s: stopped"
    if job.isolate and (reason := probe.facts.memory_hit(job.memory_mb)):
        return "memory", f"the answer cells hit the memory limit (--memory): {reason}"
    if probe.exit != 0:
        return "crashed", f"the process running the answer cells ended early (exit code {probe.facts.exit_code or probe.exit})"
    if not record.get("done"):
        return "graded", "the answer cells' record was cut short (too large, or closed by the answer cells)"
    return "graded", ""


def _notebook_run_notes(run: _Run, outputs: dict[int, dict], job: Job) -> str:
    """What went wrong in the notebook run itself (its outputs are shown; it decides no point)."""
    if not run.finished:
        return f"the notebook run was stopped after {job.timeout:g} s; cells after the last one shown did not run"
    if not outputs.get("done"):
        return "the notebook's kernel died before the end (see the last cell with output)"
    return ""


def executed_outputs(raw: bytes) -> dict:
    """cell index -> {"execution_count", "outputs"} from the notebook run's lines, validated and capped."""
    found: dict = {}
    for line in raw.splitlines():
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if item == {"done": True}:
            found["done"] = True
            continue
        if not isinstance(item, dict) or not isinstance(item.get("cell"), int) or not isinstance(item.get("outputs"), list):
            continue
        outputs = inert_outputs([_valid_output(o) for o in item["outputs"][:200]])  # what formgrader and feedback may show
        count = item.get("execution_count")
        found[item["cell"]] = {"execution_count": count if isinstance(count, int) else None,
                               "outputs": _capped(outputs)}
    return found


def _valid_output(output) -> nbformat.NotebookNode | None:
    try:
        node = nbformat.from_dict(output)
        nbformat.validator.validate(node, ref="output", version=4, version_minor=5)  # a well-formed output, nothing else
        return node
    except Exception:
        return None


def _capped(outputs: list) -> list:
    """At most MAX_TEXT characters of text and MAX_IMAGES of images per cell, counted apart."""
    kept, text, images, cut = [], 0, 0, False
    for output in outputs:
        data = output.get("data", {})
        size_images = sum(len(str(v)) for k, v in data.items() if k.startswith("image/"))
        size_text = len(json.dumps(output)) - size_images
        if text + size_text > MAX_TEXT or images + size_images > MAX_IMAGES:
            cut = True
            continue
        text, images = text + size_text, images + size_images
        kept.append(output)
    if cut:
        kept.append(nbformat.v4.new_output("stream", name="stdout", text=TRUNCATED))
    return kept


def _nbgrader_autograde(work: Path, job: Job, nb: nbformat.NotebookNode, outputs: dict, verdicts: dict) -> dict:
    """nbgrader's autograde over the job's private course, its kernel step replaced by ``outputs``
    (and, in test cells, by the grader's ``verdicts``)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    (work / "gradebook.db").write_bytes(job.gradebook)
    submission = work / "submitted" / STUDENT / job.spec.name / job.spec.notebook
    submission.parent.mkdir(parents=True)
    nbformat.write(nb, submission)
    config = Config()
    config.CourseDirectory.root = str(work)
    config.CourseDirectory.source_directory = "source"
    config.CourseDirectory.submitted_directory = str(work / "submitted")
    config.CourseDirectory.autograded_directory = str(work / "autograded")
    config.CourseDirectory.db_url = f"sqlite:///{work / 'gradebook.db'}"
    config.Autograde.autograde_preprocessors = _preprocessors(outputs, verdicts)
    return NbGraderAPI(config=config).autograde(job.spec.name, STUDENT, force=True, create=True)


def _preprocessors(outputs: dict, verdicts: dict) -> list:
    """nbgrader's autograde steps, with its Execute replaced by the outputs the sandbox recorded."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute, NbGraderPreprocessor

    from g2c.grading.feedback import verdict_output

    class RecordedOutputs(NbGraderPreprocessor):
        """Put each cell's recorded outputs back (nbgrader cleared them): nothing runs here. A test
        cell shows the grader's verdict instead: formgrader must not show what a kernel forged."""

        def preprocess(self, nb, resources):
            for index, cell in enumerate(nb.cells):
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id in verdicts:
                    score, points, reasons = verdicts[grade_id]
                    cell.outputs, cell.execution_count = [verdict_output(score, points, reasons)], None
                elif cell.cell_type == "code" and index in outputs:
                    cell.outputs = outputs[index]["outputs"]
                    cell.execution_count = outputs[index]["execution_count"]
            return nb, resources

    steps = Autograde.class_traits()["autograde_preprocessors"].default()
    return [RecordedOutputs if step is Execute else step for step in steps]


def cell_verdicts(job: Job, checks: dict) -> dict[str, tuple[float, float, list[str]]]:
    """grade_id -> (score, points, why points were lost) of every autograded cell, from the
    comparator's checks of the probe scenarios that decide it: all or nothing per cell."""
    verdicts = {}
    for grade_id, scenarios in job.checks.items():
        points = float(job.source_cells[grade_id]["nbgrader"].get("points", 0))
        reasons = [checks[s].message for s in scenarios if s in checks and not checks[s].passed]
        reasons += [f"no data for {s}" for s in scenarios if s not in checks]
        verdicts[grade_id] = (0.0 if reasons else points, points, list(dict.fromkeys(reasons)))
    return verdicts


def _scores(db: Path, spec: Assignment, verdicts: dict, outcome: Outcome) -> None:
    """The outcome's scores in gradebook order; written answers stay for hand grading."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        submitted = gb.find_submission_notebook(spec.stem, spec.name, STUDENT)
        order = {cell.name: i for i, cell in enumerate(gb.find_notebook(spec.stem, spec.name).grade_cells)}
        outcome.max_score = float(submitted.max_score)
        for grade in sorted(submitted.grades, key=lambda g: (order.get(g.name, 1e9), g.name)):
            score, _, reasons = verdicts.get(grade.name, (None, 0, []))  # not in verdicts: graded by hand
            outcome.cells[grade.name] = score
            if reasons:
                outcome.reasons[grade.name] = reasons
        outcome.comments = {c.name: c.auto_comment for c in submitted.comments}
    outcome.score = sum(v for v in outcome.cells.values() if v is not None)


def _reason(log: str) -> str:
    """The last exception nbgrader logged, e.g. "DeadKernelError: Kernel died"."""
    errors = re.findall(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception): .*)$", log, re.M)
    return errors[-1][:300] if errors else log.strip().splitlines()[-1][:300] if log.strip() else ""
