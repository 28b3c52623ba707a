"""Round trip through real nbgrader: `g2c autograde` tells right from wrong, part by part.

Every variant is graded in the shared class batch (``batch`` in conftest.py, one CLI call, two
jobs): the solution, the untouched release, a mutant of each answer (BATCH_MUTANTS, from
tests/test_pitfalls.py, put in the answer cells), two correct implementations written
differently, a wrong hand computation, a student who games the checks, and duplicated / deleted
answer cells. The plain words of every graded pitfall are checked in-process.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import nbformat
import pytest
import test_pitfalls as pitfalls
from conftest import CATALOGUE, RELEASED, SOURCE, SPEC, TEST_CELLS, TIMEOUT, feedback_page, grade_id, without_demos

from g2c.grading import notebook_build as build

PART_CELLS = {part: [gid for gid, _, _, _ in cells] for part, cells in TEST_CELLS.items()}
POINTS = build.autograded_points(SPEC)
AUTOGRADED = list(POINTS)
CELL_OF_TEST = {test: gid for cells in TEST_CELLS.values() for gid, _, tests, _ in cells for test in tests}
PITFALL_WORDS = {  # what the feedback must say, in plain words
    "adam_l2": "Adam + L2",
    "step_counter_per_parameter": "per parameter",
    "no_bias_correction": "bias correction",
    "update_recorded_by_autograd": "torch.no_grad()",
    "clip_each_parameter_alone": "clip globally",
    "schedule_warmup_off_by_one": "off by one",
    "schedule_no_floor": "after max_steps",
}
# One pitfall of each answer graded end to end; every graded pitfall's words, in-process (the sandbox path is the same).
BATCH_MUTANTS = ("no_bias_correction", "clip_each_parameter_alone", "schedule_warmup_off_by_one")
GAMING = """
import math, torch, pytest
from IPython import get_ipython
get_ipython().showtraceback = lambda *args, **kwargs: None
torch.testing.assert_close = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
"""


def with_answers(nb, texts: dict[str, str]):
    """``nb`` with the answer cells cut from the given module sources (answer -> text)."""
    sources = build.answer_sources(SPEC, texts)
    for cell in nb.cells:
        if grade_id(cell) in sources and grade_id(cell) in texts:
            cell.source = sources[grade_id(cell)]
    return nb


def variants() -> dict[str, nbformat.NotebookNode]:
    out = {"solution": nbformat.read(SOURCE, as_version=4), "starter": nbformat.read(RELEASED, as_version=4)}
    solution = without_demos(out["solution"])  # what the variants change: their demos would only repeat the solution's
    for name in BATCH_MUTANTS:
        out[f"mutant-{name}"] = with_answers(copy.deepcopy(solution), pitfalls.MUTANTS[name][0])
    out["alternative"] = with_answers(copy.deepcopy(solution), {
        answer: pitfalls.with_region(answer, body) for answer, body in pitfalls.ALT_REGIONS.items()
    })
    l2 = copy.deepcopy(solution)
    answer = next(c for c in l2.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "adamw_by_hand_answer")
    answer.source = f"p1 = {CATALOGUE.build('p1', ('by_hand_adam_l2',))!r}"
    out["by-hand-adam-l2"] = l2
    gamer = copy.deepcopy(out["starter"])
    gamer.cells.insert(2, nbformat.v4.new_code_cell(GAMING))
    for cell in gamer.cells:  # "edit" the visible tests
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code":
            cell.source = "%%ipytest -qq\ndef test_nothing():\n    pass"
    out["gamer"] = gamer
    dup = copy.deepcopy(solution)
    index = next(i for i, c in enumerate(dup.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "clip")
    twin = copy.deepcopy(dup.cells[index])
    twin.id = "clip-copy"
    dup.cells.insert(index, twin)
    out["duplicated"] = dup
    deleted = copy.deepcopy(solution)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "adamw"]
    out["deleted-adamw"] = deleted
    tagged = copy.deepcopy(solution)  # the grader skips widget cells; a graded cell tagged so still runs
    for cell in tagged.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in ("adamw", "clip", "schedule"):
            cell.metadata["tags"] = [build.WIDGET_TAG]
    out["answers-tagged-widget"] = tagged
    return out


def batch_submissions(paths) -> dict[str, nbformat.NotebookNode]:
    """This module's students in the shared class batch (conftest.py)."""
    return variants()


