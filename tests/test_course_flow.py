"""An instructor's whole nbgrader course with g2c, through nbgrader's real exchange.

One temporary course (this repository's nbgrader_config.py and source folder, a temporary
exchange, a late penalty of "zero"): formgrader's Generate (``nbgrader generate_assignment
--force``), release, then three students fetch, work and submit (alice adds a plot, bob a demo
cell that never ends, carol submits after the due date and rewrites her timestamp.txt to before
it), collect, ``g2c autograde`` with no folder flags, hand grades written through nbgrader's API,
``g2c autograde`` again (no regrade), ``nbgrader export``, ``generate_feedback`` and
``release_feedback``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, SPEC, mutant_answers, rows
from nbgrader.utils import parse_utc

from g2c.grading import notebook_build as build
from g2c.grading import path_with_this_environment
from g2c.grading.course import layout

# a whole course through nbgrader's exchange, graded twice; run beside the book and the other tests with the shared
# class (`make pytest-batch`): the two loads of `make test` then take about as long as each other
pytestmark = [pytest.mark.slow, pytest.mark.batch]
ASSIGNMENT, NOTEBOOK = SPEC.name, SPEC.notebook
STUDENTS = ["alice", "bob", "carol"]
AUTOGRADED_POINTS = sum(build.autograded_points(SPEC).values())
WRITTEN = "why_adamw"  # the written answer graded by hand
COMMENT = "the decay is applied to the <b>gradient</b>, not the weights"  # bob's hand-grading comment (markup stays text)
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1e-4, 1e-3, 1e-2], [2.0, 0.7, 0.4])\nplt.title('my lr sweep')\nplt.show()"
HANG = "import time\nwhile True:  # a demo that never ends\n    time.sleep(0.1)"
AFTER_HANG = "print('this cell ran after the hang')"
PITFALL = "no_bias_correction"  # carol's AdamW
FORGED = "2026-01-01 00:00:00.000000 UTC"  # the time carol claims in timestamp.txt


def nbgrader(*args: str, cwd: Path, user: str | None = None) -> str:
    """Run nbgrader's own command line as the instructor (or as ``user``, a student)."""
    env = {**os.environ, "PATH": path_with_this_environment()}
    if user:
        env.update(HOME=str(cwd))
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"nbgrader {' '.join(args)}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def g2c_autograde(course: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "g2c.cli", "autograde", ASSIGNMENT, "--jobs", "2", "--memory", "6000", *extra]
    run = subprocess.run(command, cwd=course, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def make_course(tmp: Path) -> Path:
    """This course's configuration and source folder, with a temporary exchange and a late penalty."""
    course = tmp / "course"
    shutil.copytree(ROOT / "source_notebooks", course / "source_notebooks")
    # what the spec names in the course: the package its answers are cut from (whole: run from the course, it is
    # the g2c imported) and the contract
    shutil.copytree(ROOT / "g2c", course / "g2c", ignore=shutil.ignore_patterns("__pycache__"))
    (course / SPEC.contract.relative_to(ROOT)).parent.mkdir(parents=True)
    shutil.copyfile(SPEC.contract, course / SPEC.contract.relative_to(ROOT))
    exchange = tmp / "exchange"
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)
    config = (ROOT / "nbgrader_config.py").read_text()
    config += f'\nc.Exchange.root = "{exchange}"\nc.LateSubmissionPlugin.penalty_method = "zero"\n'
    (course / "nbgrader_config.py").write_text(config)
    return course


