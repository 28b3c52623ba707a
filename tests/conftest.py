"""What several test modules share: the course's paths, small notebook helpers, and one graded class.

The graded class (``batch``) is every submission the selected test modules contribute, graded
into one folder: a module adds students by defining ``batch_submissions(paths) -> {student:
submission}``. Grading the round trip's and the hostile class's students together pays the
grader's start-up once and keeps both workers busy to the end, instead of twice over two
half-empty tails. Select one module (``pytest tests/test_autograde.py``) and only its students
are graded.

Students whose point is a hang the grader must stop (a module names them in
``batch_limit_bound``) would each hold a worker for the whole limit: they are graded by a second
``g2c autograde`` run over the same class and folder with tight limits (HANG_TIMEOUT,
HANG_CELL_TIMEOUT), which, as any rerun, grades only what the first run left ungraded.

Tests that grade real submissions or run real kernels are marked ``slow``; ``pytest -m "not
slow"`` (``make unit``) is the inner loop.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import nbformat
import pytest

# One torch thread per process, here and in every kernel and grader this session starts (they inherit it), as
# `make test` sets: several torch processes share few cores, and threads spinning against each other's made
# runs up to ten times slower. Before any test module imports torch. An explicit setting wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from g2c.grading.assignment import load  # noqa: E402 (after the thread settings)
from g2c.grading.pitfalls import catalogue  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "03b-training"
SPEC = load(ASSIGNMENT, ROOT)  # its spec: answers, cells, points, scenarios
CATALOGUE = catalogue(SPEC)  # its pitfalls
SOURCE = ROOT / "source_notebooks" / ASSIGNMENT / SPEC.notebook  # the solution notebook
RELEASED = ROOT / "release" / ASSIGNMENT / SPEC.notebook  # the untouched student notebook
KIT = ROOT / "release" / ASSIGNMENT
# Views of the spec: cut answer -> [(grade_id, points, contract tests shown, scenarios)], grade_id -> scenarios
TEST_CELLS = {a.key: [(g.grade_id, g.points, list(g.tests), list(g.scenarios)) for g in SPEC.cells_of(a.key)]
              for a in SPEC.answers.values() if a.source}
SCENARIOS_OF = {g.grade_id: list(g.scenarios) for g in SPEC.graded.values()}
TOKEN = f"g2c-tests-{secrets.token_hex(4)}"  # in every sandboxed process's environment: finds leftovers
# The batch's limits. No submission of the first run is meant to reach them: on a loaded machine loot.py's walk
# through the sandbox's files and memory needs ~15 s of its cell, and a notebook must still reach its last cell
# (peek.py) within TIMEOUT; the fork bomb's notebook took 56 s with three loads on two cores (15 s with two).
# A submission that finishes pays nothing for the margin. MEMORY is half the CLI's default: a memory bomb fills it in
# both runs (probe and kernel) before it is stopped, and an honest run with torch needs about 1 GB of address space.
TIMEOUT, CELL_TIMEOUT, MEMORY = 90, 20, 2048
# The limits of the second run, for the students whose hang is the point (``batch_limit_bound``): each costs
# HANG_TIMEOUT of a worker at most instead of TIMEOUT. HANG_TIMEOUT still leaves an honest probe (about a second)
# time to finish, or to record what it verified before a late hang, and a kernel time to start and stop a hanging
# second cell on a loaded machine: a cell that ignores the interrupt is shown after two HANG_CELL_TIMEOUTs (its own,
# then nbclient's wait for its output), so start, setup cell and 8 s; 12 s was missed once with the book built beside.
HANG_TIMEOUT, HANG_CELL_TIMEOUT = 15, 4
# Four workers for them, not two: most of those hangs sleep (test_autograde_hostile.batch_limit_bound), so the
# second run mostly waits, and with two workers its 56 s of waiting were the end of `make test`'s longer load.
HANG_JOBS = 4


# ---------------------------------------------------------------- notebooks


def grade_id(cell) -> str | None:
    """The cell's nbgrader grade_id, or None (also when a hostile notebook's metadata is not a dict)."""
    meta = cell.metadata.get("nbgrader")
    return meta.get("grade_id") if isinstance(meta, dict) else None


def solution() -> nbformat.NotebookNode:
    return nbformat.read(SOURCE, as_version=4)


def without_demos(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with its demos skipped: their solution cells say ``pass``.

    No point depends on a demo (each is graded by hand, never probed) and a student may skip
    them; their training runs were half of each notebook run. A graded submission keeps them
    only where the demos are part of what it shows (the solution and the plain honest student).
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and not meta.get("grade") and grade_id(cell) not in SPEC.probed:
            cell.source = "pass  # the demo, skipped"
    return nb


def cell_of(nb, gid: str):
    return next(c for c in nb.cells if grade_id(c) == gid)


def write_submission(submitted: Path, student: str, data: bytes | None) -> None:
    """``submitted/<student>/03b-training/training.ipynb`` (only the folder when ``data`` is None)."""
    folder = submitted / student / ASSIGNMENT
    folder.mkdir(parents=True)
    if data is not None:
        (folder / "training.ipynb").write_bytes(data)


def rows(grades_csv: Path) -> dict[str, dict]:
    """grades.csv as student -> row."""
    with grades_csv.open() as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def feedback_page(out: Path, student: str) -> str:
    return (out / "feedback" / student / ASSIGNMENT / f"{SPEC.stem}.html").read_text()


def mutant_answers(name: str) -> dict[str, str]:
    """grade_id -> answer cell source with the named pitfall of tests/test_pitfalls.py."""
    from test_pitfalls import MUTANTS

    from g2c.grading.notebook_build import answer_sources

    texts, _ = MUTANTS[name]
    sources = answer_sources(SPEC, texts)
    return {answer: sources[answer] for answer in texts}


# ---------------------------------------------------------------- the graded class


class GradingPass(NamedTuple):
    """One `g2c autograde` run over the class: which folder, with which limits, on how many workers."""

    submitted: Path
    timeout: float
    cell_timeout: float
    jobs: int


@dataclass(frozen=True)
class BatchPaths:
    """Where a module's submissions go, and what they may aim at (the host's listener)."""

    course: Path  # a copy of the course's files: the batch's --course
    submitted: Path
    out: Path
    port: int  # a TCP listener on the host's loopback


@dataclass(frozen=True)
class Link:
    """A submission that is a symlink: the notebook itself (``what="notebook"``) or the student's folder."""

    what: str
    target: str


