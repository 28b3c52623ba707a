"""Feedback that explains lost points and never shows hidden tests.

nbgrader's own feedback prints hidden test source and its tracebacks (upstream issues 917, 1363),
so feedback is rendered here from the autograded notebook: test cells show their visible part
and, for lost points, only the plain-words pitfall messages.
"""

from __future__ import annotations

import html
import re

import nbformat

from g2c.grading.verdict import PREFIX

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
VISIBLE_ERROR = re.compile(r"^E\s+(\w+(?:Error|Exception)): (?!assert )(.+)$")


def pitfalls(cell) -> list[str]:
    """The plain-words messages a failed test cell printed (hidden tests print nothing else here)."""
    text = ""
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            text += output.text
        elif output.output_type == "error":
            text += "\n".join(output.get("traceback", [])) + "\n" + output.get("evalue", "")
    messages, errors = [], []
    for line in ANSI.sub("", text).splitlines():
        if PREFIX in line and line.startswith("E "):  # the raised message, never the listed test source
            message = line.split(PREFIX, 1)[1].split("\\n")[0].strip().rstrip("'\"")
            if message and message not in messages:
                messages.append(message)
        elif match := VISIBLE_ERROR.match(line):  # e.g. "E   NameError: name 'p1' is not defined"
            if f"{match[1]}: {match[2]}" not in errors:
                errors.append(f"{match[1]}: {match[2]}")
    return messages or errors[:3]


def redact(nb, scores: dict[str, float | None]):
    """Strip hidden tests and their outputs from every graded test cell; say why points were lost."""
    summary = ["| part | points | why points were lost |", "| --- | --- | --- |"]
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            grade_id, points = meta["grade_id"], meta.get("points", 0)
            score = scores.get(grade_id)
            failed = any(o.output_type == "error" for o in cell.get("outputs", [])) or (score is not None and score < points)
            reasons = pitfalls(cell) if failed else []
            if failed and not reasons:
                reasons = ["the visible checks in this cell fail: run the cell in your notebook to see why"]
            cell.source = HIDDEN.sub("", cell.source)
            text = f"{'passed' if not failed else 'lost points'}: {score if score is not None else 0:g} / {points:g}\n"
            text += "".join(f"- {reason}\n" for reason in reasons)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
            summary.append(f"| `{grade_id}` | {score if score is not None else 0:g} / {points:g} | {html.escape('; '.join(reasons)) or 'none'} |")
        elif meta.get("grade") and meta.get("solution"):
            grade_id = meta["grade_id"]
            score = scores.get(grade_id)
            points = meta.get("points", 0)
            shown = "to be graded by hand" if score is None else f"{score:g} / {points:g}"
            summary.append(f"| `{grade_id}` (written) | {shown} | |")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# Feedback: Module 03B — Training\n\n" + "\n".join(summary)))
    return nb


def feedback_html(autograded: nbformat.NotebookNode, scores: dict[str, float | None]) -> str:
    """The student's feedback page: their notebook, hidden tests cut, lost points explained."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(redact(autograded, scores))
    return body
