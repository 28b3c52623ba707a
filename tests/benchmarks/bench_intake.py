"""What intake's caps bound: the worst markdown a student can send, rendered as formgrader and the feedback page do.

Run: .venv/bin/python tests/benchmarks/bench_intake.py
For each pathological pattern: a notebook whose markdown is the pattern at 120 kB in one cell
and cut over many cells up to the notebook's budget (intake.MAX_NOTEBOOK), then intake, formgrader's
render of every markdown cell (``markdown2html | strip_files_prefix``) and the whole feedback page
(in its bounded child), each timed; and, for scale, formgrader's render of one 10 kB cell as it
came. Also the cost the rendering child adds to a page (a fork of this process, which holds torch
as a grading worker does).
"""

from __future__ import annotations

import copy
import statistics
import time

import nbformat
import torch  # noqa: F401 (a grading worker's size, for the fork)
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbconvert.filters.strings import strip_files_prefix

from g2c.grading import feedback
from g2c.grading.sandbox import intake

PATTERNS = {
    "nested [ ]": lambda n: "[" * (n // 2) + "x" + "]" * (n // 2),
    "open [": lambda n: "[" * n,
    "[a](": lambda n: "[a](" * (n // 4),
    "*a": lambda n: "*a" * (n // 2),
    "emphasis run": lambda n: "*" * (n // 2) + "a" + "*" * (n // 2),
    "$a": lambda n: "$a" * (n // 2),
    "\\\\(": lambda n: "\\\\(" * (n // 3),
    "backticks": lambda n: "".join("`" * k + " " for k in range(1, 500))[:n],
    "code with [": lambda n: "```\n" + "[" * n + "\n```",
    "table": lambda n: ("|a" * 50 + "|\n") * (n // 101),
}


def timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def formgrader(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            strip_files_prefix(markdown2html_mistune(cell.source))


def main() -> None:
    print(f"caps: {intake.MAX_CELL} characters a cell, {intake.MAX_NOTEBOOK} a notebook, "
          f"{intake.MAX_BRACKETS_PER_LINE} [ a line, nesting {intake.MAX_NESTING}, emphasis runs {intake.MAX_EMPHASIS}")
    print(f"{'pattern':<14} {'as it came: 10 kB, formgrader':>30} {'intake':>8} {'formgrader':>11} {'feedback page':>14}")
    feedback._warm_exporter()
    for name, make in PATTERNS.items():
        before = timed(lambda make=make: strip_files_prefix(markdown2html_mistune(make(10_000))))
        cells = [make(120_000)] + [make(intake.MAX_CELL)] * (intake.MAX_NOTEBOOK // intake.MAX_CELL + 2)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells])
        spent = timed(lambda nb=nb: intake.inert_notebook(nb))
        render = timed(lambda nb=nb: formgrader(nb))
        page = timed(lambda nb=nb: feedback.feedback_html(copy.deepcopy(nb), {}, {}))
        print(f"{name:<14} {before:>29.2f}s {spent:>7.2f}s {render:>10.2f}s {page:>13.2f}s")
    nb = intake.inert_notebook(nbformat.read("source_notebooks/03b-training/training.ipynb", as_version=4))
    inside, child = [], []
    for _ in range(5):
        inside.append(timed(lambda: feedback._page_exporter().from_notebook_node(copy.deepcopy(nb))))
        child.append(timed(lambda: feedback.rendered_in_child(copy.deepcopy(nb))))
    print(f"the course's notebook page: in process {statistics.median(inside):.3f} s, "
          f"in the bounded child {statistics.median(child):.3f} s (median of 5)")


if __name__ == "__main__":
    main()