@dataclass
class Batch:
    """One graded class: the run, its grades, and the host as it was before and after."""

    paths: BatchPaths
    run: subprocess.CompletedProcess
    seconds: float
    rows: dict[str, dict]
    before: dict
    after: dict
    listener: Listener
    contributed: dict[str, set[str]] = field(default_factory=dict)  # test module -> its students
    limits: tuple[float, float] = (TIMEOUT, CELL_TIMEOUT)  # (timeout, cell timeout) of the last run

    @property
    def out(self) -> Path:
        return self.paths.out

    @property
    def submitted(self) -> Path:
        return self.paths.submitted

    @property
    def course(self) -> Path:
        return self.paths.course

    def grade_again(self) -> subprocess.CompletedProcess:
        """The whole class again, with the limits of the last run."""
        return grade_batch(self.course, self.submitted, self.out, *self.limits)


class Listener:
    """A TCP server on the host's loopback that counts who reaches it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def autograde_command(course: Path, submitted: Path, out: Path, jobs: int = 2, timeout: float = TIMEOUT,
                      cell_timeout: float = CELL_TIMEOUT) -> list[str]:
    return [sys.executable, "-m", "g2c.cli", "autograde", ASSIGNMENT, "--course", str(course), "--submitted", str(submitted),
            "--out", str(out), "--jobs", str(jobs), "--timeout", str(timeout), "--cell-timeout", str(cell_timeout),
            "--memory", str(MEMORY)]


def grading_env() -> dict[str, str]:
    """The instructor's token must not reach student code; PYDEVD_DISABLE_FILE_VALIDATION is kept in
    sandboxes, so it carries TOKEN, which marks every process of ours."""
    return {**os.environ, "G2C_INSTRUCTOR_TOKEN": "g2c-secret-token", "PYDEVD_DISABLE_FILE_VALIDATION": TOKEN}


def grade_batch(course: Path, submitted: Path, out: Path, timeout: float = TIMEOUT,
                cell_timeout: float = CELL_TIMEOUT, jobs: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run(autograde_command(course, submitted, out, jobs, timeout=timeout, cell_timeout=cell_timeout),
                          capture_output=True, text=True, timeout=1800, env=grading_env())


def course_copy(dest: Path) -> Path:
    """The course's files as they are on disk (tracked and untracked, not ignored), copied: the batch's --course.

    Grading against a copy lets the hostile tests demand that not one of its files changes while
    other engineers edit the working tree; the working tree itself is checked too (see ``wip``).
    """
    names = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, names):
        source, target = ROOT / name.decode(), dest / name.decode()
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    (dest / ".git").mkdir()
    (dest / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return dest


def wip() -> set[str]:
    """Files of the working tree someone is editing (modified or untracked): left out of the check."""
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "-z"], capture_output=True, check=True).stdout
    return {entry[3:].decode() for entry in status.split(b"\0") if len(entry) > 3}


def tracked_files(course: Path) -> dict[str, str]:
    """path -> sha256 of every file git tracks in the course repository (as it is on disk)."""
    names = subprocess.run(["git", "-C", str(course), "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
    out = {}
    for name in filter(None, names):
        path = course / name.decode()
        try:
            link = path.is_symlink()
            out[name.decode()] = "link:" + os.readlink(path) if link else hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            out[name.decode()] = f"missing: {err.errno}"
    return out


def files_under(folder: Path) -> dict[str, str]:
    out = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(top) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


OURS = ("g2c-grade-", "g2c-kit-", "g2c-register-", "g2c-zygote-", "g2c-fill-", TOKEN)  # what this grader and corpus name


def g2c_entries() -> set[str]:
    """g2c-* in the host's /tmp and /dev/shm under a name this grader or this corpus makes (the machine
    is shared: other engineers' runs of older code leave g2c-verdict-* and such meanwhile)."""
    return {f"{folder}/{name}" for folder in ("/tmp", "/dev/shm") for name in os.listdir(folder)
            if name.startswith(OURS) or (name.startswith("g2c-") and TOKEN in name)}


