"""The assignment's files: generated from the one source, the kit tests the student's own cells,
nothing of the solutions leaks, and the grading harness cannot be talked into a better score."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import KIT, ROOT, SOURCE
from g2c.grading import notebook_build as build
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
    assert nbformat.writes(build.build_notebook()) + "\n" == SOURCE.read_text(), (
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
    expected = set(build.autograded_points()) | set(build.MANUAL_CELLS)
    assert set(graded) == expected
    for grade_id in set(graded) - set(build.MANUAL_CELLS):
        cell = graded[grade_id]
        assert cell.metadata.nbgrader["locked"] and cell.metadata.nbgrader["points"] > 0
        assert cell.source.startswith("%%ipytest") and "### BEGIN HIDDEN TESTS" in cell.source, grade_id
    assert graded["why_adamw"].cell_type == "markdown" and "Module 10" in nb.cells[nb.cells.index(graded["why_adamw"]) - 1].source
    assert "ipytest.autoconfig(raise_on_error=True" in nb.cells[1].source


def test_every_pitfall_test_of_the_contract_is_shown_once_and_every_probe_decides_one_cell():
    from g2c.grading.autograde import hidden_checks
    from g2c.grading.probe import SCENARIOS

    shown = [t for cells in build.TEST_CELLS.values() for _, _, tests, _ in cells for t in tests]
    assert len(shown) == len(set(shown)) == len(build.contract_names()) - GIVEN
    probed = [s for scenarios in build.scenarios_of().values() for s in scenarios]
    assert sorted(probed) == sorted(set(probed)) == sorted(SCENARIOS)
    assert hidden_checks(SOURCE) == build.scenarios_of()  # what the grader reads from the source notebook


def test_visible_checks_are_cut_from_the_contract_file():
    code = build.contract_code(["test_adamw_matches_torch_float64_over_many_steps"])
    contract = (ROOT / "tests" / "test_training.py").read_text()
    for name in ("def race_torch", "def make_params", "def twins", "def assert_params_close", "ADAMW_SETTINGS =", "SHAPES ="):
        assert name in code
    for block in code.split("\n\n\n"):
        assert block in contract


def test_release_kit_has_its_files_and_no_solution_line():
    assert (KIT / "training.ipynb").exists()
    assert (KIT / "tests" / "test_training.py").read_text() == (ROOT / "tests" / "test_training.py").read_text()
    assert (KIT / "conftest.py").read_text() == (ROOT / "g2c" / "grading" / "kit_conftest.py").read_text()
    secrets = {line for text in TRAINING_SOURCES.values() for line in solution_lines(text)}
    source_cells = nbformat.read(SOURCE, as_version=4).cells
    given = {line.strip() for cell in source_cells for line in strip_solutions(cell.source).splitlines()}
    secrets |= {line for cell in source_cells for line in solution_lines(cell.source)} - given  # e.g. plt.show() is given too
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


@pytest.mark.slow  # the contract twice in a subprocess
def test_untouched_kit_gives_7_passed_14_failed_and_tests_the_notebook(tmp_path):
    kit = tmp_path / "03b-training"
    shutil.copytree(KIT, kit)
    assert run_kit(kit) == (7, 14)
    shutil.copyfile(SOURCE, kit / "training.ipynb")  # a student who wrote our solution
    assert run_kit(kit) == (21, 0)


# ---------------------------------------------------------------- widget cells, in a real kernel

WIDGET_SECTIONS = {"lr_sweep": "## 1", "optimizer_race": "## 4", "clipping_demo": "## 5", "schedule_explorer": "## 6", "curve_doctor": "## 7"}
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
        assert prompt.cell_type == "markdown" and "nbgrader" not in prompt.metadata and len(prompt.source.splitlines()) == 1, factory
    assert sections == WIDGET_SECTIONS
    assert "optimizers={" in cells["optimizer_race"][1].source and "AdamW" in cells["optimizer_race"][1].source


def execute(notebook: Path, folder: Path, allow_errors: bool) -> tuple[nbformat.NotebookNode, float]:
    """Run a copy of ``notebook`` as ``folder/training.ipynb`` (where the hidden checks look), like Run All."""
    from nbclient import NotebookClient

    folder.mkdir()
    shutil.copyfile(notebook, folder / "training.ipynb")
    nb = nbformat.read(folder / "training.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=allow_errors,
                            store_widget_state=True, resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The solution notebook (must not raise anywhere) and the untouched release, one after the other:
    two kernels side by side on two cores ran 2.5x slower (torch threads fight)."""
    tmp = tmp_path_factory.mktemp("executed")
    return {"solution": execute(SOURCE, tmp / "solution", False), "release": execute(KIT / "training.ipynb", tmp / "release", True)}


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


@pytest.mark.slow  # two notebooks in real kernels
def test_solution_notebook_runs_top_to_bottom_with_working_widgets(executed):
    nb, seconds = executed["solution"]
    for factory, (_, cell) in widget_cells(nb).items():
        assert ERROR_BOX not in widget_html(nb, cell), f"{factory} shows an error with the reference solution"
    assert "your AdamW" in widget_html(nb, widget_cells(nb)["optimizer_race"][1])
    print(f"\nsolution notebook top to bottom: {seconds:.1f} s")


@pytest.mark.slow
def test_release_widget_cells_never_raise_and_the_stub_is_named_inside_the_widget(executed):
    nb, _ = executed["release"]
    errors = {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells if any(o.output_type == "error" for o in cell.get("outputs", []))}
    assert "adamw" not in errors and "test_adamw_matches_torch" in errors  # the stub is there and its tests fail
    for factory, (_, cell) in widget_cells(nb).items():
        assert not any(out.output_type == "error" for out in cell.outputs), f"{factory} cell raised"
        shown = widget_html(nb, cell)
        if factory in ("optimizer_race", "clipping_demo", "schedule_explorer"):  # driven by the student's stubs
            assert ERROR_BOX in shown and "NotImplementedError" in shown, factory
        else:
            assert ERROR_BOX not in shown, factory