@pytest.fixture(scope="module")
def graded(batch):
    """grades.csv rows, the batch's folder and what the CLI printed."""
    assert batch.run.returncode == 0, batch.run.stderr[-3000:]
    return batch.rows, batch.out, batch.run.stdout


def score(row, cells) -> float:
    return sum(float(row[c]) for c in cells)


feedback = feedback_page


def test_grades_csv_has_the_promised_columns(graded):
    rows, out, _ = graded
    header = list(next(iter(rows.values())))
    assert header[:11] == ["student_id", "assignment", "score", "max_score", "status", "timestamp", "late_penalty",
                           "minutes_late", "timestamp_source", "timestamp_claimed", "timestamp_flag"]
    assert set(AUTOGRADED) | set(SPEC.manual) == set(header[11:])
    # placed by hand with no timestamp.txt: timed when first seen in submitted/, nothing claimed, nothing flagged
    times = {(rows[s]["timestamp_source"], rows[s]["timestamp_claimed"], rows[s]["timestamp_flag"]) for s in variants()}
    assert times == {("submitted", "", "")}
    assert all(row["assignment"] == "03b-training" and float(row["max_score"]) == sum(POINTS.values()) + sum(SPEC.manual.values())
               for row in rows.values())


def test_solution_scores_full_marks_and_release_scores_zero(graded):
    rows, _, _ = graded
    assert {c: float(rows["solution"][c]) for c in AUTOGRADED} == {c: float(POINTS[c]) for c in AUTOGRADED}
    assert rows["solution"]["status"] == "graded"
    assert score(rows["starter"], AUTOGRADED) == 0


def test_two_correct_implementations_written_differently_score_full(graded):
    rows, _, _ = graded
    assert score(rows["alternative"], AUTOGRADED) == sum(POINTS.values())


@pytest.mark.parametrize("mutant", sorted(pitfalls.MUTANTS))
def test_each_graded_pitfall_is_named_in_plain_words(mutant):
    """The words a student reads for each graded pitfall (test_pitfalls.GRADED_PITFALLS): in its verdicts' messages,
    which the feedback shows (end to end for BATCH_MUTANTS below)."""
    from test_probe_compare import failed, student, verdicts

    texts, _ = pitfalls.MUTANTS[mutant]
    (answer, _), = texts.items()
    checks = verdicts(student() | CATALOGUE.namespace(answer, (mutant,)))
    assert any(PITFALL_WORDS[mutant] in checks[name].message for name in failed(checks))


@pytest.mark.parametrize("mutant", BATCH_MUTANTS)
def test_each_pitfall_loses_points_on_its_part_only_and_feedback_names_it(graded, mutant):
    rows, out, _ = graded
    row = rows[f"mutant-{mutant}"]
    naming_cell = CELL_OF_TEST[pitfalls.MUTANTS[mutant][1]]
    part = next(p for p, cells in PART_CELLS.items() if naming_cell in cells)
    assert float(row[naming_cell]) == 0, f"{mutant} kept the points of {naming_cell}"
    others = [c for c in AUTOGRADED if c not in PART_CELLS[part]]
    assert score(row, others) == sum(POINTS[c] for c in others), f"{mutant} lost points outside {part}"
    assert PITFALL_WORDS[mutant] in feedback(out, f"mutant-{mutant}")


def test_wrong_hand_computation_is_named(graded):
    rows, out, _ = graded
    row = rows["by-hand-adam-l2"]
    assert float(row["test_adamw_by_hand"]) == 0
    assert score(row, AUTOGRADED) == sum(POINTS.values()) - POINTS["test_adamw_by_hand"]
    assert "Adam + L2" in feedback(out, "by-hand-adam-l2")


def test_gaming_the_checks_and_editing_visible_tests_earns_nothing(graded):
    rows, _, _ = graded
    assert score(rows["gamer"], AUTOGRADED) == 0


def test_duplicated_cell_grades_and_deleted_cell_costs_its_part_only(graded):
    rows, _, _ = graded
    assert score(rows["duplicated"], AUTOGRADED) == sum(POINTS.values())
    row = rows["deleted-adamw"]
    assert score(row, PART_CELLS["adamw"]) == 0
    rest = [c for c in AUTOGRADED if c not in PART_CELLS["adamw"] and c != "test_adamw_by_hand"]
    assert score(row, rest) == sum(POINTS[c] for c in rest)


