"""``g2c autograde``: a class graded in parallel, each submission sandboxed, nothing ever lost.

By default the batch is the course's own (``g2c.grading.course``): the gradebook, ``submitted/``,
``autograded/`` and ``feedback/`` that ``nbgrader_config.py`` names, so nbgrader's tools see it;
``out`` keeps a separate batch under one folder instead. grades.csv and ``results/`` go to the
layout's ``grades`` folder.

This process is the only writer: it registers the assignment, sends one ``worker.Job`` per
submission to a local process pool (or a Dask cluster with ``scheduler``), and as each
``Outcome`` arrives writes, in this order, the student's rows in the gradebook, their
autograded notebook and feedback page, and ``results/<student>.json`` (every file written
atomically). A run killed halfway and started again grades only submissions without a result
for the same notebook bytes, those the grader failed, and those stopped by a limit (timeout,
memory) that has changed since; ``force`` regrades everyone. At the end, with no regrade, the
gradebook's latest facts reach every student: submission times (the server's, from
``g2c.grading.received``; ``timestamp.txt`` is only compared) and late penalties (the course's
LateSubmissionPlugin), hand grades entered in formgrader (feedback re-rendered when they
changed), and grades.csv, one row per submission with its status.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from g2c.grading import path_with_this_environment, received
from g2c.grading.course import GRADES_COLUMNS, Layout, atomic_write, grade_cells, layout, load_results
from g2c.grading.feedback import HANDED_IN_INSTEAD, REASONS_KEY, minutes_late, standing
from g2c.grading.notebook_build import grading_facts
from g2c.grading.report import write_report
from g2c.grading.sandbox.limits import CELL_TIMEOUT, MEMORY_MB, TIMEOUT
from g2c.grading.seeding import course_secret
from g2c.grading.worker import Job, Outcome, grade

LIMIT_BEHIND = {"timeout": "timeout", "memory": "memory_mb"}  # status -> the limit that decided it
MAX_NOTEBOOK_BYTES = 64 * 2**20  # a submitted notebook
MAX_COMPANION_BYTES = 4096  # timestamp.txt, submission_secret.txt
SCRATCH = "/dev/shm"  # a tmpfs on Linux
# A student id nbgrader takes from the student (`submit --CourseDirectory.student_id`) must be a plain name: formgrader
# prints ids into HTML unescaped, terminals obey escape codes, spreadsheets run a leading "=" as a formula.
PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
REFUSED = "refused: not a plain student id"  # the status of a submission under any other id


def autograde(course: Path, submitted: Path | None = None, out: Path | None = None, *, wait: bool = False,
              **options) -> list[Outcome]:
    """:func:`grade_batch` holding the gradebook's lock (:func:`one_run_at_a_time`): two runs at once on one course
    would both regrade everything and race on its files. ``wait``: wait for the other run to finish, else stop."""
    try:
        lay = layout(course, submitted, out, options.get("assignment"))
    except ValueError:
        return grade_batch(course, submitted, out, **options)  # which says what is wrong
    with one_run_at_a_time(lay, wait):
        return grade_batch(course, submitted, out, **options)


def grade_batch(course: Path, submitted: Path | None = None, out: Path | None = None, *, jobs: int | None = None,
              timeout: float = TIMEOUT, memory_mb: int | None = MEMORY_MB, scheduler: str | None = None, force: bool = False,
              isolate: bool = True, progress: bool = True, cell_timeout: float = CELL_TIMEOUT,
              due: str | None = None, assignment: str | None = None, regrade: str | None = None) -> list[Outcome]:
    """Grade every ``submitted/<student>/<assignment>/`` into the course's gradebook and folders (or
    under ``out``); ``assignment`` defaults to the course's only one.

    ``due`` (any date nbgrader parses; UTC unless it names a zone) sets the assignment's due date
    in the gradebook, as ``nbgrader db assignment add --duedate`` would. ``regrade``: grade that student
    (again) and nobody else (formgrader's Autograde button, g2c.grading.formgrader_autograde).
    """
    try:
        lay = layout(course, submitted, out, assignment)
    except ValueError as err:
        raise SystemExit(f"g2c autograde: {course} is not the course repository ({err}); "
                         "pass --course with the folder of nbgrader_config.py") from None
    course, spec = lay.root, lay.spec  # resolved
    submitted = lay.submitted
    source = course / "source_notebooks" / spec.name / spec.notebook
    if not source.is_file():
        raise SystemExit(f"g2c autograde: {source} is missing; build it with `make release`")
    os.environ["PATH"] = path_with_this_environment()  # nbgrader runs `alembic` from PATH
    folders = submitted.iterdir() if submitted.is_dir() else []
    students = sorted(p.name for p in folders if not p.name.startswith(".") and (p.is_dir() or p.is_symlink()))
    if not students:
        raise SystemExit(f"g2c autograde: no submissions found as {submitted}/<student>/{spec.name}/")
    students, refused = plain_ids(students)
    if isolate:
        from g2c.grading.sandbox.box import isolation_available

        if problem := isolation_available():
            raise SystemExit(f"g2c autograde: cannot sandbox student code here: {problem}. "
                             "Run as root (or with user namespaces), or pass --no-sandbox on a machine you can lose.")
    lay.grades.mkdir(parents=True, exist_ok=True)
    checks, source_cells = hidden_checks(source), graded_cells(source)
    done = {} if force else load_results(lay)
    found = {s: find_notebook(lay, s) for s in students}
    secret = course_secret(Path(lay.db_url.removeprefix("sqlite:///")).parent if lay.db_url.startswith("sqlite:///") else course)
    jobs_all = [Job(s, str(spec.folder), found[s].data, b"", checks, source_cells, timeout, memory_mb, cell_timeout,
                    isolate, secret, handed_in_as=found[s].renamed) for s in students]
    todo = [job for job in jobs_all if (job.student == regrade if regrade else _needs_grading(done.get(job.student), job))]
    # workers warm up while the assignment is registered; none start when only hand grades changed
    pool = None if scheduler or not todo else _local_pool(max(1, min(jobs or os.cpu_count() or 1, len(todo))), isolate)
    try:
        template = register_assignment(course, lay)
        if due is not None:
            set_due_date(lay, due)
        computed = grading_facts(spec) if todo else {}  # once here, not once per worker
        for job in todo:
            job.gradebook, job.facts = template, computed
        max_score = sum(grade_cells(lay).values())
        for outcome in _with_progress(_run(todo, pool, scheduler), len(todo), progress):
            outcome.max_score = max_score
            outcome.detail = "; ".join(filter(None, [found[outcome.student_id].note, outcome.detail]))
            record(lay, outcome)
    finally:  # even when interrupted: grades.csv reflects every result recorded so far
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
        if lay.db_exists:
            refresh(lay, students)
    write_report(lay)
    results = load_results(lay)
    fields = Outcome.__dataclass_fields__
    return [Outcome(**{k: v for k, v in results[s].items() if k in fields}) for s in students if s in results] + refused


def plain_ids(students: list[str]) -> tuple[list[str], list[Outcome]]:
    """(the students whose id is a plain name (PLAIN_ID), an outcome for each other one).

    The others are not graded and get no gradebook entry: their id would reach formgrader's pages, the terminal
    and grades.csv. Their outcome names them by ``repr`` (quoted, control characters escaped)."""
    plain = [s for s in students if PLAIN_ID.fullmatch(s)]
    refused = [Outcome(repr(s), REFUSED, detail="not graded: a student id is 1 to 64 of A-Z a-z 0-9 . _ @ -, starting "
                       "with a letter or digit; the student submits again under such an id")
               for s in students if not PLAIN_ID.fullmatch(s)]
    return plain, refused


def lock_path(lay: Layout) -> Path:
    """The lock beside the gradebook (``gradebook.db.lock``), or in the grades folder when the gradebook is no file."""
    if lay.db_url.startswith("sqlite:///"):
        db = Path(lay.db_url.removeprefix("sqlite:///"))
        return db.with_name(db.name + ".lock")
    return lay.grades / "autograde.lock"


@contextmanager
def one_run_at_a_time(lay: Layout, wait: bool) -> Iterator[None]:
    """An exclusive ``flock`` on :func:`lock_path` for the whole run; the kernel drops it when the process dies,
    so a killed run never leaves the course locked. The file says who holds it (pid, host, start)."""
    path = lock_path(lay)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = printable(os.pread(fd, 512, 0).decode(errors="replace").strip()) or "a process"
            if not wait:
                raise SystemExit(f"g2c autograde: another run is grading this course: {holder} holds {path}. "
                                 "Wait for it to finish, or pass --wait to start when it does") from None
            print(f"g2c autograde: waiting for {holder} (it holds {path})", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"g2c autograde pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _needs_grading(result: dict | None, job: Job) -> bool:
    """No result for these notebook bytes yet, a grader failure, or a result decided by a limit
    that has changed since."""
    if result is None or result.get("digest") != job.digest or result.get("status") == "grading failed":
        return True
    limit = LIMIT_BEHIND.get(result.get("status"))
    return limit is not None and result.get("limits", {}).get(limit) != job.limits[limit]


class NotARegularFile(OSError):
    """A FIFO, a device or a folder where a student's file should be."""


def read_without_links(folder: Path, *names: str, limit: int) -> bytes:
    """``folder/names...``, never through a link: a student's folder may hold links to another
    student's notebook, the solution, a FIFO or /dev/zero. Each component is opened with
    O_NOFOLLOW relative to the last and the file must be a regular one (else OSError: ENOENT,
    ELOOP, ENOTDIR or NotARegularFile); at most ``limit + 1`` bytes are read, to tell a file too large."""
    fds = [os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)]
    try:
        for name in names[:-1]:
            fds.append(os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fds.append(os.open(names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1]))
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            raise NotARegularFile(f"{names[-1]} is not a regular file")
        with os.fdopen(fds.pop(), "rb") as f:
            return f.read(limit + 1)
    finally:
        for fd in fds:
            os.close(fd)


