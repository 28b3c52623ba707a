"""``g2c autograde``: a class graded in parallel, each submission sandboxed, nothing ever lost.

This process is the only writer: it registers the assignment, sends one ``worker.Job`` per
submission to a local process pool (or a Dask cluster with ``scheduler``), and as each
``Outcome`` arrives writes, in this order, the student's rows in ``OUT/gradebook.db``, their
autograded notebook and feedback page, and ``OUT/results/<student>.json`` (every file written
atomically). A run killed halfway and started again grades only submissions without a result
for the same notebook bytes, those the grader failed, and those stopped by a limit (timeout,
memory) that has changed since; ``force`` regrades everyone. ``OUT/grades.csv`` is rewritten
at the end from the results: one row per submission, with its status.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from g2c.grading import path_with_this_environment
from g2c.grading.worker import ASSIGNMENT, NOTEBOOK, Job, Outcome, grade

NAME = NOTEBOOK.removesuffix(".ipynb")
LIMIT_BEHIND = {"timeout": "timeout", "memory": "memory_mb"}  # status -> the limit that decided it
warnings.filterwarnings("ignore", message="Object of type <Submitted")  # nbgrader 0.9's own SQLAlchemy noise


def autograde(course: Path, submitted: Path, out: Path, *, jobs: int | None = None, timeout: float = 120, memory_mb: int | None = None,
              scheduler: str | None = None, force: bool = False, isolate: bool = True, progress: bool = True,
              cell_timeout: float = 30) -> list[Outcome]:
    """Grade every ``submitted/<student>/`` and write gradebook, feedback and grades.csv under ``out``."""
    course, submitted, out = course.resolve(), submitted.resolve(), out.resolve()
    if not (course / "source_notebooks" / ASSIGNMENT / NOTEBOOK).is_file():
        raise SystemExit(f"g2c autograde: {course} is not the course repository (no source_notebooks/{ASSIGNMENT}/{NOTEBOOK}); "
                         "pass --course with the folder of nbgrader_config.py")
    os.environ["PATH"] = path_with_this_environment()  # nbgrader runs `alembic` from PATH
    students = sorted(p.name for p in submitted.iterdir() if not p.name.startswith(".") and (p.is_dir() or p.is_symlink())) if submitted.is_dir() else []
    if not students:
        raise SystemExit(f"g2c autograde: no submissions found as {submitted}/<student>/{ASSIGNMENT}/")
    if isolate:
        from g2c.grading.sandbox import isolation_available

        if problem := isolation_available():
            raise SystemExit(f"g2c autograde: cannot sandbox student code here: {problem}. "
                             "Run as root (or with user namespaces), or pass --no-sandbox on a machine you can lose.")
    out.mkdir(parents=True, exist_ok=True)
    pool = None if scheduler else _local_pool(max(1, min(jobs or os.cpu_count() or 1, len(students))), isolate)
    try:
        template = register_assignment(course, out)
        source = course / "source_notebooks" / ASSIGNMENT / NOTEBOOK
        checks, source_cells = hidden_checks(source), graded_cells(source)
        done = {} if force else load_results(out)
        todo = []
        for student in students:
            job = Job(student, read_submission(submitted / student), template, checks, source_cells, timeout, memory_mb, cell_timeout, isolate)
            if _needs_grading(done.get(student), job):
                todo.append(job)
        max_score = grade_cells(out)[1]
        for outcome in _with_progress(_run(todo, pool, scheduler), len(todo), progress):
            outcome.max_score = max_score
            record(out, outcome)
    finally:  # even when interrupted: grades.csv reflects every result recorded so far
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
        if (out / "gradebook.db").exists():
            write_grades(out, students)
    results = load_results(out)
    return [Outcome(**{k: v for k, v in results[s].items() if k in Outcome.__dataclass_fields__}) for s in students if s in results]


def _needs_grading(result: dict | None, job: Job) -> bool:
    """No result for these notebook bytes yet, a grader failure, or a result decided by a limit
    that has changed since."""
    if result is None or result.get("digest") != job.digest or result.get("status") == "grading failed":
        return True
    limit = LIMIT_BEHIND.get(result.get("status"))
    return limit is not None and result.get("limits", {}).get(limit) != job.limits[limit]


MAX_NOTEBOOK_BYTES = 64 * 2**20


def read_submission(folder: Path) -> bytes | None:
    """``folder/03b-training/training.ipynb``, never through a link: a student's folder may hold
    links to another student's notebook, the solution, a FIFO or /dev/zero. Each component is
    opened with O_NOFOLLOW relative to the last, the file must be a regular one, and at most
    MAX_NOTEBOOK_BYTES are read. Anything else is an unreadable notebook (None: nothing there)."""
    fds: list[int] = []
    try:
        fds.append(os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW))
        fds.append(os.open(ASSIGNMENT, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
        fds.append(os.open(NOTEBOOK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1]))
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            return b"not a notebook: not a regular file"
        with os.fdopen(fds.pop(), "rb") as f:
            data = f.read(MAX_NOTEBOOK_BYTES + 1)
        return data if len(data) <= MAX_NOTEBOOK_BYTES else b"not a notebook: larger than 64 MB"
    except FileNotFoundError:
        return None
    except OSError as err:  # ELOOP / ENOTDIR: a link where a folder or the notebook should be
        return f"not a notebook: {err.strerror} (links are not followed)".encode()
    finally:
        for fd in fds:
            os.close(fd)


def register_assignment(course: Path, out: Path) -> bytes:
    """A gradebook holding the assignment and no student (each job's start), also OUT's if new."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="g2c-register-") as tmp:
        config = Config()
        config.CourseDirectory.root = str(course)
        config.CourseDirectory.source_directory = "source_notebooks"
        config.CourseDirectory.release_directory = str(Path(tmp) / "release")
        config.CourseDirectory.db_url = f"sqlite:///{Path(tmp) / 'gradebook.db'}"
        result = NbGraderAPI(config=config).generate_assignment(ASSIGNMENT, force=True)
        if not result["success"]:
            raise SystemExit(f"g2c autograde: nbgrader generate_assignment failed:\n{result['log']}\n{result.get('error', '')}")
        template = (Path(tmp) / "gradebook.db").read_bytes()
    master = out / "gradebook.db"
    if not master.exists():
        _atomic_write(master, template)
    return template


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

    return {cell.metadata["nbgrader"]["grade_id"]: {"cell_type": cell.cell_type, "source": cell.source, "nbgrader": dict(cell.metadata["nbgrader"])}
            for cell in nbformat.read(source, as_version=4).cells if cell.metadata.get("nbgrader", {}).get("grade_id")}


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
    with tqdm(total=total, unit="submission", desc="grading", file=sys.stderr, disable=not show or not total, mininterval=0.5) as bar:
        for outcome in outcomes:
            counts[outcome.status] += 1
            bar.set_postfix_str(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())), refresh=False)
            bar.update()
            yield outcome


