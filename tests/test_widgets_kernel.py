"""g2c.widgets in a real Jupyter kernel, as myst-nb (book) and nbgrader (autograder) run notebooks."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from g2c.widgets import lr_sweep, curve_doctor\nlr_sweep(static=True)"),
        nbformat.v4.new_code_cell("quiz = curve_doctor(quiz=True)\nquiz"),
        nbformat.v4.new_code_cell("quiz.controls['new'].click()\nprint('clicked')"),
    ]
    client = NotebookClient(nb, timeout=60, kernel_name="python3", store_widget_state=True)
    client.execute()
    return nb


def test_cells_finish_and_show_widget_views(executed):
    """Nothing waits for a display or a front end: every cell ends, each widget cell has a view."""
    for cell in executed.cells[:2]:
        assert any(VIEW in out.get("data", {}) for out in cell.outputs), cell.outputs
    assert executed.cells[2].outputs[0]["text"].strip() == "clicked"


def test_notebook_stores_the_jslink_between_slider_and_stack(executed):
    """What the book embeds: the static sweep's Link model ties a slider's index to a Stack."""
    state = executed.metadata["widgets"][WIDGET_STATE]["state"]
    by_id = {f"IPY_MODEL_{key}": value for key, value in state.items()}
    links = [s["state"] for s in state.values() if s["model_name"] == "LinkModel"]
    assert links, "no jslink in the stored widget state"
    pairs = {
        (
            by_id[link["source"][0]]["model_name"], link["source"][1],
            by_id[link["target"][0]]["model_name"], link["target"][1],
        )
        for link in links
    }
    assert ("SelectionSliderModel", "index", "StackModel", "selected_index") in pairs
    images = [s for s in state.values() if s["model_name"] == "HTMLModel" and 'class="g2c-frame"' in s["state"]["value"]]
    assert len(images) >= 10  # the sweep's frames (each an <img> with alt text) travel inside the page
