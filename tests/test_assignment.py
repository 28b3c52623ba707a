"""The assignment's files: generated from the one source, the kit tests the student's own cells,
nothing of the solutions leaks, and the grading harness cannot be talked into a better score."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import ASSIGNMENT, CATALOGUE, KIT, ROOT, SCENARIOS_OF, SOURCE, SPEC, TEST_CELLS
from test_book_browser import CHROMIUM, CHROMIUM_ARGS
from test_student_path import TOKEN, free_port, make_course, request

from g2c.checks import OWN, named_tests
from g2c.grading import notebook_build as build
from g2c.grading.assignment import NOT_RELEASED
from g2c.grading.feedback import HIDDEN
from g2c.grading.regions import solution_lines, strip_solutions

TRAINING_SOURCES = {name: (ROOT / "g2c" / "training" / f"{name}.py").read_text() for name in ("optim", "clip", "schedule")}
GIVEN = 7  # tests of the code students receive written


def cells_by_id(nb) -> dict[str, list]:
    found: dict[str, list] = {}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id:
            found.setdefault(grade_id, []).append(cell)
    return found


def test_source_notebook_is_up_to_date_with_g2c_training():
    assert nbformat.writes(build.build_notebook(SPEC)) + "\n" == SOURCE.read_text(), (
        "source_notebooks/03b-training/training.ipynb is out of date: run `make release`"
    )


def test_answer_cells_carry_exactly_the_reference_solution_regions():
    cells = cells_by_id(nbformat.read(SOURCE, as_version=4))
    for grade_id, module in [("adamw", "optim"), ("clip", "clip"), ("schedule", "schedule")]:
        (cell,) = cells[grade_id]
        assert cell.metadata.nbgrader["solution"] and not cell.metadata.nbgrader["grade"]
        assert solution_lines(cell.source) == solution_lines(TRAINING_SOURCES[module]), grade_id
    assert "def __init__" in cells["adamw"][0].source and "def zero_grad" in cells["adamw"][0].source


def test_the_seven_exercises_come_in_order_with_graded_cells():
    nb = nbformat.read(SOURCE, as_version=4)
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## ")]
    assert [h.split(".")[0] for h in headings[:7]] == [f"## {i}" for i in range(1, 8)]
    graded = {c.metadata.nbgrader["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    expected = set(build.autograded_points(SPEC)) | set(SPEC.manual)
    assert set(graded) == expected
    for grade_id in set(graded) - set(SPEC.manual):
        cell = graded[grade_id]
        assert cell.metadata.nbgrader["locked"] and cell.metadata.nbgrader["points"] > 0
        assert cell.source.startswith("%%check") and "### BEGIN HIDDEN TESTS" in cell.source, grade_id
    assert graded["why_adamw"].cell_type == "markdown" and "Module 10" in nb.cells[nb.cells.index(graded["why_adamw"]) - 1].source
    assert "%load_ext g2c.checks" in nb.cells[1].source


def test_every_code_cell_but_the_setup_lets_run_all_go_on():
    nb = nbformat.read(KIT / "training.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            goes_on = build.GOES_ON in cell.metadata.get("tags", [])
            assert goes_on != (cell.metadata.get("nbgrader", {}).get("grade_id") == "setup"), cell.source[:60]


def test_every_pitfall_test_of_the_contract_is_shown_once_and_every_probe_decides_one_cell():
    from g2c.grading.autograde import hidden_checks
    from g2c.grading.compare import scenarios

    shown = [t for cells in TEST_CELLS.values() for _, _, tests, _ in cells for t in tests]
    assert len(shown) == len(set(shown)) == len(build.contract_names(SPEC)) - GIVEN
    probed = [s for scenarios in SCENARIOS_OF.values() for s in scenarios]
    assert sorted(probed) == sorted(set(probed)) == sorted(scenarios(SPEC))
    assert hidden_checks(SOURCE) == SCENARIOS_OF  # what the grader reads from the source notebook


def checks_of(cell) -> list[str]:
    """The contract tests a check cell names (``%%check tests/test_x.py``, one name a line), or [OWN] for its own asserts."""
    first, _, body = cell.source.partition("\n")
    return named_tests(HIDDEN.sub("", body)) if first.split()[1:] else [OWN]


def test_check_cells_name_their_contract_tests_and_carry_none_of_their_source():
    """One home for the tests' source, the contract file the kit carries at the path the cell names: a cell holds
    its tests' names only (before, ~100 lines of helpers and tests copied from the contract)."""
    kit_contract = KIT / SPEC.contract.relative_to(ROOT)
    for nb in (nbformat.read(SOURCE, as_version=4), nbformat.read(KIT / "training.ipynb", as_version=4)):
        for grade_id, cell in check_cells(nb).items():
            graded = SPEC.graded[grade_id]
            if graded.tests:
                assert cell.source.startswith(f"%%check {kit_contract.relative_to(KIT).as_posix()}\n"), grade_id
                assert checks_of(cell) == list(graded.tests), grade_id
                assert set(graded.tests) <= set(re.findall(r"^def (test_\w+)", kit_contract.read_text(), re.M))
            assert "def " not in HIDDEN.sub("", cell.source), grade_id