def test_widget_cells_are_not_run_when_grading_and_graded_cells_always_are(graded):
    rows, out, _ = graded
    assert score(rows["answers-tagged-widget"], AUTOGRADED) == sum(POINTS.values())
    nb = nbformat.read(out / "autograded" / "solution" / "03b-training" / "training.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    widget_cells = [c for c in code if build.WIDGET_TAG in c.metadata.get("tags", [])]
    assert len(widget_cells) == 5 and not any(c.outputs for c in widget_cells)
    assert sum(bool(c.outputs) for c in code if c not in widget_cells) >= 10  # the rest ran: plots and test results


def test_the_notebook_run_skips_only_the_test_cells_whose_output_is_the_verdict():
    """Their run would be thrown away (the grader's verdict is what they show); every other cell still runs."""
    from g2c.grading.autograde import graded_cells, hidden_checks
    from g2c.grading.worker import SKIP_TAG, as_released, sanitized

    cells, decided = graded_cells(SOURCE), hidden_checks(SOURCE)
    released = as_released(sanitized(SOURCE.read_bytes(), cells), cells, decided)
    skipped = {grade_id(c) for c in released.cells if SKIP_TAG in c.metadata.get("tags", [])}
    widgets = {grade_id(c) for c in released.cells if build.WIDGET_TAG in c.metadata.get("tags", [])}
    assert skipped - widgets == set(decided) and set(decided) == set(SPEC.graded)


def test_the_preamble_computes_no_fact_it_does_not_name(monkeypatch):
    """The diagnosis key trains real runs: a grading worker takes it from its job (computed once), the preamble never asks."""
    build.facts.cache_clear()
    try:
        monkeypatch.setattr(build, "cell_body", lambda *_: pytest.fail("the preamble computed the diagnosis key"))
        assert "KINDS = " in build.preamble(SPEC) and "diagnosis_key" in build.facts(SPEC)
        assert "diagnosis_key" not in build.facts(SPEC).known
    finally:
        build.facts.cache_clear()
    worker_side = build.Facts(SPEC)
    worker_side.learn({"diagnosis_key": {"A": "underfit"}, "not_a_fact": 1})
    assert worker_side["diagnosis_key"] == {"A": "underfit"} and "not_a_fact" not in worker_side


def test_a_grading_run_reads_the_facts_make_release_recorded_instead_of_training(monkeypatch):
    """The recorded diagnosis key is the one the code computes now (`make check-release` keeps the file current), and
    a grading run takes it from the file: computing it trains four runs (2.5 s of every `g2c autograde`)."""
    from g2c.grading.assignment import FACTS_FILE

    recorded = json.loads((SPEC.folder / FACTS_FILE).read_text())
    assert recorded == build.Facts(SPEC).recorded() and set(recorded) == {"diagnosis_key"}
    build.facts.cache_clear()
    try:
        monkeypatch.setattr(build, "cell_body", lambda *_: pytest.fail("a grading run computed a recorded fact"))
        known = build.grading_facts(SPEC)
    finally:
        build.facts.cache_clear()
    assert known == recorded


@pytest.mark.slow  # a fresh interpreter importing torch, nbgrader and nbconvert
def test_what_the_grading_workers_preload_starts_no_thread():
    """The forkserver imports it once for every worker; a worker with a thread could not make its private scratch."""
    from g2c.grading.autograde import WORKER_IMPORTS

    code = f"import os; [__import__(m) for m in {WORKER_IMPORTS!r}]; print(len(os.listdir('/proc/self/task')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "1"


def test_a_rerun_regrades_new_notebooks_and_results_a_changed_limit_decided():
    from g2c.grading.autograde import _needs_grading
    from g2c.grading.worker import Job

    job = Job("s", str(SPEC.folder), b"notebook", b"", {}, {}, timeout=60, memory_mb=4096)
    result = {"digest": job.digest, "limits": {"timeout": 30, "memory_mb": 2048}}
    assert _needs_grading(None, job)
    assert _needs_grading({**result, "status": "graded", "digest": "another notebook"}, job)
    assert not _needs_grading({**result, "status": "graded"}, job)
    assert not _needs_grading({**result, "status": "crashed"}, job)
    assert _needs_grading({**result, "status": "grading failed"}, job)  # the grader's failure, not the student's
    assert _needs_grading({**result, "status": "timeout"}, job) and _needs_grading({**result, "status": "memory"}, job)
    assert not _needs_grading({**result, "status": "timeout", "limits": {"timeout": 60, "memory_mb": 2048}}, job)
    assert not _needs_grading({**result, "status": "memory", "limits": {"timeout": 30, "memory_mb": 4096}}, job)


def test_the_stamped_empty_gradebook_is_the_one_nbgrader_makes(tmp_path, monkeypatch):
    """Same tables, columns and schema version as nbgrader's own new gradebook (which asks `alembic heads`)."""
    import sqlite3

    from nbgrader.api import Gradebook

    from g2c.grading import path_with_this_environment
    from g2c.grading.autograde import empty_gradebook

    monkeypatch.setenv("PATH", path_with_this_environment())
    Gradebook(f"sqlite:///{tmp_path / 'nbgrader.db'}").close()
    empty_gradebook(tmp_path / "ours.db")

    def schema_and_version(db):
        with sqlite3.connect(db) as c:
            tables = sorted(c.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            return tables, c.execute("SELECT version_num FROM alembic_version").fetchall()

    nbgraders, ours = schema_and_version(tmp_path / "nbgrader.db"), schema_and_version(tmp_path / "ours.db")
    assert len(ours[0]) > 10 and len(ours[1]) == 1 and ours[1][0][0]
    assert ours == nbgraders
    with Gradebook(f"sqlite:///{tmp_path / 'ours.db'}") as gb:  # nbgrader opens it as one of its own
        gb.add_assignment("a")
        assert [a.name for a in gb.assignments] == ["a"]


def test_the_feedback_page_is_the_sanitized_page_whatever_the_source(tmp_path):
    """Skipping bleach on highlighted sources changes no byte: markup in a cell's source stays text."""
    from jinja2 import DictLoader

    from g2c.grading.feedback import PAGE_TEMPLATE, _exporter_class, feedback_html, redact

    nb = nbformat.read(SOURCE, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.source = "x = '<script>alert(1)</script>'  # <img src=x onerror=alert(2)> </div></div>\n" + code.source
    code.metadata["magics_language"] = "html"  # the student's metadata cannot pick a lexer that passes markup
    ours = feedback_html(copy.deepcopy(nb), {}, {})
    bleached = _exporter_class()()  # the same page, with the lab template's input block: highlighted, then bleached
    bleached.extra_loaders = [DictLoader({"g2c-feedback.html.j2": PAGE_TEMPLATE.split("{% block input %}")[0]})]
    stock, _ = bleached.from_notebook_node(redact(copy.deepcopy(nb), {}, {}, 0))
    cell_ids = re.compile(r'id="cell-id=[0-9a-f-]+"')  # the summary cell redact adds gets a new id each time
    assert cell_ids.sub("", ours) == cell_ids.sub("", stock)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ours and "<script>alert" not in ours


def test_feedback_never_shows_hidden_tests(graded):
    rows, out, _ = graded
    right, adam_l2 = CATALOGUE.build("p1", ()), CATALOGUE.build("p1", ("by_hand_adam_l2",))
    leaks = ["BEGIN HIDDEN TESTS", "graded outside your notebook", "_hidden", "verdict", "check(", "test_p1_value",
             repr(right), repr(adam_l2), "overfitting&#x27;, &#x27;C"]
    for student in variants():
        html = feedback(out, student)
        found = [leak for leak in leaks if leak in html and not (student == "by-hand-adam-l2" and leak == repr(adam_l2))]
        assert not found, f"{student}'s feedback shows {found}"
    assert "not written yet" in feedback(out, "starter")


SUMMARY_LINE = re.compile(
    r"^(?P<student>.+): (?P<score>[\d.]+)/(?P<max>[\d.]+) (?P<status>[a-z ]+?) in (?P<seconds>[\d.]+) s", re.M
)


def test_the_printed_summary_agrees_with_grades_csv_and_the_results(graded):
    """The CLI's one line per submission (score, status, time) is what grades.csv and results/ hold."""
    rows, out, stdout = graded
    printed = {m["student"]: m for m in SUMMARY_LINE.finditer(stdout)}
    assert set(variants()) <= set(printed)
    for student in variants():
        line, row = printed[student], rows[student]
        result = json.loads((out / "results" / f"{student}.json").read_text())
        shown = (float(line["score"]), float(line["max"]), line["status"])
        assert shown == (float(row["score"]), float(row["max_score"]), row["status"])
        assert float(line["seconds"]) == pytest.approx(result["seconds"], abs=0.051)
        assert 0 < result["seconds"] < 2 * TIMEOUT + 60, student  # two runs at most, each stopped at TIMEOUT
    seconds = [float(printed[s]["seconds"]) for s in variants()]
    mean = sum(seconds) / len(seconds)
    print(f"\nseconds per graded submission (2 jobs on this machine): mean {mean:.1f}, max {max(seconds):.1f}")
