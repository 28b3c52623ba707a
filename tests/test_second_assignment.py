"""A second assignment, on g2c's generic machinery with no change to g2c: one answer, two pitfalls.

``tests/courses/momentum`` is a course of its own (the repository's ``nbgrader_config.py`` beside
it): its assignment ``momentum-sgd`` is a folder of data (spec, notebook text, probe scenarios,
pitfall catalogue), a reference module with one solution region and a contract test file. It goes
through generate and release (nbgrader), the student's workspace and kit, ``g2c autograde`` in
sandboxes, feedback and the class report, every step through the commands a user runs.
"""

from __future__ import annotations

import csv
import html
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, grade_id, grading_env

from g2c.checks import MARK
from g2c.grading import notebook_build as build
from g2c.grading.assignment import NOT_RELEASED, load
from g2c.grading.pitfalls import catalogue
from g2c.grading.sandbox.box import isolation_available

# nbgrader, kernels and sandboxes; graded beside the shared class (`make pytest-batch`), where the book's load has no room
pytestmark = [pytest.mark.slow, pytest.mark.batch]
COURSE = Path(__file__).resolve().parent / "courses" / "momentum"
NAME = "momentum-sgd"


def g2c(course: Path, *args: str) -> subprocess.CompletedProcess:
    """``g2c ARGS`` run in the course, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "g2c.cli", *args], cwd=course, capture_output=True, text=True, timeout=900,
                          env=grading_env())


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """The test course, copied, with its source notebook and student kit generated (nbgrader's generate_assignment)."""
    course = tmp_path_factory.mktemp("second") / "course"
    shutil.copytree(COURSE, course)
    shutil.copyfile(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    run = subprocess.run([sys.executable, "-m", "g2c.grading.notebook_build", "--release"], cwd=course,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return course


@pytest.fixture(scope="module")
def spec(course):
    return load(NAME, course)


def test_the_kit_has_the_notebook_its_checks_and_nothing_of_the_grader(course, spec):
    kit = course / "release" / NAME
    assert sorted(str(p.relative_to(kit)) for p in kit.rglob("*") if p.is_file()) == [
        "conftest.py", "momentum.ipynb", "tests/test_momentum.py"]
    assert not [p for p in kit.rglob("*") if p.name in NOT_RELEASED]
    released = (kit / "momentum.ipynb").read_text()
    assert "v.mul_(self.momentum)" not in released and "BEGIN HIDDEN TESTS" not in released
    assert "It adds up gradients" not in released  # the written answer's solution
    assert (kit / "conftest.py").read_text() == build.kit_conftest(spec)
    assert '"sgd": "MomentumSGD"' in (kit / "conftest.py").read_text()


def test_the_untouched_kit_gives_the_promised_counts(course, spec):
    """The student's own commands: `g2c workspace` (the course's only assignment), then pytest in it."""
    made = g2c(course, "workspace")
    assert made.returncode == 0, made.stderr
    notebook = Path(made.stdout.strip())
    assert notebook == course / "student" / NAME / "momentum.ipynb"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_momentum.py"],
                         cwd=notebook.parent, capture_output=True, text=True, timeout=300)
    given, failing = build.given_tests(spec), len(build.graded_tests(spec))
    assert (given, failing) == (1, 3)
    assert f"{failing} failed, {given} passed" in run.stdout, run.stdout[-2000:]
    # One block per failing test; the short summary may repeat the headline, as wide as the terminal allows.
    assert run.stdout.count(f"{MARK} not written yet: MomentumSGD.step still raises NotImplementedError") == failing
    text = (notebook.parent / "momentum.ipynb").read_text()
    assert f"{given} passed, {failing} failed" in text  # the notebook's promise, from the same facts


def with_answer(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if grade_id(cell) == "sgd":
            cell.source = source
    return nb


@pytest.fixture(scope="module")
def graded(course, spec):
    """Four students graded by `g2c autograde momentum-sgd`: the solution, the untouched kit and each pitfall."""
    if problem := isolation_available():
        pytest.skip(f"no sandbox here: {problem}")
    source = nbformat.read(course / "source_notebooks" / NAME / "momentum.ipynb", as_version=4)
    released = nbformat.read(course / "release" / NAME / "momentum.ipynb", as_version=4)
    pitfalls = catalogue(spec)
    notebooks = {"solution": source, "starter": released}
    for p in pitfalls.pitfalls:
        answer = build.answer_sources(spec, {"sgd": pitfalls.mutated_source("sgd", (p.name,))})["sgd"]
        notebooks[p.name.replace("_", "-")] = with_answer(nbformat.read(course / "release" / NAME / "momentum.ipynb",
                                                                        as_version=4), answer)
    for student, nb in notebooks.items():
        folder = course / "submitted" / student / NAME
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "momentum.ipynb")
    run = g2c(course, "autograde", NAME, "--jobs", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    with (course / "grades" / NAME / "grades.csv").open() as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    return rows, run


def test_autograde_scores_each_cell_by_its_own_pitfall(graded, spec):
    rows, _ = graded
    points = build.autograded_points(spec)
    assert points == {"test_first_step": 1, "test_accumulates": 1, "test_matches_torch": 2}
    scores = {student: {cell: float(row[cell]) for cell in points} for student, row in rows.items()}
    assert scores["solution"] == {cell: float(p) for cell, p in points.items()}
    assert scores["starter"] == dict.fromkeys(points, 0.0)
    assert scores["ema-velocity"] == {"test_first_step": 0.0, "test_accumulates": 1.0, "test_matches_torch": 0.0}
    assert scores["steps-with-gradient"] == {"test_first_step": 1.0, "test_accumulates": 0.0, "test_matches_torch": 0.0}
    assert {row["status"] for row in rows.values()} == {"graded"}
    assert all(row["assignment"] == NAME and float(row["max_score"]) == 5 for row in rows.values())
    assert all(row["why_momentum"] == "" for row in rows.values())  # the written answer waits for hand grading


def test_feedback_names_the_pitfall_and_shows_no_hidden_test(course, spec, graded):
    for p in catalogue(spec).pitfalls:
        page = (course / "feedback" / p.name.replace("_", "-") / NAME / "momentum.html").read_text()
        assert html.escape(p.message.split(":")[0]) in page, p.name
        assert "BEGIN HIDDEN TESTS" not in page and "graded outside your notebook" not in page
    assert "not written yet" in (course / "feedback" / "starter" / NAME / "momentum.html").read_text()


def test_the_class_report_counts_the_pitfalls(course, spec, graded):
    run = g2c(course, "report", NAME)
    assert run.returncode == 0, run.stderr
    page = (course / "grades" / NAME / "report.html").read_text()
    assert "<h1>Class report: SGD with momentum</h1>" in page
    for p in catalogue(spec).pitfalls:
        assert f"<td>{p.name}</td>" in page
    # the charts: inline SVG images each named for a screen reader, with the counts the table has; no picture files
    charts = re.findall(r"<svg role='img' aria-labelledby='([\w-]+)'.*?<title id='\1'>([^<]+)</title>(.*?)</svg>", page, re.S)
    assert len(charts) == 2 and "<img" not in page
    scores = Counter(int(float(row["score"])) for row in graded[0].values())
    assert charts[0][1].endswith(", ".join(f"{n} scored {score}" for score, n in sorted(scores.items())))