def test_release_kit_has_its_files_and_no_solution_line():
    assert (KIT / "training.ipynb").exists()
    assert (KIT / "tests" / "test_training.py").read_text() == (ROOT / "tests" / "test_training.py").read_text()
    assert (KIT / "conftest.py").read_text() == build.kit_conftest(SPEC)
    assert not [path for path in KIT.rglob("*") if path.name in NOT_RELEASED]  # spec, text, scenarios, pitfalls
    secrets = {line for text in TRAINING_SOURCES.values() for line in solution_lines(text)}
    source_cells = nbformat.read(SOURCE, as_version=4).cells
    given = {line.strip() for cell in source_cells for line in strip_solutions(cell.source).splitlines()}
    given |= {line.strip() for line in (ROOT / "tests" / "test_training.py").read_text().splitlines()}  # the public contract
    secrets |= {line for cell in source_cells for line in solution_lines(cell.source)}
    secrets -= given  # e.g. plt.show() and `with torch.no_grad():` are given too
    for path in KIT.rglob("*"):
        if path.is_file():
            text = path.read_text()
            lines = {line.strip() for line in text.splitlines()}
            if path.suffix == ".ipynb":
                lines |= {line.strip() for cell in json.loads(text)["cells"] for line in "".join(cell["source"]).splitlines()}
            leaked = sorted(line for line in lines & secrets if not re.fullmatch(r"\w+:?", line))  # not `continue`
            assert not leaked, f"{path.relative_to(ROOT)} publishes solution lines: {leaked[:3]}"
            assert "BEGIN HIDDEN TESTS" not in text and "graded outside your notebook" not in text


def run_kit(kit: Path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_training.py"],
                         cwd=kit, capture_output=True, text=True, timeout=300).stdout
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed)", out)}
    return counts.get("passed", 0), counts.get("failed", 0)


@pytest.mark.slow  # the contract in a subprocess
def test_untouched_kit_gives_7_passed_14_failed(tmp_path):
    kit = tmp_path / "03b-training"
    shutil.copytree(KIT, kit)
    promised = re.search(r"untouched kit: (\d+) passed, (\d+) failed", (ROOT / "README.md").read_text()).groups()
    assert run_kit(kit) == (build.given_tests(SPEC), len(build.graded_tests(SPEC))) == tuple(map(int, promised))


# ---------------------------------------------------------------- widget cells, in a real kernel

