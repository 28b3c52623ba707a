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
gradebook's latest facts reach every student: submission timestamps and late penalties (the
course's LateSubmissionPlugin), hand grades entered in formgrader (feedback re-rendered when
they changed), and grades.csv, one row per submission with its status.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC
from pathlib import Path

from g2c.grading import path_with_this_environment
from g2c.grading.course import GRADES_COLUMNS, Layout, atomic_write, grade_cells, layout, load_results
from g2c.grading.feedback import REASONS_KEY, score_of
from g2c.grading.report import write_report
from g2c.grading.sandbox.limits import CELL_TIMEOUT, MEMORY_MB, TIMEOUT
from g2c.grading.seeding import course_secret
from g2c.grading.worker import Job, Outcome, grade

LIMIT_BEHIND = {"timeout": "timeout", "memory": "memory_mb"}  # status -> the limit that decided it
MAX_NOTEBOOK_BYTES = 64 * 2**20  # a submitted notebook
MAX_COMPANION_BYTES = 4096  # timestamp.txt, submission_secret.txt
SCRATCH = "/dev/shm"  # a tmpfs on Linux


def autograde(course: Path, submitted: Path | None = None, out: Path | None = None, *, jobs: int | None = None,
              timeout: float = TIMEOUT, memory_mb: int | None = MEMORY_MB, scheduler: str | None = None, force: bool = False,
              isolate: bool = True, progress: bool = True, cell_timeout: float = CELL_TIMEOUT,
              due: str | None = None, assignment: str | None = None) -> list[Outcome]:
    """Grade every ``submitted/<student>/<assignment>/`` into the course's gradebook and folders (or
    under ``out``); ``assignment`` defaults to the course's only one.

    ``due`` (any date nbgrader parses; UTC unless it names a zone) sets the assignment's due date
    in the gradebook, as ``nbgrader db assignment add --duedate`` would.
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
    if isolate:
        from g2c.grading.sandbox.box import isolation_available

        if problem := isolation_available():
            raise SystemExit(f"g2c autograde: cannot sandbox student code here: {problem}. "
                             "Run as root (or with user namespaces), or pass --no-sandbox on a machine you can lose.")
    lay.grades.mkdir(parents=True, exist_ok=True)
    checks, source_cells = hidden_checks(source), graded_cells(source)
    done = {} if force else load_results(lay)
    secret = course_secret(Path(lay.db_url.removeprefix("sqlite:///")).parent if lay.db_url.startswith("sqlite:///") else course)
    jobs_all = [Job(s, str(spec.folder), read_submission(lay, s), b"", checks, source_cells, timeout, memory_mb, cell_timeout,
                    isolate, secret) for s in students]
    todo = [job for job in jobs_all if _needs_grading(done.get(job.student), job)]
    # workers warm up while the assignment is registered; none start when only hand grades changed
    pool = None if scheduler or not todo else _local_pool(max(1, min(jobs or os.cpu_count() or 1, len(todo))), isolate)
    try:
        template = register_assignment(course, lay)
        if due is not None:
            set_due_date(lay, due)
        for job in todo:
            job.gradebook = template
        max_score = sum(grade_cells(lay).values())
        for outcome in _with_progress(_run(todo, pool, scheduler), len(todo), progress):
            outcome.max_score = max_score
            record(lay, outcome)
    finally:  # even when interrupted: grades.csv reflects every result recorded so far
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
        if lay.db_exists:
            refresh(lay, students)
    write_report(lay)
    results = load_results(lay)
    fields = Outcome.__dataclass_fields__
    return [Outcome(**{k: v for k, v in results[s].items() if k in fields}) for s in students if s in results]


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


def read_submission(lay: Layout, student: str) -> bytes | None:
    """``submitted/<student>/<assignment>/<notebook>`` (see :func:`read_without_links`); anything but a
    regular file of at most MAX_NOTEBOOK_BYTES is an unreadable notebook (None: nothing there)."""
    try:
        data = read_without_links(lay.submitted / student, lay.assignment, lay.spec.notebook, limit=MAX_NOTEBOOK_BYTES)
    except FileNotFoundError:
        return None
    except NotARegularFile:
        return b"not a notebook: not a regular file"
    except OSError as err:  # ELOOP / ENOTDIR: a link where a folder or the notebook should be
        return f"not a notebook: {err.strerror} (links are not followed)".encode()
    if len(data) > MAX_NOTEBOOK_BYTES:
        return f"not a notebook: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB".encode()
    return data


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


def _local_pool(workers: int, isolate: bool):
    """``workers`` grading processes, warming up (imports, zygote) while the batch is prepared."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
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
    import nbconvert.exporters.html  # noqa: F401
    import nbgrader.apps  # noqa: F401
    import nbgrader.converters.autograde  # noqa: F401

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
    summary["feedback_for"] = _feedback_key(outcome.cells, 0.0)
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
    stamp_submissions(lay, graded)
    standing = gradebook_standing(lay, graded)
    for student in graded:
        scores, penalty = standing[student]["cells"], standing[student]["late_penalty"]
        stale = results[student].get("feedback_for") != _feedback_key(scores, penalty)
        if stale and rerender_feedback(lay, student, scores, penalty, results[student]):
            results[student]["feedback_for"] = _feedback_key(scores, penalty)
            save_result(lay, student, results[student])
        place_companions(lay, student)
    write_grades(lay, students, results, standing)