def read_submission(lay: Layout, student: str, name: str | None = None) -> bytes | None:
    """``submitted/<student>/<assignment>/<notebook>`` (or ``name``; see :func:`read_without_links`); anything but a
    regular file of at most MAX_NOTEBOOK_BYTES is an unreadable notebook (None: nothing there)."""
    try:
        data = read_without_links(lay.submitted / student, lay.assignment, name or lay.spec.notebook, limit=MAX_NOTEBOOK_BYTES)
    except FileNotFoundError:
        return None
    except NotARegularFile:
        return b"not a notebook: not a regular file"
    except OSError as err:  # ELOOP / ENOTDIR: a link where a folder or the notebook should be
        return f"not a notebook: {err.strerror} (links are not followed)".encode()
    if len(data) > MAX_NOTEBOOK_BYTES:
        return f"not a notebook: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB".encode()
    return data


class Found(NamedTuple):
    data: bytes | None  # the notebook's bytes (None: none to grade)
    note: str = ""  # for the result's detail
    renamed: str = ""  # the file graded, when it is not the notebook's own name


def find_notebook(lay: Layout, student: str) -> Found:
    """The student's notebook. A notebook handed in under another name (``training (1).ipynb``) is graded when it
    is the only .ipynb in the folder; several are named, none is guessed."""
    data = read_submission(lay, student)
    if data is not None:
        return Found(data)
    others = other_notebooks(lay, student)
    if len(others) == 1:
        note = f"graded {others[0]!r}, {HANDED_IN_INSTEAD} {lay.spec.notebook}"
        return Found(read_submission(lay, student, others[0]), note, others[0])
    if others:
        return Found(None, f"found {', '.join(map(repr, others))}: rename the one to grade {lay.spec.notebook}")
    return Found(None)