WIDGET_SECTIONS = {
    "lr_sweep": "## 1",
    "optimizer_race": "## 4",
    "clipping_demo": "## 5",
    "schedule_explorer": "## 6",
    "curve_doctor": "## 7",
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
ERROR_BOX = "#fdecea"  # background of g2c.widgets.render.error_html: a failure shown inside a widget


def widget_cells(nb) -> dict[str, tuple[int, nbformat.NotebookNode]]:
    """factory name -> (index, cell) of every cell tagged as a widget cell."""
    found = {}
    for i, cell in enumerate(nb.cells):
        if build.WIDGET_TAG in cell.metadata.get("tags", []):
            found[re.search(r"from g2c\.widgets import (\w+)", cell.source)[1]] = (i, cell)
    return found


def test_widget_cells_sit_in_their_exercises_with_a_prompt_and_are_not_graded():
    nb = nbformat.read(KIT / "training.ipynb", as_version=4)
    cells = widget_cells(nb)
    sections = {}
    for factory, (index, cell) in cells.items():
        headings = [c.source for c in nb.cells[:index] if c.cell_type == "markdown" and c.source.startswith("## ")]
        sections[factory] = headings[-1].split(".")[0]
        flags = cell.metadata.get("nbgrader", {})
        assert cell.cell_type == "code" and not any(flags.get(k) for k in ("grade", "solution", "locked", "task")), factory
        prompt = nb.cells[index - 1]
        assert (
            prompt.cell_type == "markdown" and "nbgrader" not in prompt.metadata and len(prompt.source.splitlines()) == 1
        ), factory
    assert sections == WIDGET_SECTIONS
    assert "optimizers={" in cells["optimizer_race"][1].source and "AdamW" in cells["optimizer_race"][1].source


def execute(notebook: nbformat.NotebookNode, folder: Path) -> tuple[nbformat.NotebookNode, float]:
    """Save ``notebook`` as ``folder/training.ipynb`` and run it as Jupyter's Run All does: an error
    stops the run unless its cell is tagged ``raises-exception`` (nbclient honours the tag as Notebook 7 does)."""
    from nbclient import NotebookClient

    shutil.copytree(KIT, folder)  # the kit: its check cells run the tests of its tests/ folder
    nbformat.write(notebook, folder / "training.ipynb")
    nb = nbformat.read(folder / "training.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                            store_widget_state=True, resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


# One pitfall in each answer, each caught by tests of its own cell only (tests/test_pitfalls.py proves it for all).
NOTEBOOK_PITFALLS = {"adamw": "no_bias_correction", "clip": "clip_each_parameter_alone", "schedule": "schedule_no_floor"}


def with_pitfalls() -> nbformat.NotebookNode:
    """The released notebook with the answer cells written, each with one of NOTEBOOK_PITFALLS."""
    texts = {a: CATALOGUE.mutated_source(a, (name,)) for a, name in NOTEBOOK_PITFALLS.items()}
    answers = build.answer_sources(SPEC, texts)
    nb = nbformat.read(KIT / "training.ipynb", as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The solution notebook, the untouched release and the release with three pitfalls, each Run All,
    one after the other: two kernels side by side on two cores ran 2.5x slower (torch threads fight)."""
    tmp = tmp_path_factory.mktemp("executed")
    notebooks = {"solution": nbformat.read(SOURCE, as_version=4), "release": nbformat.read(KIT / "training.ipynb", as_version=4),
                 "pitfalls": with_pitfalls()}
    return {name: execute(nb, tmp / name) for name, nb in notebooks.items()}


def errors(nb) -> dict[str, list[str]]:
    """grade_id (or cell index) -> the lines of each error a cell shows, ANSI colours removed."""
    found = {}
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                key = cell.metadata.get("nbgrader", {}).get("grade_id", str(i))
                found[key] = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in out.traceback]
    return found


def headlines(lines: list[str]) -> list[str]:
    """Each block's headline, its lines joined again (g2c.checks wraps it at WIDTH, later lines indented two spaces)."""
    found: list[str] = []
    for line in lines:
        if line.startswith("✗ "):
            found.append(line.removeprefix("✗ "))
        elif found and re.match(r"  \S", line):
            found[-1] += " " + line.strip()
    return found


def contract_headlines(answers: dict[str, str]) -> dict[str, str]:
    """test name -> first line of its failure, from the contract run in this process on ``answers`` (grade id -> pitfall)."""
    from test_pitfalls import OBJECT_OF, failures

    return failures({OBJECT_OF[a]: CATALOGUE.build(a, (name,)) for a, name in answers.items()})


def check_cells(nb) -> dict[str, nbformat.NotebookNode]:
    return {c.metadata.nbgrader["grade_id"]: c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%check")}


@pytest.mark.slow
def test_run_all_reaches_every_cell_and_widget_of_the_untouched_kit(executed):
    nb, seconds = executed["release"]
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), "Run All stopped before the end"
    for factory, (_, cell) in widget_cells(nb).items():
        assert any(WIDGET_VIEW in out.get("data", {}) for out in cell.outputs), f"{factory} shows no widget"
    print(f"\nuntouched kit, Run All: {seconds:.1f} s")


@pytest.mark.slow
def test_an_unwritten_answer_says_not_written_yet_first_in_every_check_cell(executed):
    nb, _ = executed["release"]
    shown = errors(nb)
    for grade_id, cell in check_cells(nb).items():
        lines = shown[grade_id]
        assert lines[0].startswith("✗ not written yet: "), (grade_id, lines[:2])
        assert len(headlines(lines)) == len(checks_of(cell)), grade_id  # one block per failing test
        assert not any("Traceback" in line or "ipytest" in line or "\\n" in line for line in lines), (grade_id, lines)


@pytest.mark.slow
def test_check_cells_name_the_pitfall_of_their_own_cell_only(executed):
    nb, _ = executed["pitfalls"]
    expected = contract_headlines(NOTEBOOK_PITFALLS)
    shown = errors(nb)
    tests_of = {grade_id: tests for cells in TEST_CELLS.values() for grade_id, _, tests, _ in cells}
    for grade_id, tests in tests_of.items():
        failing = [expected[t] for t in tests if t in expected]
        if failing:
            assert headlines(shown[grade_id]) == failing, grade_id
        else:
            assert grade_id not in shown and "passed: " in "".join(
                o.get("text", "") for o in check_cells(nb)[grade_id].outputs
            ), grade_id
    assert {t for t in expected} == {t for tests in tests_of.values() for t in tests if t in expected}
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), "Run All stopped before the end"


def test_kit_pytest_reports_the_same_first_lines(tmp_path):
    kit = tmp_path / "03b-training"
    shutil.copytree(KIT, kit)
    nbformat.write(with_pitfalls(), kit / "training.ipynb")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_training.py"],
                         cwd=kit, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "1000"}).stdout
    summary = dict(re.findall(r"^FAILED tests/test_training.py::(\w+) - (.+)$", out, re.M))
    assert summary == contract_headlines(NOTEBOOK_PITFALLS)
    # the kit tests the saved notebook's cells: their correct parts pass (the untouched kit fails all 14 of them)
    assert f"{len(summary)} failed, {len(build.contract_names(SPEC)) - len(summary)} passed" in out