def work(fetched: Path, extra: list[str], answers: dict[str, str], at: int = 2) -> None:
    """A student's work: the reference answers (or ``answers``) in the answer cells, plus cells of their own."""
    source = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(build.source_path(SPEC), as_version=4).cells
              if c.metadata.get("nbgrader", {}).get("solution")} | answers
    nb = nbformat.read(fetched, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in source and cell.cell_type == "code":
            cell.source = source[grade_id]
    nb.cells[at:at] = [nbformat.v4.new_code_cell(text) for text in extra]
    nbformat.write(nb, fetched)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flow")
    course = make_course(tmp)
    timings = {}
    start = time.perf_counter()
    nbgrader("generate_assignment", ASSIGNMENT, "--force", cwd=course)  # formgrader's Generate button
    nbgrader("release_assignment", ASSIGNMENT, cwd=course)
    extras = {"alice": [PLOT], "bob": [HANG, AFTER_HANG], "carol": []}
    due = None
    for student in STUDENTS:
        home = tmp / "students" / student
        home.mkdir(parents=True)
        if student == "carol":  # everyone before this instant is on time
            time.sleep(1.1)
            due = datetime.now(UTC).isoformat(sep=" ")
            time.sleep(1.1)
        nbgrader("fetch_assignment", ASSIGNMENT, "--course", "g2c", f"--Exchange.root={tmp / 'exchange'}", cwd=home, user=student)
        work(home / ASSIGNMENT / NOTEBOOK, extras[student], mutant_answers(PITFALL) if student == "carol" else {})
        nbgrader("submit", ASSIGNMENT, "--course", "g2c", f"--Exchange.root={tmp / 'exchange'}",
                 f"--CourseDirectory.student_id={student}",
                 cwd=home, user=student)  # one OS user plays the three students
        if student == "carol":  # late, she rewrites her inbound entry's timestamp.txt and notebook mtime to before the due date
            (entry,) = (tmp / "exchange" / "g2c" / "inbound").glob(f"carol+{ASSIGNMENT}+*")
            (entry / "timestamp.txt").write_text(FORGED)
            os.utime(entry / NOTEBOOK, (time.time() - 3600, time.time() - 3600))
    nbgrader("collect", ASSIGNMENT, cwd=course)
    timings["exchange"] = time.perf_counter() - start
    start = time.perf_counter()
    first = g2c_autograde(course, "--cell-timeout", "5", "--due", due)
    timings["autograde"] = time.perf_counter() - start
    lay = layout(course)
    seeds = {s: json.loads((lay.grades / "results" / f"{s}.json").read_text())["seconds"] for s in STUDENTS}
    before = rows(lay.grades / "grades.csv")
    from nbgrader.api import Gradebook

    with Gradebook(lay.db_url) as gb:  # what formgrader does when the instructor grades a written answer
        for student, points in {"alice": 2, "bob": 1.5}.items():
            grade = gb.find_grade(WRITTEN, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, student)
            grade.manual_score, grade.needs_manual_grade = points, False
        comment = gb.find_comment(WRITTEN, NOTEBOOK.removesuffix(".ipynb"), ASSIGNMENT, "bob")
        comment.manual_comment = COMMENT  # formgrader's comment box under the half point bob lost
        gb.db.commit()
    start = time.perf_counter()
    second = g2c_autograde(course)
    timings["hand grades"] = time.perf_counter() - start
    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return {"course": course, "lay": lay, "before": before, "after": rows(lay.grades / "grades.csv"), "seeds": seeds,
            "stdout": first.stdout, "second": second.stdout, "tmp": tmp}


def feedback(lay, student: str) -> str:
    return (lay.folder("feedback", student, ASSIGNMENT) / NOTEBOOK.replace(".ipynb", ".html")).read_text()


def test_release_from_nbgrader_itself_keeps_the_kit(course):
    kit = course["course"] / "release" / ASSIGNMENT
    for name in build.kit_files(SPEC):
        assert (kit / name).read_text() == (ROOT / "release" / ASSIGNMENT / name).read_text()


def test_one_gradebook_nbgrader_sees_every_student(course):
    lay = course["lay"]
    assert lay.db_url == f"sqlite:///{course['course'] / 'gradebook.db'}"
    listed = nbgrader("db", "student", "list", cwd=course["course"])
    assert all(student in listed for student in STUDENTS) and "There are 3 students" in listed
    for student in STUDENTS:
        assert (course["course"] / "autograded" / student / ASSIGNMENT / NOTEBOOK).exists()
    from nbgrader.apps import NbGraderAPI

    formgrader = NbGraderAPI(config=lay.config).get_submissions(ASSIGNMENT)  # what formgrader lists
    assert {s["student"]: s["autograded"] for s in formgrader} == {s: True for s in STUDENTS}


def test_hanging_demo_cell_is_stopped_and_every_point_is_kept(course):
    bob = course["before"]["bob"]
    assert bob["status"] == "graded" and float(bob["score"]) == AUTOGRADED_POINTS
    graded = nbformat.read(course["lay"].folder("autograded", "bob", ASSIGNMENT) / NOTEBOOK, as_version=4)
    after = next(c for c in graded.cells if c.source == AFTER_HANG)
    assert "this cell ran after the hang" in json.dumps(after.outputs)


def test_plots_are_kept_in_the_autograded_notebook_and_feedback(course):
    lay = course["lay"]
    graded = nbformat.read(lay.folder("autograded", "alice", ASSIGNMENT) / NOTEBOOK, as_version=4)
    plot = next(c for c in graded.cells if c.source == PLOT)
    assert any("image/png" in o.get("data", {}) for o in plot.outputs), plot.outputs
    assert "[g2c: output truncated]" not in json.dumps(plot.outputs)
    assert "data:image/png;base64," in feedback(lay, "alice")


def test_late_submission_is_stamped_and_penalised(course):
    before = course["before"]
    for student in ("alice", "bob"):
        assert before[student]["timestamp"] and float(before[student]["late_penalty"]) == 0
    carol = before["carol"]
    assert carol["status"] == "graded" and carol["timestamp"] > before["bob"]["timestamp"]
    raw = sum(float(carol[c]) for c in build.autograded_points(SPEC))
    assert 0 < raw < AUTOGRADED_POINTS  # her pitfall cost a part
    assert float(carol["late_penalty"]) == raw and float(carol["score"]) == 0  # "zero": the penalty is the whole score
    # the server's time: the change time of her inbound entry, recorded by collect, not her timestamp.txt
    stamp = (course["course"] / "submitted" / "carol" / ASSIGNMENT / "timestamp.txt").read_text()
    assert parse_utc(stamp) == datetime.fromisoformat(carol["timestamp"])  # collect wrote the server's time in the copy
    assert carol["timestamp_source"] == "exchange" and carol["timestamp_claimed"].startswith(FORGED[:19])
    assert "before the server's time" in carol["timestamp_flag"]
    assert f"flagged: carol: {carol['timestamp_flag']}" in course["stdout"]
    assert all(before[s]["timestamp_source"] == "exchange" and not before[s]["timestamp_flag"] for s in ("alice", "bob"))
    assert [after["timestamp"] for after in course["after"].values()] == [b["timestamp"] for b in before.values()]  # kept


def test_hand_grades_reach_grades_csv_and_feedback_without_a_regrade(course):
    before, after, lay = course["before"], course["after"], course["lay"]
    assert before["alice"][WRITTEN] == "" and after["alice"][WRITTEN] == "2" and after["bob"][WRITTEN] == "1.5"
    assert float(after["alice"]["score"]) == AUTOGRADED_POINTS + 2
    seeds = {s: json.loads((lay.grades / "results" / f"{s}.json").read_text())["seconds"] for s in STUDENTS}
    assert seeds == course["seeds"]  # nobody was regraded: a regrade measures its own time
    page = feedback(lay, "alice")
    assert f"Total: {AUTOGRADED_POINTS + 2:g} of {AUTOGRADED_POINTS + sum(SPEC.manual.values()):g} points" in page
    pending = [c for c in SPEC.manual if c != WRITTEN]
    assert "Still to be graded by hand" in page and all(f"<code>{c}</code>" in page for c in pending)
    assert re.search(rf"<code>{WRITTEN}</code> \(written\)</td>\s*<td>scored 2 of 2 points</td>", page)
    assert all(re.search(rf"<code>{c}</code> \(written\)</td>\s*<td>to be graded by hand</td>", page) for c in pending)


def test_nbgrader_export_sees_hand_grades_and_penalty(course):
    nbgrader("export", cwd=course["course"])
    exported = rows(course["course"] / "grades.csv")
    assert float(exported["alice"]["score"]) == AUTOGRADED_POINTS + 2
    assert float(exported["carol"]["late_submission_penalty"]) == float(course["after"]["carol"]["late_penalty"]) > 0
    assert float(exported["carol"]["score"]) == 0


def test_nbgrader_generate_and_release_feedback_give_g2cs_redacted_page(course):
    root, lay = course["course"], course["lay"]
    ours = {student: feedback(lay, student) for student in STUDENTS}
    log = nbgrader("generate_feedback", ASSIGNMENT, cwd=root)  # no --force: the course's config renders every page again
    assert "Skipping existing" not in log and "not recognized" not in log, log
    cell_ids = re.compile(r'id="cell-id=[0-9a-f-]+"')  # the summary cell gets a new id each time
    assert {s: cell_ids.sub("", feedback(lay, s)) for s in STUDENTS} == {s: cell_ids.sub("", page) for s, page in ours.items()}
    page = feedback(lay, "alice")
    assert "BEGIN HIDDEN TESTS" not in page and "graded outside your notebook" not in page
    assert f"Total: {AUTOGRADED_POINTS + 2:g} of" in page and "data:image/png;base64," in page
    nbgrader("release_feedback", ASSIGNMENT, cwd=root)
    released = list((course["tmp"] / "exchange" / "g2c" / "feedback").glob("*.html"))
    assert len(released) == len(STUDENTS)


def test_class_report_counts_what_the_batch_holds(course):
    page = (course["lay"].grades / "report.html").read_text()
    sections = re.findall(r"<h2 id='(\w+)'>", page)
    assert sections == ["summary", "students", "histogram", "parts", "pitfalls", "statuses", "late", "slowest"]
    assert (
        page.count("<svg role='img'") == 2  # the two charts, drawn inline
        and "http://" not in page
        and "https://" not in page
        and "<script" not in page
    )
    pitfalls_part = page.split("id='pitfalls'")[1].split("<h2")[0]
    assert re.search(rf"<td>{PITFALL}</td><td>[^<]*</td><td class=n>1</td>", pitfalls_part)
    late_part = page.split("id='late'")[1].split("<h2")[0]
    assert "<td>carol</td>" in late_part and "<td>alice</td>" not in late_part and "<td>bob</td>" not in late_part
    flagged = late_part.split("id='flagged'")[1]
    assert "<td>carol</td>" in flagged and "<td>alice</td>" not in flagged
    summary = page.split("id='summary'")[1].split("<h2")[0]
    assert "<td>submissions</td><td class=n>3</td>" in summary
    run = subprocess.run(
        [sys.executable, "-m", "g2c.cli", "report", ASSIGNMENT], cwd=course["course"], capture_output=True, text=True
    )
    assert run.returncode == 0 and "report.html" in run.stdout


def test_the_terminal_summary_prints_what_grades_csv_holds(course):
    after = course["after"]
    for student in STUDENTS:
        row = after[student]
        assert re.search(rf"^{student}: {row['score']}/{row['max_score']} graded in [\d.]+ s", course["second"], re.M)
    assert after["carol"]["minutes_late"] and not after["alice"]["minutes_late"]
    assert re.search(rf"^carol: 0/.* {after['carol']['minutes_late']} minutes late \(penalty", course["second"], re.M)


def test_the_feedback_page_and_report_read_right_in_a_browser_offline(course):
    """What a student and the instructor see from file://: rendered markup (no literal tag), no request but local
    files, each total after the penalty as grades.csv has it, bob's hand-grading comment, carol's late minutes."""
    from urllib.parse import urlparse

    from playwright.sync_api import sync_playwright
    from test_book_browser import CHROMIUM, CHROMIUM_ARGS, LOCAL_SCHEMES

    lay, after = course["lay"], course["after"]
    pages = {s: lay.folder("feedback", s, ASSIGNMENT) / NOTEBOOK.replace(".ipynb", ".html") for s in ("bob", "carol")}
    pages["report"] = lay.grades / "report.html"
    shown, requested = {}, []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        for name, path in pages.items():
            page.goto(path.as_uri(), wait_until="load")
            shown[name] = " ".join(page.inner_text("body").split())
        browser.close()
    assert requested and all(urlparse(url).scheme in LOCAL_SCHEMES for url in requested), requested
    for name, text in shown.items():
        assert not re.search(r"<(h1|h2|p|th|td|thead|table)\b", text), (name, re.search(r".{80}<(h1|p|th)\b.{80}", text))
    max_score = after["bob"]["max_score"]
    assert f"Total: {after['bob']['score']} of {max_score} points" in shown["bob"]
    assert f"{WRITTEN} (written) scored 1.5 of 2 points, lost 0.5 the grader: {COMMENT}" in shown["bob"]
    assert f"Total: {after['carol']['score']} of {max_score} points (after a late-submission penalty of" in shown["carol"]
    assert f"Submitted {after['carol']['minutes_late']} minutes late" in shown["carol"]
    for student in STUDENTS:
        row = after[student]
        assert f"{student} {row['score']} of {max_score} graded" in shown["report"]
    assert f"carol 0 of {max_score} graded {after['carol']['minutes_late']} min (penalty" in shown["report"]
