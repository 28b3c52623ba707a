"""Build time and slowest answer of every g2c widget, on one CPU core.

Run: .venv/bin/python tests/benchmarks/bench_widgets.py
Budget (issue 6): build < 3 s, any answer < 1 s. Prints seconds and the ratio to the budget.
An "answer" is one control moved from Python to each of its settings (first visit, uncached).

Then one redraw (issue 25: "a slider drag answers in about 2 s live"), against references run in this
process, interleaved, medians: a frame on the widget's kept figure against the same frame on a new figure,
and ``to_png`` (RGB) against matplotlib's ``savefig`` (RGBA) on the same figure. Ratios below 1: faster.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

import torch

torch.set_num_threads(1)

import ipywidgets  # noqa: E402

from g2c.widgets import clipping_demo, curve_doctor, lr_sweep, optimizer_race, schedule_explorer  # noqa: E402
from g2c.widgets.clipping import DEFAULT_GRADS, ClippingFigure, clip_example  # noqa: E402
from g2c.widgets.render import DPI, PIXEL_RATIO, min_font_px, to_png  # noqa: E402
from g2c.widgets.runs import Runs  # noqa: E402
from g2c.widgets.schedule import ScheduleFigure  # noqa: E402

BUILD_BUDGET, ANSWER_BUDGET = 3.0, 1.0
FACTORIES = {
    "lr_sweep": lr_sweep,
    "optimizer_race": optimizer_race,
    "clipping_demo": clipping_demo,
    "schedule_explorer": schedule_explorer,
    "curve_doctor": curve_doctor,
}


def settings(control: ipywidgets.Widget) -> list[object]:
    """Up to 8 settings of a control, spread over its range."""
    if isinstance(control, (ipywidgets.SelectionSlider, ipywidgets.Dropdown)):
        return [("index", i) for i in range(len(control.options))][:10]
    if isinstance(control, ipywidgets.FloatLogSlider):
        return [("value", control.base ** (control.min + (control.max - control.min) * k / 7)) for k in range(8)]
    if isinstance(control, ipywidgets.IntSlider):
        return [("value", int(control.min + (control.max - control.min) * k / 7)) for k in range(8)]
    if isinstance(control, ipywidgets.ToggleButtons):
        return [("value", v) for v in control.options]
    if isinstance(control, ipywidgets.Button):
        return [("click", None)] * 5
    raise TypeError(type(control).__name__)


def slowest_answer(panel) -> tuple[float, str]:
    worst, where = 0.0, "-"
    for name, control in panel.controls.items():
        for attr, value in settings(control):
            start = time.perf_counter()
            if attr == "click":
                control.click()
            else:
                setattr(control, attr, value)
            took = time.perf_counter() - start
            if took > worst:
                worst, where = took, f"{name}={value}"
    return worst, where


def timed(build):
    start = time.perf_counter()
    panel = build()
    return time.perf_counter() - start, panel


def medians(a: Callable[[int], object], b: Callable[[int], object], n: int = 9) -> tuple[float, float]:
    """Median seconds of ``a(i)`` and ``b(i)`` for i in range(n), interleaved so both meet the same load."""
    times_a, times_b = [], []
    for i in range(n):
        for f, times in ((a, times_a), (b, times_b)):
            start = time.perf_counter()
            f(i)
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def savefig_png(fig) -> bytes:
    """The reference encoder: matplotlib's savefig (RGBA), as widgets encoded frames before."""
    buffer = io.BytesIO()
    dpi = DPI * PIXEL_RATIO
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"min-font-px": f"{min_font_px(fig, dpi):.2f}"})
    return buffer.getvalue()


def redraws() -> None:
    """One redraw on the kept figure against one on a new figure; to_png against savefig."""
    kept = ScheduleFigure()
    warmup = [10 * (i + 1) for i in range(9)]
    rows = [("schedule_explorer", *medians(lambda i: kept.png(warmup[i], 1000, 3e-3, 3e-4),
                                          lambda i: ScheduleFigure().png(warmup[i] + 5, 1000, 3e-3, 3e-4)))]
    grads = [torch.tensor(g) for g in DEFAULT_GRADS]
    runner = Runs(None, None, None, steps=200)
    norms = [0.05 * (i + 1) for i in range(9)]
    frames = [(clip_example(grads, m), runner.run(0.3, clip=m), m, 0.3) for m in norms]
    flat, sizes = torch.cat(grads), [g.numel() for g in grads]
    clip_kept = ClippingFigure(flat, sizes)
    rows.append(
        ("clipping_demo", *medians(lambda i: clip_kept.png(*frames[i]), lambda i: ClippingFigure(flat, sizes).png(*frames[i])))
    )
    print(f"\n{'one redraw':<26}{'kept figure s':>15}{'new figure s':>14}{'ratio':>8}")
    for name, kept_s, new_s in rows:
        print(f"{name:<26}{kept_s:15.3f}{new_s:14.3f}{kept_s / new_s:8.2f}")
    print(f"\n{'PNG encoding':<26}{'to_png s':>15}{'savefig s':>14}{'ratio':>8}")
    for name, fig in (("schedule frame", kept.fig), ("clipping frame", clip_kept.fig)):
        ours, reference = medians(lambda i, fig=fig: to_png(fig), lambda i, fig=fig: savefig_png(fig))
        size = len(to_png(fig)) / len(savefig_png(fig))
        print(f"{name:<26}{ours:15.3f}{reference:14.3f}{ours / reference:8.2f}   PNG size ratio {size:.2f}")


def main() -> None:
    timed(lambda: lr_sweep(lrs=(1e-3, 1e-2)))  # warm imports and matplotlib's font cache
    print(f"{'widget':<26}{'build s':>9}{'/budget':>9}{'slowest answer s':>18}{'/budget':>9}  at")
    rows = []
    for name, factory in FACTORIES.items():
        build_s, panel = timed(factory)
        answer_s, where = slowest_answer(panel)
        rows.append((name, build_s, answer_s, where))
        static_s, _ = timed(lambda factory=factory: factory(static=True))
        rows.append((f"{name}(static=True)", static_s, 0.0, "in the browser"))
    build_s, panel = timed(lambda: curve_doctor(quiz=True))
    answer_s, where = slowest_answer(panel)
    rows.append(("curve_doctor(quiz=True)", build_s, answer_s, where))
    for name, build_s, answer_s, where in rows:
        print(f"{name:<26}{build_s:9.3f}{build_s / BUILD_BUDGET:9.2f}{answer_s:18.3f}{answer_s / ANSWER_BUDGET:9.2f}  {where}")
    worst_build = max(rows, key=lambda r: r[1])
    worst_answer = max(rows, key=lambda r: r[2])
    print(f"slowest build: {worst_build[0]} {worst_build[1]:.3f} s ({worst_build[1] / BUILD_BUDGET:.2f} of budget)")
    print(
        f"slowest answer: {worst_answer[0]} {worst_answer[2]:.3f} s at {worst_answer[3]} "
        f"({worst_answer[2] / ANSWER_BUDGET:.2f} of budget)"
    )
    redraws()


if __name__ == "__main__":
    main()
