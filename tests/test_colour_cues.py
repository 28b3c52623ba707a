"""Colour is never the only way to tell two curves apart (WCAG 2.1 1.4.1), in the book's
figures and in every widget frame: the legend's lines differ in line style or marker too, and
the schedule's shaded phases are named inside the plot.

Checked on the matplotlib figures themselves, just before they are rendered, so a new curve
added with only a new colour fails here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

BOOK = Path(__file__).resolve().parents[1] / "book"


def legend_lines(fig: Figure) -> Iterator[tuple[str, list[Line2D]]]:
    """(axes title, the legend's line handles) for every axes of ``fig`` that has a legend."""
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            yield ax.get_title(), [h for h in legend.legend_handles if isinstance(h, Line2D)]


def same_but_colour(fig: Figure) -> list[str]:
    """Legend entries whose line style and marker repeat another's: told apart by colour alone."""
    clashes = []
    for title, lines in legend_lines(fig):
        seen: dict[tuple[str, str], str] = {}
        for line in lines:
            key = (line.get_linestyle(), str(line.get_marker()))
            if key in seen:
                clashes.append(f"{title!r}: {seen[key]!r} and {line.get_label()!r} are both {key}")
            seen.setdefault(key, line.get_label())
    return clashes


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """Every figure a widget renders (captured as Agg draws it: g2c.widgets.render.to_png draws the canvas itself)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figures: list[Figure] = []
    draw = FigureCanvasAgg.draw

    def capture(self: FigureCanvasAgg, *args, **kwargs):
        assert not same_but_colour(self.figure), same_but_colour(self.figure)  # while the frame's artists are on it
        figures.append(self.figure)
        return draw(self, *args, **kwargs)

    monkeypatch.setattr(FigureCanvasAgg, "draw", capture)
    return figures


def test_same_but_colour_catches_two_lines_told_apart_by_colour_only() -> None:
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], color="red", label="a")
    ax.plot([1, 0], color="blue", label="b")
    ax.legend()
    assert same_but_colour(fig) == ["'': 'a' and 'b' are both ('-', 'None')"]
    ax.lines[1].set_linestyle("--")
    ax.legend()
    assert same_but_colour(fig) == []


# Every widget's static frames, on short runs (the drawing is the same as the book's).
SMALL = {
    "lr_sweep": {"lrs": (1e-3, 0.1, 3.0), "steps": 20},
    "optimizer_race": {"steps": 20},
    "clipping_demo": {"steps": 20, "max_norms": (0.5, 1.0)},
    "schedule_explorer": {},
    "curve_doctor": {},
}


@pytest.mark.parametrize("name", list(SMALL))
def test_widget_frames_tell_curves_apart_without_colour(drawn, name) -> None:
    import g2c.widgets as w

    panel = getattr(w, name)(static=True, **SMALL[name])
    assert panel.stack is not None and drawn, f"{name} drew no figure: {panel.children}"
    if name == "schedule_explorer":
        for fig in drawn:
            named = {t.get_text() for t in fig.axes[0].texts}
            assert {"cosine decay", "floor"} <= named, named  # warmup is named when it has steps


@pytest.fixture(scope="module")
def figures_module():
    sys.path.insert(0, str(BOOK))
    try:
        import _figures
        yield _figures
    finally:
        sys.path.remove(str(BOOK))


@pytest.mark.parametrize(
    "name", ["lr_sweep_figure", "sgd_vs_adamw_figure", "clipping_figure", "schedule_figure", "curve_shapes_figure"]
)
def test_book_figures_tell_curves_apart_without_colour(figures_module, name) -> None:
    runs = {"lr_sweep_figure": "sweep_runs", "sgd_vs_adamw_figure": "matched_runs", "curve_shapes_figure": "curve_shape_runs"}
    args = [getattr(figures_module, runs[name])()] if name in runs else []
    fig = getattr(figures_module, name)(*args)
    assert not same_but_colour(fig), same_but_colour(fig)
    if name == "schedule_figure":
        assert {"warmup", "cosine decay", "floor"} <= {t.get_text() for t in fig.axes[0].texts}