def still_there(entries: set[str], grace: float = 15.0) -> set[str]:
    """Of ``entries``, those still on disk after up to ``grace`` s: another grading run's working folder
    (`make pytest` runs two pytests side by side) comes and goes; a leftover stays."""
    deadline = time.monotonic() + grace
    while (left := {e for e in entries if os.path.lexists(e)}) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def ipcs() -> str:
    return subprocess.run(["ipcs"], capture_output=True, text=True).stdout


def key_owners() -> set[int]:
    """The uids that own kernel keys or keyrings (/proc/key-users lists every uid the kernel keeps keys for,
    whoever reads it; /proc/keys shows root only keys it may view). A sandbox uid among them after grading is a
    key a run left behind: keyrings belong to a uid, not to any namespace of the sandbox."""
    return {int(line.split(":")[0]) for line in Path("/proc/key-users").read_text().splitlines() if line.strip()}


def run_groups() -> set[str]:
    """The sandbox's cgroups on the host (one per run, removed after it)."""
    from g2c.grading.sandbox.cgroup import CONTROLLERS, HIERARCHIES, PREFIX

    return {str(p) for c in CONTROLLERS if (HIERARCHIES / c).is_dir() for p in (HIERARCHIES / c).rglob(f"{PREFIX}*")}


def host_snapshot(paths: BatchPaths) -> dict:
    """What grading must leave as it found: the course copy, the working tree, the submissions, the
    host's temp folders, its System V IPC, its kernel keys and its cgroups."""
    return {"course": files_under(paths.course), "tracked": tracked_files(ROOT), "wip": wip(), "head": head(),
            "submitted": files_under(paths.submitted), "g2c": g2c_entries(), "ipcs": ipcs(), "keys": key_owners(),
            "cgroups": run_groups()}


