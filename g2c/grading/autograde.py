"""Batch autograding with real nbgrader and its gradebook, then grades.csv and redacted feedback.

``grade_submission`` grades one student and is the unit a later isolation layer wraps; ``autograde``
registers the assignment once, grades disjoint sets of students in a process pool and writes
``OUT/grades.csv`` and ``OUT/feedback/<student>/<assignment>/training.html``.

nbgrader's own feedback prints hidden test source and its tracebacks (upstream issues 917, 1363),
so feedback is rendered here from the autograded notebook: test cells show their visible part
and, for lost points, only the plain-words pitfall messages.
"""

from __future__ import annotations

import csv
import sys
import threading
import warnings
import html
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from g2c.grading import path_with_this_environment
from g2c.grading.verdict import PREFIX, store_verdicts

ASSIGNMENT = "03b-training"
warnings.filterwarnings("ignore", message="Object of type <Submitted")  # nbgrader 0.9's own SQLAlchemy noise
NOTEBOOK = "training.ipynb"
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
VISIBLE_ERROR = re.compile(r"^E\s+(\w+(?:Error|Exception)): (?!assert )(.+)$")


@dataclass
class Result:
    student_id: str
    status: str
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, float | None] = field(default_factory=dict)  # grade_id -> score (None: manual, pending)
    seconds: float = 0.0


def _config(course: Path, submitted: Path, out: Path, timeout: float, memory_mb: int | None):
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.source_directory = "source_notebooks"
    config.CourseDirectory.release_directory = str(out / "release")
    config.CourseDirectory.submitted_directory = str(submitted)
    config.CourseDirectory.autograded_directory = str(out / "autograded")
    config.CourseDirectory.feedback_directory = str(out / "nbgrader-feedback")
    config.CourseDirectory.db_url = f"sqlite:///{out / 'gradebook.db'}"
    config.Execute.timeout = int(timeout)
    extra = ["--HistoryManager.hist_file=:memory:"]
    if memory_mb:
        limit = int(memory_mb) * 2**20
        extra.append(f"--IPKernelApp.exec_lines=['import resource as _r; _r.setrlimit(_r.RLIMIT_AS, ({limit}, {limit})); del _r']")
    config.Execute.extra_arguments = extra
    return config


def _api(config):
    from nbgrader.apps import NbGraderAPI

    return NbGraderAPI(config=config)


def register_assignment(course: Path, submitted: Path, out: Path) -> None:
    """Put the assignment and its graded cells in OUT's gradebook (nbgrader generate_assignment)."""
    out.mkdir(parents=True, exist_ok=True)
    result = _api(_config(course, submitted, out, 60, None)).generate_assignment(ASSIGNMENT, force=True)
    if not result["success"]:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{result['log']}\n{result.get('error', '')}")


def grade_submission(course: Path, student: str, submitted: Path, out: Path, *, timeout: float = 60, memory_mb: int | None = None) -> Result:
    """Autograde one student's submission with nbgrader and write their redacted feedback."""
    import time

    start = time.perf_counter()
    if not (submitted / student / ASSIGNMENT / NOTEBOOK).exists():
        return Result(student, "no notebook submitted")
    try:
        notebook = sanitized_copy(submitted, student, out / "submissions")
    except ValueError as err:
        return Result(student, f"unreadable notebook: {err}"[:200])
    submitted = out / "submissions"
    # The references run here, outside the student's kernel; the hidden cells read the verdicts.
    # They are computed while nbgrader starts the kernel; the first hidden cell waits for them.
    verdict_dir = out / ".verdicts"
    references = threading.Thread(target=store_verdicts, args=(notebook, verdict_dir, timeout, memory_mb))
    references.start()
    os.environ.update(G2C_VERDICTS=str(verdict_dir), G2C_VERDICTS_WAIT=str(timeout + 30), G2C_NOTEBOOK=str(notebook.resolve()))
    try:
        api = _api(_config(course, submitted, out, timeout, memory_mb))
        outcome = api.autograde(ASSIGNMENT, student, force=True, create=True)
    finally:
        references.join()
        for name in ("G2C_NOTEBOOK", "G2C_VERDICTS_WAIT"):
            os.environ.pop(name, None)
    if not outcome["success"]:
        return Result(student, "grading failed: " + _last_line(outcome.get("error") or outcome.get("log", "")), seconds=time.perf_counter() - start)
    result = _scores(out, student)
    write_feedback(out, student, result)
    result.seconds = time.perf_counter() - start
    return result


def sanitized_copy(submitted: Path, student: str, dest_root: Path) -> Path:
    """Copy a submission for grading, keeping nbgrader's metadata only on the last copy of a cell.

    nbgrader's own DeduplicateIds leaves an empty metadata dict that its validator then rejects
    ("nbgrader update ."), so a student who duplicated a cell would get no grade at all.
    """
    dest = dest_root / student / ASSIGNMENT
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(submitted / student / ASSIGNMENT, dest)
    try:
        nb = nbformat.read(dest / NOTEBOOK, as_version=4)
    except Exception as err:
        raise ValueError(f"{type(err).__name__}: {err}") from err
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in seen:
            del cell.metadata["nbgrader"]
        elif grade_id:
            seen.add(grade_id)
    nbformat.write(nb, dest / NOTEBOOK)
    return dest / NOTEBOOK


