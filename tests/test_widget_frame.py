"""The frame every widget is built in (``g2c.widgets.live``, ``g2c.widgets.frames``), and each
factory with a student's answer written and unwritten (a stub that raises NotImplementedError).

Runs are tiny (a few steps), so the whole file takes seconds.
"""

from __future__ import annotations

import ast
import base64
import re

import ipywidgets
import numpy as np
import pytest
import torch

from g2c.training import AdamW, clip_grad_norm_, cosine_with_warmup
from g2c.widgets import (
    KINDS,
    TERMS,
    clipping_demo,
    curve_doctor,
    diagnose,
    example_curves,
    lr_sweep,
    optimizer_race,
    schedule_explorer,
)
from g2c.widgets.doctor import quiz_truth
from g2c.widgets.frames import Frame, Panel, Picture, static_panel
from g2c.widgets.live import GridSlider, grid_with, live, nearest
from g2c.widgets.render import new_figure, to_png

PNG = b"\x89PNG\r\n\x1a\n"
NOT_WRITTEN = "your code is not written yet"


def pictures(widget: ipywidgets.Widget) -> list[str]:
    """The ``<img>`` tags of every HTML widget inside ``widget``, as a browser would get them."""
    found = re.findall(r"<img [^>]*>", widget.value) if isinstance(widget, ipywidgets.HTML) else []
    for child in getattr(widget, "children", ()):
        found += pictures(child)
    return found


def assert_message_only(panel: Panel, words: str) -> None:
    """The panel says ``words`` and shows no picture: no <img> at all, and the picture's box hidden."""
    assert words in panel.readout.value, panel.readout.value
    assert pictures(panel) == [], pictures(panel)
    assert panel.image is None or panel.image.layout.display == "none"


def assert_picture(panel: Panel) -> None:
    (img,) = pictures(panel)
    src = re.search(r'src="data:image/png;base64,([^"]+)"', img)
    assert src and base64.b64decode(src.group(1)).startswith(PNG), img[:120]
    assert panel.image.layout.display != "none"
    assert "could not" not in panel.readout.value and "Error" not in panel.readout.value, panel.readout.value


@pytest.fixture(scope="module")
def png() -> bytes:
    fig, _ = new_figure(2, 2)
    return to_png(fig)


def test_to_png_renders_any_figure_dropping_alpha_only_where_every_pixel_is_opaque():
    """Widget frames are opaque (RGB, a smaller PNG); a figure with a see-through face keeps its alpha."""
    import io

    from matplotlib.figure import Figure
    from PIL import Image

    for see_through, mode in ((False, "RGB"), (True, "RGBA")):
        fig = Figure(figsize=(2, 1))  # no Agg canvas of its own: to_png gives it one
        fig.subplots().set_title("t", fontsize=9)
        if see_through:
            fig.patch.set_alpha(0.0)
        image = Image.open(io.BytesIO(to_png(fig, dpi=50)))
        assert (image.mode, image.size) == (mode, (100, 50))
        assert float(image.text["min-font-px"]) == pytest.approx(9 * 50 / 72, abs=0.01)


# ---- the one nearest-value rule ------------------------------------------------------------

def test_nearest_is_closest_on_a_log_axis():
    grid = (1e-3, 3e-3, 1e-2)
    assert [nearest(grid, x) for x in grid] == [0, 1, 2]
    assert nearest(grid, 6e-3) == 2  # 0.01 / 0.006 < 0.006 / 0.003, though 0.003 is nearer on a linear axis
    assert nearest(grid, 4e-3) == 1
    assert nearest(grid, 1e-9) == 0 and nearest(grid, 5.0) == 2


def test_nearest_handles_a_zero_in_the_grid_and_breaks_ties_towards_the_earlier_value():
    weight_decays = (0.0, 1e-3, 1e-2, 1e-1)
    assert nearest(weight_decays, 0.0) == 0
    assert nearest(weight_decays, 1e-4) == 1  # zero is no neighbour of a small positive number
    assert nearest((1.0, 4.0), 2.0) == 0  # 2 is the geometric middle
    with pytest.raises(ValueError, match="empty"):
        nearest((), 1.0)


def test_grid_slider_starts_at_the_nearest_value_and_reports_numbers():
    slider = GridSlider("learning rate", (1e-3, 3e-3, 1e-2), 6e-3)
    assert slider.options == ("0.001", "0.003", "0.01") and slider.value == "0.01" and slider.number == 1e-2
    assert slider.description == "learning rate"
    exact = GridSlider("lr", grid_with((1e-3, 1e-2), 5e-3), 5e-3)
    assert exact.grid == (1e-3, 5e-3, 1e-2) and exact.number == 5e-3


def test_the_sweep_starts_at_the_nearest_lr_of_its_grid():
    panel = lr_sweep(lrs=(1e-3, 1e-2), lr=6e-3, steps=5)
    assert panel.controls["lr"].value == "0.01"
    assert lr_sweep(lrs=(1e-3, 1e-2), lr=6e-3, steps=5, static=True).stack.selected_index == 1