COMPANIONS = ("timestamp.txt", "submission_secret.txt")  # what nbgrader's collect puts beside a notebook


def companion(lay: Layout, student: str, name: str) -> bytes | None:
    """A small file nbgrader's collect wrote beside the notebook, read as the notebook is: never
    through a link, a regular file, at most MAX_COMPANION_BYTES (None: not there or not that)."""
    try:
        data = read_without_links(lay.folder("submitted", student, lay.assignment), name, limit=MAX_COMPANION_BYTES)
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


def submission_time(lay: Layout, student: str):
    """When the student submitted: nbgrader collect's timestamp.txt, else the notebook file's time (UTC)."""
    from nbgrader.utils import parse_utc

    text = (companion(lay, student, "timestamp.txt") or b"").decode("utf-8", "replace").strip()
    try:
        return parse_utc(text) if text else _file_time(lay, student)
    except (ValueError, OverflowError):
        return _file_time(lay, student)


def _file_time(lay: Layout, student: str):
    from datetime import datetime

    try:
        mtime = os.lstat(lay.submission("submitted", student)).st_mtime
    except OSError:
        return None
    return datetime.fromtimestamp(mtime, UTC).replace(tzinfo=None)


def stamp_submissions(lay: Layout, students: list[str]) -> None:
    """Timestamps in the gradebook, then each notebook's late penalty from the course's plugin,
    as nbgrader's own AssignLatePenalties step computes it (on the score as it stands now)."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import AssignLatePenalties

    penalties = AssignLatePenalties(config=lay.config)
    penalties.init_plugin()
    with Gradebook(lay.db_url) as gb:
        for student in students:
            stamp = submission_time(lay, student)
            submission = gb.update_or_create_submission(lay.assignment, student, **({"timestamp": stamp} if stamp else {}))
            for notebook in submission.notebooks:
                notebook.late_submission_penalty = None
                if submission.total_seconds_late > 0:
                    late = submission.total_seconds_late
                    penalty = penalties.plugin_inst.late_submission_penalty(student, notebook.score, late)
                    if penalty is not None:
                        notebook.late_submission_penalty = penalties._check_late_penalty(notebook, penalty)
        gb.db.commit()


def gradebook_standing(lay: Layout, students: list[str]) -> dict[str, dict]:
    """student -> cell scores (a hand grade over the autograde; None: still to grade by hand),
    late penalty and timestamp, as the gradebook holds them now."""
    from nbgrader.api import Gradebook, MissingEntry

    standing = {}
    with Gradebook(lay.db_url) as gb:
        for student in students:
            try:
                submission = gb.find_submission(lay.assignment, student)
            except MissingEntry:
                continue
            notebook = next(nb for nb in submission.notebooks if nb.name == lay.spec.stem)
            cells = {g.name: score_of(g) for g in notebook.grades}
            standing[student] = {"cells": cells, "late_penalty": notebook.late_submission_penalty or 0.0,
                                 "timestamp": submission.timestamp.isoformat(sep=" ") if submission.timestamp else ""}
    return standing


def _feedback_key(scores: dict[str, float | None], penalty: float) -> list:
    """What a feedback page was rendered from, as stored in the results file (JSON)."""
    return json.loads(json.dumps([sorted(scores.items()), float(penalty)]))


def rerender_feedback(lay: Layout, student: str, scores: dict[str, float | None], penalty: float, result: dict) -> bool:
    """The student's feedback page again, from their autograded notebook and the gradebook's scores."""
    import nbformat

    from g2c.grading.feedback import feedback_html

    autograded = lay.submission("autograded", student)
    if result.get("status") not in ("graded", "memory") or not autograded.exists():
        return False
    nb = nbformat.read(autograded, as_version=4)
    page = feedback_html(nb, scores, nb.metadata.get(REASONS_KEY, result.get("reasons", {})), late_penalty=penalty)
    atomic_write(lay.folder("feedback", student, lay.assignment) / lay.feedback_name, page.encode())
    return True


def write_grades(lay: Layout, students: list[str], results: dict[str, dict], standing: dict[str, dict]) -> None:
    """grades.csv: one row per submission, graded or not; a written answer not graded by hand yet
    is empty. ``score`` is after the late penalty, as in ``nbgrader export``."""
    points = grade_cells(lay)
    cell_ids, max_score = list(points), sum(points.values())
    rows = [[*GRADES_COLUMNS, *cell_ids]]
    for student in students:
        r = results.get(student, {"status": "not graded yet", "score": 0, "cells": {}})
        now = standing.get(student, {"cells": r["cells"], "late_penalty": 0.0, "timestamp": ""})
        cells = {c: now["cells"].get(c) for c in cell_ids}
        total = sum(v for v in cells.values() if v is not None) - now["late_penalty"]
        scores = ["" if v is None else f"{v:g}" for v in cells.values()]
        rows.append([student, lay.assignment, f"{total:g}", f"{max_score:g}", r["status"], now["timestamp"],
                     f"{now['late_penalty']:g}", *scores])
    table = io.StringIO(newline="")
    csv.writer(table).writerows(rows)
    atomic_write(lay.grades_csv, table.getvalue().encode())
