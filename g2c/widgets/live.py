"""Live mode, shared by every widget: sliders over a grid of values, and one redraw rule.

A widget is a ``render`` function from its controls' values to a ``Frame`` (picture, alt text,
caption). ``live`` wires the controls to it: any move redraws, each setting is rendered once
(cached), and an error shows as a message with no picture, so a stale or empty one never
sits above it. Static mode (``frames.static_panel``) renders the same frames ahead of time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from g2c.widgets.frames import SLIDER_STYLE, Frame, Panel, png_image
from g2c.widgets.render import fmt

Values = dict[str, Any]  # control name -> its current value (a grid number for a GridSlider)
Render = Callable[[Values], Frame]
CACHED_FRAMES = 128  # about 50 kB a frame: a few MB at most


def nearest(grid: Sequence[float], value: float) -> int:
    """The index of the grid value closest to ``value`` by ratio, i.e. on a log axis.

    The widgets' grids are spaced by powers (1e-3, 3e-3, 0.01, ...), so 0.005 is nearer 3e-3
    than 0.01. The distance is ``|a - b| / max(|a|, |b|)`` (0 for equal values): for positive
    numbers it orders like ``|log(a / b)|``, and it still works for a 0 in the grid (weight
    decay, warmup steps). Ties go to the earlier grid value.
    """
    if not grid:
        raise ValueError("the grid is empty")

    def distance(x: float) -> float:
        return 0.0 if x == value else abs(x - value) / max(abs(x), abs(value))

    return min(range(len(grid)), key=lambda i: distance(grid[i]))


def grid_with(grid: Sequence[float], value: float) -> tuple[float, ...]:
    """``grid`` plus ``value``, sorted: a slider that must offer exactly the value a caller asked for."""
    return tuple(sorted({float(x) for x in grid} | {float(value)}))


class GridSlider(widgets.SelectionSlider):
    """A slider over a grid of numbers, labelled compactly (0.001, 0.03, 3); ``number`` is the value chosen.

    It starts at the grid value nearest ``value`` (``nearest``). The ``description`` says what it
    changes: the book's ``widgets-a11y.js`` makes it, with the value, the handle's accessible name.
    """

    def __init__(
        self, description: str, grid: Sequence[float], value: float, *, label: Callable[[float], str] = fmt, **kwargs: Any
    ):
        self.grid = tuple(grid)
        kwargs.setdefault("continuous_update", False)
        kwargs.setdefault("style", SLIDER_STYLE)
        super().__init__(
            options=[label(x) for x in self.grid], index=nearest(self.grid, value), description=description, **kwargs
        )

    @property
    def number(self) -> float:
        return self.grid[self.index]


def value_of(control: widgets.Widget) -> Any:
    return control.number if isinstance(control, GridSlider) else control.value


def live(
    controls: Mapping[str, widgets.Widget],
    render: Render,
    *,
    what: str,
    rows: Sequence[Sequence[str]] | None = None,
    above: Sequence[widgets.Widget] = (),
) -> Panel:
    """``above``, the controls (``rows`` of control names; default: one row), the picture and its caption.

    Every change of a control's ``value`` calls ``render`` with all controls' values; each setting
    is rendered once. When ``render`` raises (a student's stub, settings that do not fit together)
    the caption says why, headed by ``what``, and the picture is taken away.
    """
    controls = dict(controls)
    image, readout = png_image(), widgets.HTML()
    panel = Panel([*above, *_rows(controls, rows), image, readout], controls=controls, image=image, readout=readout)
    cached = functools.lru_cache(maxsize=CACHED_FRAMES)(lambda key: render(dict(key)))  # errors are not cached

    def redraw(_change: object = None) -> None:
        try:
            panel.show(cached(tuple((name, value_of(c)) for name, c in controls.items())))
        except Exception as exc:  # noqa: BLE001 - shown in the widget
            panel.show_error(exc, what=what)

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return panel


def _rows(controls: Mapping[str, widgets.Widget], rows: Sequence[Sequence[str]] | None) -> list[widgets.Widget]:
    """One widget per row: a lone control as it is, several side by side in an ``HBox``."""
    names = [list(controls)] if rows is None else [list(row) for row in rows]
    if sorted(n for row in names for n in row) != sorted(controls):
        raise ValueError(f"rows must place every control once, got {names} for {list(controls)}")
    return [controls[row[0]] if len(row) == 1 else widgets.HBox([controls[n] for n in row]) for row in names if row]