# ---- live: one redraw rule, errors without a picture ------------------------------------------

def counting_render(png: bytes, calls: list[float]):
    def render(values: dict) -> Frame:
        calls.append(values["x"])
        if values["x"] == 3.0:
            raise NotImplementedError()
        if values["x"] == 4.0:
            raise ValueError("x must not be 4")
        return Frame(png + str(values["x"]).encode(), f"picture at x {values['x']}", f"caption at x {values['x']}")

    return render


def test_live_renders_each_setting_once_and_shows_its_frame(png):
    calls: list[float] = []
    slider = GridSlider("x", (1.0, 2.0), 1.0)
    panel = live({"x": slider}, counting_render(png, calls), what="demo")
    assert panel.children[0] is slider and panel.controls == {"x": slider}
    assert panel.image.png == png + b"1.0" and panel.image.alt == "picture at x 1.0" and panel.readout.value == "caption at x 1.0"
    slider.index = 1
    slider.index = 0
    slider.index = 1
    assert calls == [1.0, 2.0], "each setting is rendered once"
    assert panel.image.png == png + b"2.0" and panel.readout.value == "caption at x 2.0"
    assert_picture(panel)


def test_an_unwritten_stub_shows_only_its_message_and_the_stale_picture_goes(png):
    slider = GridSlider("x", (1.0, 3.0, 4.0), 1.0)
    panel = live({"x": slider}, counting_render(png, []), what="demo")
    assert_picture(panel)
    slider.index = 1  # render raises NotImplementedError()
    assert_message_only(panel, NOT_WRITTEN)
    assert "<b>demo:</b>" in panel.readout.value and panel.image.png == b""
    slider.index = 2  # a ValueError says why
    assert_message_only(panel, "x must not be 4")
    slider.index = 0  # a good setting brings the picture back
    assert_picture(panel)
    assert panel.image.png == png + b"1.0"


def test_an_error_on_the_first_draw_shows_no_empty_picture(png):
    panel = live({"x": GridSlider("x", (3.0,), 3.0)}, counting_render(png, []), what="demo")
    assert_message_only(panel, NOT_WRITTEN)


def test_live_lays_out_rows_and_rejects_a_control_left_out(png):
    a, b, c = (GridSlider(name, (1.0, 2.0), 1.0) for name in "abc")
    render = counting_render(png, [])
    panel = live({"x": a, "y": b, "z": c}, lambda v: render({"x": v["x"]}), what="demo", rows=[("x", "y"), ("z",)])
    row, lone = panel.children[:2]
    assert isinstance(row, ipywidgets.HBox) and row.children == (a, b) and lone is c
    with pytest.raises(ValueError, match="every control once"):
        live({"x": a, "y": b}, render, what="demo", rows=[("x",)])


def test_a_picture_without_png_is_hidden(png):
    picture = Picture()
    picture.show(png, "a frame")
    assert picture.layout.display != "none" and "<img" in picture.value
    picture.show(b"", "")
    assert picture.value == "" and picture.layout.display == "none"


def test_static_panel_switches_the_frames_it_is_given(png):
    frames = [Frame(png + b"a", "first", "caption a"), Frame(png + b"b", "second", "caption b")]
    panel = static_panel("setting", ["a", "b"], frames, index=1)
    (slider,) = panel.controls.values()
    assert slider.options == ("a", "b") and slider.index == 1 and panel.stack.selected_index == 1
    pages = panel.stack.children
    assert [p.children[0].png for p in pages] == [png + b"a", png + b"b"]
    assert [p.children[0].alt for p in pages] == ["first", "second"]
    assert [p.children[1].value for p in pages] == ["caption a", "caption b"]


# ---- every factory, with the answer written and with the stub ---------------------------------

class UnwrittenAdamW(AdamW):
    """The notebook's AdamW before the student writes ``step``."""

    def step(self) -> None:
        raise NotImplementedError()


def unwritten_clip(parameters, max_norm, *, eps=1e-6):
    if not max_norm >= 0.0:
        raise ValueError(f"max_norm must be a non-negative number, got {max_norm!r}")
    raise NotImplementedError()


def unwritten_schedule(step, *, warmup_steps, max_steps, max_lr, min_lr=0.0):
    raise NotImplementedError()


SMALL = {"lrs": (1e-3, 1e-2), "lr": 1e-2, "steps": 5}
RACE = {"steps": 5}
CLIP = {"steps": 5, "max_norms": (0.5, 1.0), "lrs": (0.3,)}