# ---------------------------------------------------------------- the one writer


def record(out: Path, outcome: Outcome) -> None:
    """Save one outcome: gradebook first, the result file last (its presence means done)."""
    save_to_gradebook(out / "gradebook.db", outcome)
    student = outcome.student_id
    if outcome.notebook is not None:
        _atomic_write(out / "autograded" / student / ASSIGNMENT / NOTEBOOK, outcome.notebook.encode())
    if outcome.feedback is not None:
        _atomic_write(out / "feedback" / student / ASSIGNMENT / "training.html", outcome.feedback.encode())
    else:
        shutil.rmtree(out / "feedback" / student, ignore_errors=True)  # no stale page from an earlier run
    summary = {k: v for k, v in asdict(outcome).items() if k not in ("notebook", "feedback")}
    _atomic_write(out / "results" / f"{student}.json", json.dumps(summary, indent=1).encode())


def save_to_gradebook(db: Path, outcome: Outcome) -> None:
    """The student's grades as nbgrader's SaveAutoGrades would store them, as grades.csv has them;
    0 when nothing was graded.

    A manual score given earlier is kept, and flags the grade for review, as in nbgrader.
    """
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        gb.update_or_create_student(outcome.student_id)
        submission = gb.update_or_create_submission(ASSIGNMENT, outcome.student_id)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if outcome.auto_scores:  # graded, or stopped with what the probe recorded before
                    grade.auto_score = outcome.auto_scores.get(grade.name)
                else:
                    grade.auto_score = None if grade.cell.cell_type == "markdown" else 0.0
                grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
            for comment in notebook.comments:
                comment.auto_comment = outcome.comments.get(comment.name)
        gb.db.commit()


def load_results(out: Path) -> dict[str, dict]:
    results = {}
    for path in sorted((out / "results").glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # torn by a crash before the rename cannot happen; anything else is regraded
    return results


def write_grades(out: Path, students: list[str]) -> None:
    """grades.csv: one row per submission, graded or not; a cell left to grade by hand is empty."""
    cell_ids, max_score = grade_cells(out)
    results = load_results(out)
    rows = [["student_id", "assignment", "score", "max_score", "status", *cell_ids]]
    for student in students:
        r = results.get(student, {"status": "not graded yet", "score": 0, "cells": {}})
        scores = ["" if r["cells"].get(c) is None else f"{r['cells'][c]:g}" for c in cell_ids]
        rows.append([student, ASSIGNMENT, f"{r['score']:g}", f"{max_score:g}", r["status"], *scores])
    partial = out / "grades.csv.partial"
    with partial.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    partial.replace(out / "grades.csv")


def grade_cells(out: Path) -> tuple[list[str], float]:
    """The assignment's graded cells, in notebook order, and their total points."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        cells = gb.find_notebook(NAME, ASSIGNMENT).grade_cells
        return [c.name for c in cells], float(sum(c.max_score for c in cells))


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