def _last_line(text: str) -> str:
    lines = [line for line in str(text).splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"


def _scores(out: Path, student: str) -> Result:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, student)
        cells: dict[str, float | None] = {}
        pending = False
        order = {cell.name: i for i, cell in enumerate(gb.find_notebook(NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT).grade_cells)}
        for grade in sorted(nb.grades, key=lambda g: (order.get(g.name, 1e9), g.name)):
            if grade.needs_manual_grade:
                pending = True
            cells[grade.name] = None if grade.needs_manual_grade and grade.manual_score is None else float(grade.score)
        return Result(student, "needs manual grading" if pending else "graded", float(nb.score), float(nb.max_score), cells)


# ---------------------------------------------------------------- feedback


def pitfalls(cell) -> list[str]:
    """The plain-words messages a failed test cell printed (hidden tests print nothing else here)."""
    text = ""
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            text += output.text
        elif output.output_type == "error":
            text += "\n".join(output.get("traceback", [])) + "\n" + output.get("evalue", "")
    messages, errors = [], []
    for line in ANSI.sub("", text).splitlines():
        if PREFIX in line and line.startswith("E "):  # the raised message, never the listed test source
            message = line.split(PREFIX, 1)[1].split("\\n")[0].strip().rstrip("'\"")
            if message and message not in messages:
                messages.append(message)
        elif match := VISIBLE_ERROR.match(line):  # e.g. "E   NameError: name 'p1' is not defined"
            if f"{match[1]}: {match[2]}" not in errors:
                errors.append(f"{match[1]}: {match[2]}")
    return messages or errors[:3]


def redact(nb, scores: dict[str, float | None]):
    """Strip hidden tests and their outputs from every graded test cell; say why points were lost."""
    summary = ["| part | points | why points were lost |", "| --- | --- | --- |"]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            grade_id, points = meta["grade_id"], meta.get("points", 0)
            score = scores.get(grade_id)
            failed = any(o.output_type == "error" for o in cell.get("outputs", [])) or (score is not None and score < points)
            reasons = pitfalls(cell) if failed else []
            if failed and not reasons:
                reasons = ["the visible checks in this cell fail: run the cell in your notebook to see why"]
            cell.source = HIDDEN.sub("", cell.source)
            text = f"{'passed' if not failed else 'lost points'}: {score if score is not None else 0:g} / {points:g}\n"
            text += "".join(f"- {reason}\n" for reason in reasons)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
            summary.append(f"| `{grade_id}` | {score if score is not None else 0:g} / {points:g} | {html.escape('; '.join(reasons)) or 'none'} |")
        elif meta.get("grade") and meta.get("solution"):
            grade_id = meta["grade_id"]
            score = scores.get(grade_id)
            points = meta.get("points", 0)
            shown = "to be graded by hand" if score is None else f"{score:g} / {points:g}"
            summary.append(f"| `{grade_id}` (written) | {shown} | |")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# Feedback: Module 03B — Training\n\n" + "\n".join(summary)))
    return nb


def write_feedback(out: Path, student: str, result: Result) -> Path:
    from nbconvert import HTMLExporter

    graded = out / "autograded" / student / ASSIGNMENT / NOTEBOOK
    nb = redact(nbformat.read(graded, as_version=4), result.cells)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    target = out / "feedback" / student / ASSIGNMENT / "training.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


# ---------------------------------------------------------------- the batch


def _grade_many(course: Path, students: list[str], submitted: Path, out: Path, timeout: float, memory_mb: int | None) -> list[Result]:
    results = []
    for student in students:
        try:
            results.append(grade_submission(course, student, submitted, out, timeout=timeout, memory_mb=memory_mb))
        except Exception as err:  # one bad submission never stops the class
            results.append(Result(student, f"grading failed: {type(err).__name__}: {err}"[:200]))
    return results


def autograde(course: Path, submitted: Path, out: Path, *, jobs: int = 1, timeout: float = 60, memory_mb: int | None = None) -> list[Result]:
    """Grade every ``submitted/<student>/03b-training/`` and write grades.csv and feedback."""
    course, submitted, out = course.resolve(), submitted.resolve(), out.resolve()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per kernel: jobs share the cores, results repeat
    os.environ["PATH"] = path_with_this_environment()
    students = sorted(p.name for p in submitted.iterdir() if p.is_dir() and (p / ASSIGNMENT).is_dir()) if submitted.is_dir() else []
    if not students:
        raise SystemExit(f"g2c autograde: no submissions found as {submitted}/<student>/{ASSIGNMENT}/")
    shutil.rmtree(out / ".verdicts", ignore_errors=True)
    register_assignment(course, submitted, out)
    jobs = max(1, min(int(jobs), len(students)))
    if jobs == 1:
        results = _grade_many(course, students, submitted, out, timeout, memory_mb)
    else:
        shares = [students[i::jobs] for i in range(jobs)]  # disjoint student sets
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            parts = pool.map(_grade_many, [course] * jobs, shares, [submitted] * jobs, [out] * jobs, [timeout] * jobs, [memory_mb] * jobs)
            results = sorted((r for part in parts for r in part), key=lambda r: r.student_id)
    write_grades(out / "grades.csv", results)
    return results


def write_grades(path: Path, results: list[Result]) -> None:
    cell_ids = list(dict.fromkeys(cell for r in results for cell in r.cells))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "assignment", "score", "max_score", "status", *cell_ids])
        for r in results:
            cells = ["" if r.cells.get(c) is None else f"{r.cells[c]:g}" for c in cell_ids]
            writer.writerow([r.student_id, ASSIGNMENT, f"{r.score:g}", f"{r.max_score:g}", r.status, *cells])