WRITTEN = {
    "lr_sweep": lambda: lr_sweep(optimizer=AdamW, **SMALL),
    "optimizer_race": lambda: optimizer_race(optimizers={"your AdamW": AdamW, "torch.optim.AdamW": torch.optim.AdamW}, **RACE),
    "clipping_demo": lambda: clipping_demo(clip=clip_grad_norm_, **CLIP),
    "schedule_explorer": lambda: schedule_explorer(
        warmup_steps=100, max_steps=1000, max_lr=3e-4, min_lr=3e-5, schedule=cosine_with_warmup
    ),
}
UNWRITTEN = {
    "lr_sweep": lambda: lr_sweep(optimizer=UnwrittenAdamW, **SMALL),
    "optimizer_race": lambda: optimizer_race(
        optimizers={"your AdamW": UnwrittenAdamW, "torch.optim.AdamW": torch.optim.AdamW}, **RACE
    ),
    "clipping_demo": lambda: clipping_demo(clip=unwritten_clip, **CLIP),
    "schedule_explorer": lambda: schedule_explorer(
        warmup_steps=100, max_steps=1000, max_lr=3e-4, min_lr=3e-5, schedule=unwritten_schedule
    ),
}


@pytest.mark.parametrize("name", list(WRITTEN))
def test_factory_with_the_answer_written_shows_a_picture(name):
    assert_picture(WRITTEN[name]())


@pytest.mark.parametrize("name", list(UNWRITTEN))
def test_factory_with_an_unwritten_stub_shows_only_the_message(name):
    panel = UNWRITTEN[name]()
    assert_message_only(panel, NOT_WRITTEN)
    assert "Traceback" not in panel.readout.value


def test_race_controls_still_work_after_a_stub_error():
    panel = UNWRITTEN["optimizer_race"]()
    panel.controls["your AdamW lr"].index = 0  # still the stub: still only the message
    assert_message_only(panel, NOT_WRITTEN)


def test_the_static_book_widgets_show_no_stub_message():
    """The book's cells (static) with their defaults: pictures, no message."""
    for panel in (schedule_explorer(static=True), clipping_demo(static=True, **CLIP)):
        assert len(pictures(panel)) == len(panel.stack.children) and NOT_WRITTEN not in str(panel.stack.children)


# ---- the curve doctor's quiz speaks the five terms ----------------------------------------------

def checked(quiz: Panel) -> list[str]:
    verdicts = []
    for kind in KINDS:
        quiz.controls["answer"].value = kind
        quiz.controls["check"].click()
        verdicts.append(quiz.readout.value)
    return verdicts


def test_quiz_check_names_one_of_the_five_terms_and_its_next_step():
    quiz = curve_doctor(quiz=True, seed=5)
    assert_picture(quiz)
    for _ in range(6):
        verdicts = checked(quiz)
        named = {re.search(r"Diagnosis: (\w+)", v).group(1) for v in verdicts}
        assert len(named) == 1, verdicts
        (term,) = named
        assert term in TERMS
        assert all(TERMS[term].action in v for v in verdicts), (term, verdicts)
        right = [kind for kind, v in zip(KINDS, verdicts) if "Right" in v]
        assert right == [term], verdicts
        quiz.controls["new"].click()


def test_quiz_answer_is_the_shape_drawn_even_where_diagnose_disagrees():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        curves = example_curves(kind, rng)
        if diagnose(*curves).label != kind:
            break
    else:
        pytest.skip("no disagreeing curve drawn")
    truth = quiz_truth(kind, curves)
    assert truth.label == kind and truth.action == TERMS[kind].action


def test_quiz_asks_for_an_answer_before_checking():
    quiz = curve_doctor(quiz=True)
    quiz.controls["check"].click()
    assert "Pick a diagnosis first" in quiz.readout.value


# ---- the documented calls are calls the factories accept ------------------------------------------

def bind(call_source: str) -> str:
    """Bind a call like ``lr_sweep(lambda: MLP((2, 32, 1)))`` to its factory's signature; return the factory's name."""
    import inspect

    import g2c.widgets

    call = ast.parse(call_source.strip(), mode="eval").body
    name = call.func.id
    signature = inspect.signature(getattr(g2c.widgets, name).__wrapped__)
    signature.bind(*[None] * len(call.args), **{keyword.arg: None for keyword in call.keywords})
    return name


FACTORY_NAMES = {"lr_sweep", "optimizer_race", "clipping_demo", "schedule_explorer", "curve_doctor"}


def test_the_package_docstring_shows_calls_the_factories_accept():
    import g2c.widgets

    calls = re.findall(r"``((?:{})\(.*?\))``".format("|".join(FACTORY_NAMES)), g2c.widgets.__doc__)
    assert {bind(call) for call in calls} == FACTORY_NAMES


def test_the_exercise_notebooks_widget_calls_fit_the_factories():
    import json
    from pathlib import Path

    notebook = json.loads((Path(__file__).parents[1] / "release" / "03b-training" / "training.ipynb").read_text())
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if "widget" in cell.get("metadata", {}).get("tags", [])]
    calls = [source.strip().splitlines()[-1] for source in cells]
    assert {bind(call) for call in calls} == FACTORY_NAMES, calls
