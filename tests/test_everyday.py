"""The instructor's everyday ``g2c autograde``: ids that are not plain names refused, one run per course at a time,
a notebook handed in under another name found, and the terminal never obeying a student's text.

In-process: the grading itself is tested elsewhere, so the batch here grades through a stand-in for the worker
(each job's notebook bytes become a full-marks outcome) and proves what the batch does around it.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from conftest import ASSIGNMENT, RELEASED, ROOT, SPEC, course_copy, rows

from g2c import cli
from g2c.grading import autograde as batch
from g2c.grading.autograde import find_notebook, one_run_at_a_time, plain_ids, register_assignment
from g2c.grading.course import grade_cells, layout
from g2c.grading.worker import Outcome

pytestmark = pytest.mark.batch  # it runs g2c autograde or collect: in `make pytest-batch`, beside the shared class

HOSTILE = ["<img src=x onerror=alert(1)>", "\x1b[2J\x1b[31mred", "=HYPERLINK(\"http://x\")", "new\nline", "glob[1]",
           "spaced name *", "a" * 65]
ESCAPES = "\x1b[2J\nforged: 100/100 graded"  # what a crashing notebook could put in its error's detail
RENAMED_LINE = "Graded from your file 'training (1).ipynb', handed in instead of 'training.ipynb': name your notebook"


def test_only_plain_names_are_student_ids():
    plain, refused = plain_ids(["alice", "bob.smith@uni-x.edu", "7_b", *HOSTILE])
    assert plain == ["alice", "bob.smith@uni-x.edu", "7_b"]
    assert [r.student_id for r in refused] == [repr(s) for s in HOSTILE]
    assert all(r.status == batch.REFUSED and r.student_id.isprintable() for r in refused)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = course_copy(tmp_path_factory.mktemp("everyday") / "course")
    register_assignment(course, layout(course))
    return course


def put(course, student: str, files: dict[str, bytes]) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def stand_in_grader(lay):
    """``_run`` without the sandboxed runs: each notebook graded full marks, alice's run crashing with escape codes;
    the pages are the worker's own (``worker.with_pages``)."""
    import nbformat

    from g2c.grading.worker import with_pages

    points = {cell: p for cell, p in grade_cells(lay).items() if cell not in SPEC.manual}

    def run(todo, pool, scheduler):
        for job in todo:
            if job.notebook is None:
                yield Outcome(job.student, "missing notebook", detail="no notebook was submitted")
            elif job.student == "alice":
                yield Outcome(job.student, "crashed", digest=job.digest, detail=ESCAPES)
            else:
                graded = Outcome(job.student, "graded", digest=job.digest, score=sum(points.values()), cells=points)
                yield with_pages(graded, nbformat.reads(job.notebook.decode(), as_version=4), job)
    return run


def test_a_batch_refuses_markup_ids_finds_renamed_notebooks_and_prints_nothing_raw(course, monkeypatch, capsys):
    notebook = RELEASED.read_bytes()
    renamed = notebook + b"\n"  # other bytes, still a notebook
    put(course, "alice", {SPEC.notebook: notebook})
    put(course, "bob", {"training (1).ipynb": renamed})
    put(course, "carol", {"a.ipynb": notebook, "b.ipynb": notebook})
    put(course, "dave", {})
    put(course, "fay", {SPEC.notebook: notebook})
    os.symlink(course / "submitted" / "alice" / ASSIGNMENT / SPEC.notebook,
               course / "submitted" / "dave" / ASSIGNMENT / "linked.ipynb")  # never followed, never listed
    for student in HOSTILE[:4]:
        put(course, student, {SPEC.notebook: notebook})
    lay = layout(course)
    monkeypatch.setattr(batch, "_run", stand_in_grader(lay))
    monkeypatch.setattr(batch, "_local_pool", lambda workers, isolate: None)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the command wraps it; put back after the test
    assert cli.main(["autograde", ASSIGNMENT, "--course", str(course), "--no-sandbox"]) == 0
    out = capsys.readouterr().out

    assert "\x1b" not in out and not any(line.startswith("forged") for line in out.splitlines())
    assert "'<img src=x onerror=alert(1)>': 0/0 " + batch.REFUSED in out
    assert "'\\x1b[2J\\x1b[31mred'" in out and "'new\\nline'" in out
    assert "renamed notebook: bob: graded 'training (1).ipynb', handed in instead of training.ipynb" in out

    table = rows(lay.grades_csv)
    assert set(table) == {"alice", "bob", "carol", "dave", "fay"}  # nothing lost for honest ids, no row for the others
    from nbgrader.api import Gradebook

    with Gradebook(lay.db_url) as gb:
        assert {s.id for s in gb.students} == {"alice", "bob", "carol", "dave", "fay"}
    results = batch.load_results(lay)
    assert table["bob"]["status"] == "graded"
    assert results["bob"]["digest"] == hashlib.sha256(renamed).hexdigest()  # his file's bytes were graded
    assert "'a.ipynb', 'b.ipynb'" in results["carol"]["detail"] and table["carol"]["status"] == "missing notebook"
    assert "linked" not in results["dave"]["detail"] and table["dave"]["status"] == "missing notebook"

    pages = {s: lay.folder("feedback", s, ASSIGNMENT) / lay.feedback_name for s in ("alice", "bob", "carol", "fay")}
    assert "Graded from your file" not in pages["fay"].read_text()  # a notebook under its own name
    bob = visible_text(pages["bob"].read_text())
    assert RENAMED_LINE in bob and bob.index(RENAMED_LINE) < bob.index("Total:")  # near the top, above the total
    assert not pages["carol"].exists() and not pages["alice"].exists()  # nothing graded, no page