def contributors(session: pytest.Session) -> list:
    """The selected test modules that add students to the batch, in collection order."""
    modules = []
    for item in session.items:
        module = getattr(item, "module", None)
        if hasattr(module, "batch_submissions") and module not in modules:
            modules.append(module)
    return modules


def write_all(submitted: Path, submissions: dict[str, object]) -> None:
    submitted.mkdir(exist_ok=True)
    for student, submission in submissions.items():
        if isinstance(submission, Link):
            if submission.what == "notebook":
                write_submission(submitted, student, None)
                (submitted / student / ASSIGNMENT / SPEC.notebook).symlink_to(submission.target)
            else:
                (submitted / student).symlink_to(submission.target)
        elif isinstance(submission, nbformat.NotebookNode):
            write_submission(submitted, student, nbformat.writes(submission).encode())
        else:
            write_submission(submitted, student, submission)


SLOW_MODULES = {  # modules that are not ours to edit, marked here
    "test_widgets_kernel.py": "a notebook in a real kernel",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the graded class is slow by construction (minutes of sandboxed grading). Every
    test of a module that adds students to it is marked ``batch``: `make pytest` runs those modules (and
    the course flow, marked in its module) in a pytest of their own beside the rest."""
    for item in items:
        if hasattr(getattr(item, "module", None), "batch_submissions"):
            item.add_marker(pytest.mark.batch)
        if "batch" in getattr(item, "fixturenames", ()) or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def batch(request, tmp_path_factory) -> Batch:
    """Every contributed submission, graded by ``g2c autograde --jobs 2``: everyone but the limit-bound
    students first (in a folder of their own), then the whole class with tight limits (only the
    limit-bound students are left to grade)."""
    from g2c.grading.sandbox.box import isolation_available

    if problem := isolation_available():
        pytest.skip(f"no sandbox here: {problem}")
    tmp = tmp_path_factory.mktemp("class")
    listener = Listener()
    paths = BatchPaths(course_copy(tmp / "course"), tmp / "submitted", tmp / "out", listener.port)
    paths.submitted.mkdir()
    first = tmp / "submitted-first"  # the first run's class: everyone but the limit-bound students
    submissions: dict[str, object] = {}
    contributed: dict[str, set[str]] = {}
    limit_bound: set[str] = set()
    for module in contributors(request.session):
        added = module.batch_submissions(paths)
        assert not set(added) & set(submissions), f"{module.__name__} reuses student names"
        submissions |= added
        contributed[module.__name__] = set(added)
        limit_bound |= set(getattr(module, "batch_limit_bound", ())) & set(added)
    write_all(paths.submitted, submissions)
    write_all(first, {s: v for s, v in submissions.items() if s not in limit_bound})
    before = host_snapshot(paths) | {"first": files_under(first)}
    start = time.perf_counter()
    passes = [GradingPass(first if limit_bound else paths.submitted, TIMEOUT, CELL_TIMEOUT, 2)]
    if limit_bound:
        passes.append(GradingPass(paths.submitted, HANG_TIMEOUT, HANG_CELL_TIMEOUT, HANG_JOBS))
    runs = []
    for p in passes:
        runs.append(grade_batch(paths.course, p.submitted, paths.out, p.timeout, p.cell_timeout, p.jobs))
        print(f"\n{p.submitted.name} (timeout {p.timeout:g} s, cell timeout {p.cell_timeout:g} s): "
              f"{time.perf_counter() - start:.0f} s")
    seconds = time.perf_counter() - start
    after = host_snapshot(paths) | {"first": files_under(first)}
    # the last run's summary lists every student; a failure of either run fails the batch
    run = subprocess.CompletedProcess(runs[-1].args, next((r.returncode for r in runs if r.returncode), 0), runs[-1].stdout,
                                      "".join(r.stderr for r in runs))
    print(f"\ngraded class: {len(submissions)} submissions ({len(limit_bound)} limit-bound) in {seconds:.0f} s "
          f"(exit {run.returncode})\n{run.stderr[-3000:]}")
    graded = rows(paths.out / "grades.csv") if (paths.out / "grades.csv").exists() else {}
    return Batch(paths, run, seconds, graded, before, after, listener, contributed, (passes[-1].timeout, passes[-1].cell_timeout))
