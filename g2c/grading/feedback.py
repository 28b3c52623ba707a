"""Feedback that explains lost points and never shows hidden tests.

nbgrader's own feedback prints hidden test source and its tracebacks (upstream issues 917, 1363),
so feedback is rendered here from the autograded notebook: test cells show their visible part
and, for lost points, only the plain-words pitfall messages.
"""

from __future__ import annotations

import functools
import re

import nbformat

REASONS_KEY = "g2c_reasons"  # autograded notebook metadata: grade_id -> why points were lost
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M)


def _markdown_text(text: str) -> str:
    """``text`` shown as written in a markdown table: no emphasis from ``**``, no cell break from ``|``."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def _points(score: float | None, points: float) -> str:
    return f"{score or 0:g} of {points:g} point{'s' if points != 1 else ''}"


def _total(scores: dict[str, float | None], points: dict[str, float], late_penalty: float) -> str:
    """The total so far and, while written answers wait for hand grading, what is still pending."""
    pending = [grade_id for grade_id in points if scores.get(grade_id) is None]
    total = sum(v for v in scores.values() if v is not None) - late_penalty
    line = f"**Total: {total:g} of {sum(points.values()):g} points**"
    if late_penalty:
        line += f" (after a late-submission penalty of {late_penalty:g})"
    if pending:
        waiting = sum(points[g] for g in pending)
        line += (f". Still to be graded by hand: {', '.join(f'`{g}`' for g in pending)} "
                 f"({waiting:g} point{'s' if waiting != 1 else ''}).")
    return line


def verdict_output(score: float | None, points: float, reasons: list[str]) -> nbformat.NotebookNode:
    """What a test cell shows once graded: the grader's verdict, never the student kernel's output."""
    lost = reasons if (score or 0) < points else []
    text = f"{'passed' if not lost else 'points lost'}: {_points(score, points)}\n" + "".join(f"- {reason}\n" for reason in lost)
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def redact(nb, scores: dict[str, float | None], reasons: dict[str, list[str]], late_penalty: float):
    """Strip hidden tests and their outputs from every graded test cell; say why points were lost.

    The reasons come from the grader's comparison of the student's answers with the reference
    (``g2c.grading.compare``), never from what ran in the student's kernel. A score of None is
    a written answer no one has graded yet.
    """
    summary = ["| part | points | why points were lost |", "| --- | --- | --- |"]
    worth: dict[str, float] = {}  # grade_id -> points
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        grade_id, points = meta["grade_id"], meta.get("points", 0)
        score, worth[grade_id] = scores.get(grade_id), points
        if cell.cell_type == "code" and not meta.get("solution"):
            lost = reasons.get(grade_id, []) if (score or 0) < points else []
            cell.source = HIDDEN.sub("", cell.source)
            cell.outputs = [verdict_output(score, points, lost)]
            summary.append(f"| `{grade_id}` | {_points(score, points)} | {_markdown_text('; '.join(lost)) or 'none'} |")
        elif meta.get("solution"):
            shown = "to be graded by hand" if score is None else _points(score, points)
            summary.append(f"| `{grade_id}` (written) | {shown} | |")
    head = f"# Feedback: Module 03B — Training\n\n{_total(scores, worth, late_penalty)}\n\n"
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(head + "\n".join(summary)))
    return nb


# JupyterLab's page, but a code cell's source is not parsed again by bleach once pygments has highlighted it:
# pygments escapes every character of the source (its HTML is its own spans around escaped text), and bleach's
# second parse of it was 40% of a page's time. Markdown, outputs and everything else stay sanitized.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
     </div>
</div>
{%- endblock input %}
"""


@functools.cache
def _page_exporter():
    """One exporter per process: its templates are found and compiled once, not once per page (0.1 s each)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # sanitized: the outputs come from the student's kernel, and the page is opened by people
    return HTMLExporter(template_name="lab", template_file="g2c-feedback.html.j2", sanitize_html=True,
                        extra_loaders=[DictLoader({"g2c-feedback.html.j2": PAGE_TEMPLATE})])


def feedback_html(autograded: nbformat.NotebookNode, scores: dict[str, float | None], reasons: dict[str, list[str]],
                  late_penalty: float = 0.0) -> str:
    """The student's feedback page: their notebook, hidden tests cut, lost points explained."""
    body, _ = _page_exporter().from_notebook_node(redact(autograded, scores, reasons, late_penalty))
    return body


def score_of(grade) -> float | None:
    """nbgrader's rule, a hand grade wins over the autograde, except that a written answer no one
    has graded yet is None (pending), where nbgrader's ``Grade.score`` says 0."""
    return grade.manual_score if grade.manual_score is not None else grade.auto_score