def visible_text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page.split("</head>", 1)[1])).split())


def test_pages_rendered_later_still_say_which_file_was_graded(course):
    """After the batch (bob's autograded notebook keeps his file's name): a hand grade re-renders the page from it, and
    ``nbgrader generate_feedback`` renders it through RedactHiddenTests; both read the file's name from there."""
    import nbformat

    from g2c.grading.nbgrader_feedback import RedactHiddenTests

    lay = layout(course)
    result = batch.load_results(lay)["bob"]
    now = {"cells": result["cells"], "comments": {}, "late_penalty": 0.0, "seconds_late": 0.0}
    assert batch.rerender_feedback(lay, "bob", now, result)
    assert RENAMED_LINE in visible_text((lay.folder("feedback", "bob", ASSIGNMENT) / lay.feedback_name).read_text())
    nb = nbformat.read(lay.submission("autograded", "bob"), as_version=4)
    info = {"db_url": lay.db_url, "assignment": ASSIGNMENT, "student": "bob", "notebook": lay.spec.stem}
    redacted, _ = RedactHiddenTests().preprocess(nb, {"nbgrader": info})
    assert RENAMED_LINE in redacted.cells[0].source.replace("**", "")  # the page's markdown, bold marks aside


def test_a_renamed_notebook_is_read_as_the_notebook_is(course):
    lay = layout(course)
    put(course, "erin", {})
    folder = course / "submitted" / "erin" / ASSIGNMENT
    os.symlink(RELEASED, folder / "mine.ipynb")
    assert find_notebook(lay, "erin") == (None, "", "")  # a link is not a notebook handed in
    (folder / "mine (2).ipynb").write_bytes(b"{}")
    assert find_notebook(lay, "erin") == (b"{}", "graded 'mine (2).ipynb', handed in instead of training.ipynb", "mine (2).ipynb")


