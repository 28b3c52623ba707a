"""Build time and slowest answer of every g2c widget, on one CPU core.

Run: .venv/bin/python tests/benchmarks/bench_widgets.py
Budget (issue 6): build < 3 s, any answer < 1 s. Prints seconds and the ratio to the budget.
An "answer" is one control moved from Python to each of its settings (first visit, uncached).
"""

from __future__ import annotations

import time

import torch

torch.set_num_threads(1)

import ipywidgets  # noqa: E402

from g2c.widgets import clipping_demo, curve_doctor, lr_sweep, optimizer_race, schedule_explorer  # noqa: E402

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


if __name__ == "__main__":
    main()