@pytest.mark.slow
def test_validate_lists_the_same_messages(executed, tmp_path):
    """What nbgrader's Validate button lists (its server handler calls Validator.validate), on the Run All's outputs:
    Validate's own Execute step is nbclient run on the same notebook, so only that step is left out (two kernel runs)."""
    from nbgrader.preprocessors import CheckCellMetadata
    from nbgrader.validator import Validator

    def validate(name: str) -> dict:
        nbformat.write(executed[name][0], tmp_path / f"{name}.ipynb")
        return Validator(preprocessors=[CheckCellMetadata]).validate(str(tmp_path / f"{name}.ipynb"))

    failed = validate("pitfalls")["failed"]
    checks = [cell for cell in failed if cell["source"].startswith("%%check")]  # and the written answers left empty
    for cell in checks:  # Validate shows a cell's source, then its error: a few lines (no test's source), then the pitfall
        assert "def " not in cell["source"] and re.sub(r"\x1b\[[0-9;]*m", "", cell["raw_error"]).startswith("✗ "), cell
    listed = [h for cell in checks for h in headlines(re.sub(r"\x1b\[[0-9;]*m", "", cell["raw_error"]).splitlines())]
    expected = contract_headlines(NOTEBOOK_PITFALLS)
    unset = [f"not written yet: {name} is not defined (write its cell and run it)" for name in ("p1", "diagnosis")]
    assert sorted(listed) == sorted([*expected.values(), *unset])
    assert validate("solution") == {}, "Validate must pass the solution (no stderr, no error)"


def widget_html(nb, cell) -> str:
    """Every HTML text inside the widget a cell shows, from the stored widget state."""
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    (view,) = [out["data"][WIDGET_VIEW]["model_id"] for out in cell.outputs if WIDGET_VIEW in out.get("data", {})]
    texts, queue = [], [view]
    while queue:
        model = state[queue.pop()]["state"]
        if isinstance(model.get("value"), str):  # HTML and labels; an Image's value travels as a buffer
            texts.append(model["value"])
        queue += [child.removeprefix("IPY_MODEL_") for child in model.get("children", [])]
    return "\n".join(texts)


@pytest.mark.slow
def test_solution_notebook_runs_top_to_bottom_with_working_widgets(executed):
    nb, seconds = executed["solution"]
    assert not errors(nb) and all("passed: " in "".join(o.get("text", "") for o in c.outputs) for c in check_cells(nb).values())
    for factory, (_, cell) in widget_cells(nb).items():
        assert ERROR_BOX not in widget_html(nb, cell), f"{factory} shows an error with the reference solution"
    assert "your AdamW" in widget_html(nb, widget_cells(nb)["optimizer_race"][1])
    print(f"\nsolution notebook top to bottom: {seconds:.1f} s")


@pytest.mark.slow
def test_release_widget_cells_never_raise_and_the_stub_is_named_inside_the_widget(executed):
    nb, _ = executed["release"]
    failed = errors(nb)
    assert "adamw" not in failed and "test_adamw_matches_torch" in failed  # the stub is there and its tests fail
    for factory, (_, cell) in widget_cells(nb).items():
        assert not any(out.output_type == "error" for out in cell.outputs), f"{factory} cell raised"
        shown = widget_html(nb, cell)
        if factory in ("optimizer_race", "clipping_demo", "schedule_explorer"):  # driven by the student's stubs
            assert ERROR_BOX in shown and "NotImplementedError" in shown, factory
        else:
            assert ERROR_BOX not in shown, factory


# ---------------------------------------------------------------- the student's notebook, as Jupyter shows it