HOLD = """
import sys
from pathlib import Path
from g2c.grading.autograde import one_run_at_a_time
from g2c.grading.course import layout
with one_run_at_a_time(layout(Path(sys.argv[1])), wait=False):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_on_the_course_says_who_holds_it_or_waits(course):
    lay = layout(course)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(course)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(SystemExit, match=f"another run is grading this course: g2c autograde pid {holder.pid} "):
            with one_run_at_a_time(lay, wait=False):
                pass
        entered = threading.Event()

        def second_run():
            with one_run_at_a_time(lay, wait=True):
                entered.set()

        waiting = threading.Thread(target=second_run)
        waiting.start()
        time.sleep(0.5)
        assert not entered.is_set()
        holder.stdin.close()  # the first run ends
        waiting.join(timeout=30)
        assert entered.is_set()
    finally:
        holder.kill()
        holder.wait()


def test_formgraders_autograde_button_grades_one_student_in_the_sandbox(course, monkeypatch):
    """What the button's handler does: load the course's config, build ``base.NbGraderAPI``, call ``autograde``."""
    import nbgrader.apps.api
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.server_extensions.formgrader import base

    from g2c.grading.course import course_config
    from g2c.grading.sandbox import box

    monkeypatch.setattr(base, "NbGraderAPI", base.NbGraderAPI)  # put back stock after the test
    course_config(course)  # formgrader loads nbgrader_config.py before each API call
    put(course, "frank", {SPEC.notebook: RELEASED.read_bytes()})
    lay = layout(course)
    graded = []

    def run(todo, pool, scheduler):
        graded.extend((job.student, job.isolate) for job in todo)
        yield from stand_in_grader(lay)(todo, pool, scheduler)

    monkeypatch.setattr(batch, "_run", run)
    monkeypatch.setattr(batch, "_local_pool", lambda workers, isolate: None)
    monkeypatch.setattr(box, "isolation_available", lambda: None)  # whether this machine can sandbox is tested elsewhere
    monkeypatch.setattr(nbgrader.apps.api, "Autograde", None)  # stock nbgrader's would fail on None
    api = base.NbGraderAPI(CourseDirectory(config=lay.config))

    with one_run_at_a_time(lay, wait=False):  # a g2c autograde in the terminal holds the course
        busy = api.autograde(ASSIGNMENT, "frank")
    assert not busy["success"] and "another run is grading this course" in busy["error"] and not graded

    answer = api.autograde(ASSIGNMENT, "frank")
    assert answer["success"], answer
    assert "g2c autograde (sandboxed)" in answer["log"] and " graded" in answer["log"]
    assert graded == [("frank", True)]  # that student only, sandboxed
    assert batch.load_results(lay)["frank"]["status"] == "graded"


def test_a_failing_check_reads_pitfall_first_and_no_line_is_wider_than_the_output():
    from g2c.checks import MARK, WIDTH, ChecksFailed, block

    pitfall = "the update moves parameters that have no gradient: skip every p whose p.grad is None " * 3
    evidence = "AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01) in torch.float64 parts " * 2
    lines = block("test_x", AssertionError(f"{pitfall}\n{evidence}"))
    assert lines[0].startswith(f"{MARK} the update moves parameters")
    assert all(len(line) <= WIDTH for line in lines), [len(line) for line in lines]
    named = lines.index("    (test_x)")
    assert " ".join(line.strip() for line in lines[:named]) == f"{MARK} {pitfall.strip()}"  # all of it, wrapped
    assert " ".join(line.strip() for line in lines[named + 1:]) == evidence.strip()
    shown = ChecksFailed([lines])._render_traceback_()
    assert all(line.startswith("\x1b[31m") for line in shown[:named]) and shown[named] == "    (test_x)"


def test_racing_torch_names_the_pitfall_first(monkeypatch):
    import test_training as contract
    import torch

    class Coupled(torch.optim.Adam):
        """Adam's weight decay: added to the gradient (AdamW's is decoupled); reads ``self.lr`` as the contract's does."""

        @property
        def lr(self):
            return self.param_groups[0]["lr"]

        @lr.setter
        def lr(self, value):
            for group in self.param_groups:
                group["lr"] = value

    class Forgetful:
        """AdamW that starts afresh at every step: m, v and t are not kept (``self.lr`` read on every step)."""

        def __init__(self, params, **settings):
            self.params, self.settings, self.lr = list(params), settings, settings["lr"]

        def step(self):
            torch.optim.AdamW(self.params, foreach=False, **{**self.settings, "lr": self.lr}).step()

    no_decay, decay = contract.ADAMW_SETTINGS[0], contract.ADAMW_SETTINGS[1]
    monkeypatch.setattr(contract, "AdamW", Coupled)
    contract.race_torch(no_decay, 5, torch.float64, 1e-9, 1e-12)  # without decay, Adam is AdamW
    with pytest.raises(AssertionError, match="^the first step differs only with weight decay: decay the parameter"):
        contract.race_torch(decay, 5, torch.float64, 1e-9, 1e-12)
    monkeypatch.setattr(contract, "AdamW", Forgetful)
    with pytest.raises(AssertionError, match="^the first step agrees, a later one does not: keep m and v"):
        contract.race_torch(no_decay, 5, torch.float64, 1e-9, 1e-12)