def other_notebooks(lay: Layout, student: str) -> list[str]:
    """The regular ``*.ipynb`` files in ``submitted/<student>/<assignment>/``, listed without following any link
    (the folders are opened with O_NOFOLLOW, the files looked at with lstat)."""
    try:
        student_fd = os.open(lay.submitted / student, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        folder_fd = os.open(lay.assignment, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=student_fd)
        try:
            names = sorted(n for n in os.listdir(folder_fd) if n.endswith(".ipynb") and not n.startswith("."))
            return [n for n in names if stat.S_ISREG(os.stat(n, dir_fd=folder_fd, follow_symlinks=False).st_mode)]
        finally:
            os.close(folder_fd)
    except OSError:
        return []
    finally:
        os.close(student_fd)


def renamed_notebooks(results: list[Outcome]) -> list[str]:
    """One line per submission graded from a notebook under another name (for the terminal)."""
    return [f"{r.student_id}: {r.detail}" for r in results if r.status == "graded" and HANDED_IN_INSTEAD in r.detail]


def register_assignment(course: Path, lay: Layout) -> bytes:
    """A gradebook holding the assignment and no student (each job's start).

    The batch's gradebook gets the assignment too when it lacks it (a new course, or one that
    ``nbgrader db`` created empty), so stock ``nbgrader autograde`` and formgrader find it.
    """
    # in memory where there is a tmpfs: the template is thrown away, and each of nbgrader's commits syncs a disk
    with tempfile.TemporaryDirectory(prefix="g2c-register-", dir=SCRATCH if os.path.isdir(SCRATCH) else None) as tmp:
        template = Path(tmp) / "gradebook.db"
        empty_gradebook(template)
        _generate_assignment(course, lay.assignment, f"sqlite:///{template}", Path(tmp) / "release")
        if not _has_assignment(lay):
            if lay.db_url.startswith("sqlite:///") and not lay.db_exists:
                atomic_write(Path(lay.db_url.removeprefix("sqlite:///")), template.read_bytes())
            else:
                _generate_assignment(course, lay.assignment, lay.db_url, Path(tmp) / "release")
        return template.read_bytes()


def empty_gradebook(db: Path) -> None:
    """An empty nbgrader gradebook at ``db``, stamped with nbgrader's schema version.

    What nbgrader's ``Gradebook`` makes of a new file, without its ``alembic heads`` subprocess,
    which reads the same version from the same scripts in a fresh interpreter (2 to 10 s of
    every run): nbgrader finds an existing gradebook and starts none.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base
    from nbgrader.dbutil import ALEMBIC_DIR
    from sqlalchemy import create_engine, text

    config = Config()
    config.set_main_option("script_location", ALEMBIC_DIR)
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = create_engine(f"sqlite:///{db}")
    try:
        Base.metadata.create_all(bind=engine)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": head})
    finally:
        engine.dispose()


def _generate_assignment(course: Path, name: str, db_url: str, release: Path) -> None:
    """nbgrader's generate_assignment of the source notebook into ``db_url`` (release thrown away)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.source_directory = "source_notebooks"
    config.CourseDirectory.release_directory = str(release)
    config.CourseDirectory.db_url = db_url
    result = NbGraderAPI(config=config).generate_assignment(name, force=True)
    if not result["success"]:
        raise SystemExit(f"g2c autograde: nbgrader generate_assignment failed:\n{result['log']}\n{result.get('error', '')}")


def _has_assignment(lay: Layout) -> bool:
    from nbgrader.api import Gradebook, MissingEntry

    if not lay.db_exists:
        return False
    with Gradebook(lay.db_url) as gb:
        try:
            return bool(gb.find_notebook(lay.spec.stem, lay.assignment).grade_cells)
        except MissingEntry:
            return False


def set_due_date(lay: Layout, due: str) -> None:
    """The assignment's due date, as ``nbgrader db assignment add --duedate`` stores it."""
    from nbgrader.api import Gradebook
    from nbgrader.utils import parse_utc

    with Gradebook(lay.db_url) as gb:
        gb.update_or_create_assignment(lay.assignment, duedate=parse_utc(due))


def hidden_checks(source: Path) -> dict[str, list[str]]:
    """grade_id -> the probe scenarios that decide it, as the source notebook's hidden parts name them."""
    import nbformat

    from g2c.grading.feedback import HIDDEN

    checks = {}
    for cell in nbformat.read(source, as_version=4).cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        for hidden in HIDDEN.findall(cell.source):
            if match := re.search(r"graded outside your notebook by g2c autograde: (.+)$", hidden, re.M):
                checks[grade_id] = [name.strip() for name in match.group(1).split(",")]
    return checks


def graded_cells(source: Path) -> dict[str, dict]:
    """grade_id -> type, source and nbgrader metadata of every cell nbgrader tracks in the source."""
    import nbformat

    cells = [cell for cell in nbformat.read(source, as_version=4).cells if cell.metadata.get("nbgrader", {}).get("grade_id")]
    return {cell.metadata["nbgrader"]["grade_id"]: {"cell_type": cell.cell_type, "source": cell.source,
                                                    "nbgrader": dict(cell.metadata["nbgrader"])} for cell in cells}


def _run(todo: list[Job], pool, scheduler: str | None) -> Iterator[Outcome]:
    """Outcomes as they finish, from a Dask cluster or the local pool."""
    if not todo:
        return
    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = [client.submit(grade, job, pure=False, key=f"g2c-grade-{job.student}-{os.getpid()}") for job in todo]
            for future in as_completed(futures):
                yield future.result()
        return
    from concurrent.futures import as_completed

    futures = [pool.submit(grade, job) for job in todo]
    try:
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise


# What every grading worker imports (nbgrader's autograde, nbconvert, the comparator and torch, the facts' package:
# 3 s each); none starts a thread, so a worker forked with them can still make its private scratch (unshare refuses
# a threaded process; tests/test_autograde.py checks it).
WORKER_IMPORTS = ["g2c.grading.worker", "g2c.grading.feedback", "g2c.grading.compare", "g2c.widgets.diagnosis",
                  "nbconvert.exporters.html", "nbgrader.apps", "nbgrader.converters.autograde"]


def _local_pool(workers: int, isolate: bool):
    """``workers`` grading processes, warming up (imports, zygote) while the batch is prepared."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_IMPORTS)  # imported once, in the server the workers are forked from
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    for _ in range(workers):  # one each: no worker is idle yet, so each submit starts a process
        pool.submit(_warm_up, isolate, os.getpid())
    return pool


def _warm_up(isolate: bool, coordinator: int) -> None:
    """Import what every job needs and start the zygote, once per worker, not once per submission.

    The worker also watches the coordinator: killed alone (kill -9), it would leave the pool
    behind; the worker's exit closes its zygote, whose runs die with it.
    """
    import threading
    import time

    from g2c.grading import worker

    if isolate:
        worker.private_scratch()  # before any thread: unshare(2) refuses a threaded process

    def exit_with_coordinator() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(coordinator, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=exit_with_coordinator, daemon=True).start()
    for name in WORKER_IMPORTS:  # already there when the forkserver preloaded them
        __import__(name)

    if isolate:
        worker.warm_zygote()


def _with_progress(outcomes: Iterator[Outcome], total: int, show: bool) -> Iterator[Outcome]:
    """A progress bar with counts per status and an ETA (on stderr)."""
    from tqdm import tqdm

    counts: Counter[str] = Counter()
    with tqdm(total=total, unit="submission", desc="grading", file=sys.stderr, disable=not show or not total,
              mininterval=0.5) as bar:
        for outcome in outcomes:
            counts[outcome.status] += 1
            bar.set_postfix_str(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())), refresh=False)
            bar.update()
            yield outcome


# ---------------------------------------------------------------- the one writer


def record(lay: Layout, outcome: Outcome) -> None:
    """Save one outcome: gradebook first, the result file last (its presence means done)."""
    save_to_gradebook(lay, outcome)
    student = outcome.student_id
    if outcome.notebook is not None:
        notebook = with_reasons(outcome.notebook, outcome.reasons)
        atomic_write(lay.submission("autograded", student), notebook.encode())
    if outcome.feedback is not None:
        atomic_write(lay.folder("feedback", student, lay.assignment) / lay.feedback_name, outcome.feedback.encode())
    else:
        shutil.rmtree(lay.folder("feedback", student, lay.assignment), ignore_errors=True)  # no stale page from an earlier run
    summary = {k: v for k, v in asdict(outcome).items() if k not in ("notebook", "feedback")}
    summary["feedback_for"] = _feedback_key({"cells": outcome.cells})
    save_result(lay, student, summary)


def with_reasons(notebook: str, reasons: dict[str, list[str]]) -> str:
    """The autograded notebook carrying the grader's reasons in its metadata, so that a page
    rendered later from the gradebook alone (``nbgrader generate_feedback``) can still explain them."""
    nb = json.loads(notebook)
    nb.setdefault("metadata", {})[REASONS_KEY] = reasons
    return json.dumps(nb, indent=1, ensure_ascii=False)


def save_to_gradebook(lay: Layout, outcome: Outcome) -> None:
    """The student's grades as nbgrader's SaveAutoGrades would store them, as grades.csv has them;
    0 when nothing was graded.

    A manual score given earlier is kept, and flags the grade for review, as in nbgrader.
    """
    from nbgrader.api import Gradebook

    with Gradebook(lay.db_url) as gb:
        gb.update_or_create_student(outcome.student_id)
        submission = gb.update_or_create_submission(lay.assignment, outcome.student_id)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if outcome.cells:  # graded, or stopped with what the probe recorded before
                    grade.auto_score = outcome.cells.get(grade.name)
                else:
                    grade.auto_score = None if grade.cell.cell_type == "markdown" else 0.0
                grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
            for comment in notebook.comments:
                comment.auto_comment = outcome.comments.get(comment.name)
        gb.db.commit()


def save_result(lay: Layout, student: str, summary: dict) -> None:
    """``results/<student>.json``: an outcome without its notebook and page; :func:`load_results` reads them."""
    atomic_write(lay.grades / "results" / f"{student}.json", json.dumps(summary, indent=1).encode())


# ---------------------------------------------------------------- what the gradebook knows now


def refresh(lay: Layout, students: list[str]) -> None:
    """Bring the gradebook's latest facts to every graded student, without regrading anyone.

    Timestamps and late penalties are (re)computed, scores are read back from the gradebook
    (a hand grade wins over the autograde, as in nbgrader), a feedback page whose scores or
    penalty changed is rendered again, and grades.csv is rewritten.
    """
    results = load_results(lay)
    graded = [s for s in students if s in results]
    arrivals = stamp_submissions(lay, {s: results[s].get("digest", "") for s in graded})
    now = gradebook_standing(lay, graded)
    for student in graded:
        key = _feedback_key(now[student]) if student in now else None
        stale = key is not None and results[student].get("feedback_for") != key
        if stale and rerender_feedback(lay, student, now[student], results[student]):
            results[student]["feedback_for"] = key
            save_result(lay, student, results[student])
        place_companions(lay, student)
    write_grades(lay, students, results, now, arrivals)


COMPANIONS = ("timestamp.txt", "submission_secret.txt")  # what nbgrader's collect puts beside a notebook


def companion(lay: Layout, student: str, name: str) -> bytes | None:
    """A small file nbgrader's collect wrote beside the notebook, read as the notebook is: never
    through a link (the student's folder included), a regular file, at most MAX_COMPANION_BYTES
    (None: not there or not that)."""
    try:
        data = read_without_links(lay.submitted / student, lay.assignment, name, limit=MAX_COMPANION_BYTES)
    except OSError:
        return None
    return data if len(data) <= MAX_COMPANION_BYTES else None


def place_companions(lay: Layout, student: str) -> None:
    """timestamp.txt and submission_secret.txt beside the autograded notebook and the feedback page,
    as nbgrader's autograde and generate_feedback leave them: release_feedback needs both."""
    for name in COMPANIONS:
        data = companion(lay, student, name)
        for step in ("autograded", "feedback"):
            folder = lay.folder(step, student, lay.assignment)
            if data is not None and folder.is_dir():
                atomic_write(folder / name, data)


def arrival(lay: Layout, student: str, digest: str) -> tuple[received.Received, received.Claim]:
    """When the student's graded notebook bytes reached the course (g2c.grading.received: collect's
    record of the inbound entry; else, the first time g2c sees them, the earliest inbound entry
    holding them or the copy in ``submitted/``), and what their ``timestamp.txt`` (the entry's, kept
    by collect; else the copy's) claims against it: only a claim, it never moves the time."""

    def from_exchange() -> received.Received | None:
        entries = inbound_entries(lay, student)
        return received.from_inbound(entries, digest, lambda entry: notebook_digest(entry, lay.spec.notebook))

    record = received.known(lay.received, student, (lay.submitted / student, lay.assignment), digest, from_exchange)
    said = record.claimed.encode() if record.claimed else companion(lay, student, "timestamp.txt")
    return record, received.claim(said, record.time, record.warning)


def inbound_entries(lay: Layout, student: str) -> list[Path]:
    """The student's entries for the assignment in the course's local exchange (``c.Exchange.root``),
    named ``<student>+<assignment>+<time>[+<random>]`` by nbgrader's submit; links left out, and, where the id
    names an account (``Collect.student_account``), entries another account owns: collect's wall
    (g2c.grading.exchange), for bytes nbgrader's own collect copied."""
    from nbgrader.exchange.default.exchange import Exchange

    from g2c.grading.exchange import Collect, account_uid

    root = lay.config.Exchange.get("root", Exchange.class_traits()["root"].default_value)
    login = lay.config.Collect.get("student_account", Collect.class_traits()["student_account"].default_value)
    owner = account_uid(login.format(student_id=student))
    inbound = Path(root) / lay.course_id / "inbound"
    try:
        names = os.listdir(inbound) if lay.course_id else []
        mine = [inbound / name for name in sorted(names) if name.rsplit("+", 3)[:2] == [student, lay.assignment]]
        return [entry for entry in mine if stat.S_ISDIR((info := os.lstat(entry)).st_mode)
                and owner in (None, info.st_uid)]
    except OSError:  # no exchange here, or an entry gone meanwhile: nothing to go by
        return []


def notebook_digest(folder: Path, notebook: str) -> str:
    """sha256 of ``folder/notebook`` as :func:`read_submission` reads it (a regular file, never through
    a link, at most MAX_NOTEBOOK_BYTES; "" otherwise), the digest results and records key on."""
    try:
        data = read_without_links(folder, notebook, limit=MAX_NOTEBOOK_BYTES)
    except OSError:
        return ""
    return hashlib.sha256(data).hexdigest() if len(data) <= MAX_NOTEBOOK_BYTES else ""


def stamp_submissions(lay: Layout, digests: dict[str, str]) -> dict[str, tuple[received.Received, received.Claim]]:
    """The server's time of each student's submission (keyed by the digest of the notebook graded)
    in the gradebook, then each notebook's late penalty from the course's plugin, as nbgrader's own
    AssignLatePenalties step computes it (on the score as it stands now). Returns each arrival."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import AssignLatePenalties

    penalties = AssignLatePenalties(config=lay.config)
    penalties.init_plugin()
    arrivals = {}
    with Gradebook(lay.db_url) as gb:
        for student, digest in digests.items():
            arrivals[student] = arrival(lay, student, digest)
            submission = gb.update_or_create_submission(lay.assignment, student, timestamp=arrivals[student][0].time)
            for notebook in submission.notebooks:
                notebook.late_submission_penalty = None
                if submission.total_seconds_late > 0:
                    late = submission.total_seconds_late
                    penalty = penalties.plugin_inst.late_submission_penalty(student, notebook.score, late)
                    if penalty is not None:
                        notebook.late_submission_penalty = penalties._check_late_penalty(notebook, penalty)
        gb.db.commit()
    return arrivals


def gradebook_standing(lay: Layout, students: list[str]) -> dict[str, dict]:
    """student -> what the gradebook holds now (``g2c.grading.feedback.standing``: cell scores, a hand grade
    over the autograde, None still to grade by hand; comments, late penalty, seconds late, timestamp)."""
    from nbgrader.api import Gradebook, MissingEntry

    now = {}
    with Gradebook(lay.db_url) as gb:
        for student in students:
            try:
                now[student] = standing(gb.find_submission(lay.assignment, student), lay.spec.stem)
            except MissingEntry:
                continue
    return now


def _feedback_key(now: dict) -> list:
    """What a feedback page was rendered from (scores, comments, penalty, lateness), as stored in the results file."""
    facts = [sorted(now["cells"].items()), sorted(now.get("comments", {}).items()), float(now.get("late_penalty", 0.0)),
             round(float(now.get("seconds_late", 0.0)))]
    return json.loads(json.dumps(facts))


def rerender_feedback(lay: Layout, student: str, now: dict, result: dict) -> bool:
    """The student's feedback page again, from their autograded notebook and what the gradebook holds now."""
    import nbformat

    from g2c.grading.feedback import feedback_html

    autograded = lay.submission("autograded", student)
    if result.get("status") not in ("graded", "memory") or not autograded.exists():
        return False
    nb = nbformat.read(autograded, as_version=4)
    page = feedback_html(nb, now["cells"], nb.metadata.get(REASONS_KEY, result.get("reasons", {})),
                         late_penalty=now["late_penalty"], comments=now["comments"], seconds_late=now["seconds_late"])
    atomic_write(lay.folder("feedback", student, lay.assignment) / lay.feedback_name, page.encode())
    return True


def write_grades(lay: Layout, students: list[str], results: dict[str, dict], standing: dict[str, dict],
                 arrivals: dict[str, tuple[received.Received, received.Claim]]) -> None:
    """grades.csv: one row per submission, graded or not; a written answer not graded by hand yet
    is empty. ``score`` is after the late penalty, as in ``nbgrader export``; ``timestamp`` is the
    server's (its ``timestamp_source``), ``timestamp_claimed`` what timestamp.txt said."""
    points = grade_cells(lay)
    cell_ids, max_score = list(points), sum(points.values())
    rows = [[*GRADES_COLUMNS, *cell_ids]]
    for student in students:
        r = results.get(student, {"status": "not graded yet", "score": 0, "cells": {}})
        now = standing.get(student, {"cells": r["cells"], "late_penalty": 0.0, "timestamp": "", "seconds_late": 0.0})
        cells = {c: now["cells"].get(c) for c in cell_ids}
        total = sum(v for v in cells.values() if v is not None) - now["late_penalty"]
        scores = ["" if v is None else f"{v:g}" for v in cells.values()]
        source, said = (arrivals[student][0].how, arrivals[student][1]) if student in arrivals else ("", received.Claim("", ""))
        rows.append([student, lay.assignment, f"{total:g}", f"{max_score:g}", r["status"], now["timestamp"],
                     f"{now['late_penalty']:g}", minutes_late(now["seconds_late"]), source, said.claimed, said.flag, *scores])
    table = io.StringIO(newline="")
    csv.writer(table).writerows(rows)
    atomic_write(lay.grades_csv, table.getvalue().encode())


def printable(text: str) -> str:
    """``text`` with its control characters (a terminal's escape sequences) shown as ``\\xNN``."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def summary_lines(lay: Layout, students: list[str]) -> list[str]:
    """One line per submission for the terminal, with grades.csv's score (hand grades in, after the late
    penalty), how late it was, and the grading time and detail from its result."""
    results = load_results(lay)
    with lay.grades_csv.open(newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    lines = []
    for student in (s for s in students if s in rows):
        row, result = rows[student], results.get(student, {})
        late = f", {row['minutes_late']} minutes late (penalty {row['late_penalty']})" if row["minutes_late"] else ""
        detail = f"  ({result['detail']})" if result.get("detail") and row["status"] != "graded" else ""
        lines.append(printable(f"{student}: {row['score']}/{row['max_score']} {row['status']} "
                               f"in {float(result.get('seconds', 0)):.1f} s{late}{detail}"))
    return lines


def flagged_timestamps(lay: Layout) -> list[str]:
    """One line per flagged submission (for the terminal): its timestamp.txt disagrees with the server's time, or
    another account sent an entry in the student's name."""
    with lay.grades_csv.open(newline="") as f:
        return [f"{printable(r['student_id'])}: {r['timestamp_flag']} (server {r['timestamp']}, {r['timestamp_source']}; "
                f"claimed {r['timestamp_claimed'] or '-'})" for r in csv.DictReader(f) if r["timestamp_flag"]]