# Per code cell, in notebook order, what the student sees once it is scrolled into view: the input as the editor
# draws it, the output's text, and by how many pixels its widest line exceeds the box it is shown in (Jupyter wraps
# a long output line, or scrolls it where wrapping is off: either way its end is not where the student reads it).
SEEN_CELLS = """() => {
  const excess = pre => {
    const line = pre.cloneNode(true);  // the same text, each line on one line however long
    Object.assign(line.style, {whiteSpace: 'pre', width: 'max-content', position: 'absolute', visibility: 'hidden'});
    pre.parentElement.appendChild(line);
    const wider = line.getBoundingClientRect().width - pre.clientWidth;
    line.remove();
    return wider;
  };
  return [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => {
    cell.scrollIntoView();
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')];
    return {input: cell.querySelector('.jp-InputArea-editor').innerText,
            output: outputs.map(o => o.innerText).join('\\n'),
            overflow: Math.max(0, ...[...cell.querySelectorAll('.jp-OutputArea-output pre')].map(excess))};
  });
}"""


def output_areas(cell: nbformat.NotebookNode) -> int:
    """How many output areas Jupyter shows for ``cell``: one per output, except that a stream output following one of
    the same stream is merged into it (how a kernel splits a cell's printing into messages depends on timing: once,
    under load, the saved outputs outnumbered the areas and the wait for them never ended)."""
    areas, previous = 0, None
    for output in cell.outputs:
        stream = output.get("name") if output.output_type == "stream" else None
        areas += not (stream is not None and stream == previous)
        previous = stream
    return areas


def students_view(notebook: nbformat.NotebookNode, tmp: Path) -> tuple[list[dict], list[str]]:
    """``notebook`` opened as the student opens theirs (``g2c notebook --no-browser --port P``, the workspace holding
    it beside the kit), in chromium at a laptop's window size: what each code cell shows, and the requests that went
    to another host (refused)."""
    from playwright.sync_api import sync_playwright

    course = make_course(tmp)
    workspace = course / "student" / ASSIGNMENT
    shutil.copytree(KIT, workspace)
    nbformat.write(notebook, workspace / SPEC.notebook)
    env = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTER_")}
    env |= {"HOME": str(tmp / "home"), "JUPYTER_TOKEN": TOKEN}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "g2c.cli", "notebook", "--no-browser", "--port", str(port)],
                              cwd=course, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    remote: list[str] = []

    def local_only(route) -> None:
        if route.request.url.startswith(f"http://127.0.0.1:{port}/"):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # while the server starts
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(90_000)  # a loaded machine (see test_book_browser.PATIENCE_MS)
            page.route("**/*", local_only)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:  # the server answers (with TOKEN, test_student_path's request's)
                try:
                    if request(port, "/api/status")[0] == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            page.goto(f"http://127.0.0.1:{port}/notebooks/{ASSIGNMENT}/{SPEC.notebook}?token={TOKEN}")
            outputs = sum(output_areas(cell) for cell in notebook.cells if cell.cell_type == "code")
            page.wait_for_function(f"document.querySelectorAll('.jp-Notebook .jp-OutputArea-output').length >= {outputs}")
            seen = page.evaluate(SEEN_CELLS)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return seen, remote


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs {CHROMIUM}")
def test_the_students_jupyter_shows_each_check_cells_pitfall_first_and_no_test_source(executed, tmp_path):
    """The notebook with three pitfalls, as Run All left it, in the student's Jupyter: every check cell shows the
    names of the tests it runs and no test's source; a failing one's output starts with its pitfall headline (the
    ``✗`` line); no output line is wider than its box; no request leaves the machine."""
    nb, _ = executed["pitfalls"]
    seen, remote = students_view(nb, tmp_path)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert len(seen) == len(code_cells), "the page does not show every code cell"
    failing, checked = errors(nb), []
    for cell, view in zip(code_cells, seen):
        if not cell.source.startswith("%%check"):
            continue
        grade_id = cell.metadata.nbgrader["grade_id"]
        assert "def " not in view["input"] and all(name in view["input"] for name in SPEC.graded[grade_id].tests), grade_id
        first = view["output"].splitlines()[0]
        if grade_id in failing:
            assert first == failing[grade_id][0] and first.startswith("✗ "), (grade_id, view["output"][:300])
        else:
            assert first.startswith("passed: "), (grade_id, first)
        checked.append(grade_id)
    assert checked == list(check_cells(nb)) and {"test_adamw_bias_correction", "test_diagnosis"} <= set(failing)
    wide = {i: view["overflow"] for i, view in enumerate(seen) if view["overflow"] > 0}
    assert not wide, f"output wider than its box (cell index: pixels): {wide}"
    assert not remote, remote
