"""Feedback that explains lost points and never shows hidden tests.

nbgrader's own feedback prints hidden test source and its tracebacks (upstream issues 917, 1363),
so feedback is rendered here from the autograded notebook: test cells show their visible part
and, for lost points, only the plain-words pitfall messages.
"""

from __future__ import annotations

import functools
import gc
import html
import os
import re
import select
import signal
import time

import nbformat

from g2c.grading.sandbox.intake import ACTING_TEX

TITLE = "Feedback: Module 03B — Training"
REASONS_KEY = "g2c_reasons"  # autograded notebook metadata: grade_id -> why points were lost
HANDED_IN_KEY = "g2c_handed_in_as"  # autograded notebook metadata: {"graded": the file graded, "expected": the name asked}
HANDED_IN_INSTEAD = "handed in instead of"  # the terminal's line and the page's, for a notebook under another name
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.S | re.M)


def _markdown_text(text: str) -> str:
    """``text`` shown as written in a markdown table: no emphasis from ``**``, no cell break from ``|``, no
    HTML tag or entity, no MathJax command that acts (a reason may quote a student's exception message)."""
    return re.sub(r"([\\`*_|<>&\[\]])", r"\\\1", ACTING_TEX.sub(r"\1", text))


def _points(score: float | None, points: float) -> str:
    return f"{score or 0:g} of {points:g} point{'s' if points != 1 else ''}"


def _scored(score: float | None, points: float) -> str:
    """What a part earned, said as a score: "scored 0 of 1 point, lost 1" (never "points lost: 0 of 1")."""
    lost = points - (score or 0)
    return f"scored {_points(score, points)}" + (f", lost {lost:g}" if lost > 0 else "")


def minutes_late(seconds_late: float) -> str:
    """Minutes late as grades.csv, the report and the feedback page show them (a second is 0.02): empty when on time."""
    return f"{seconds_late / 60:.2f}" if seconds_late > 0 else ""


def late_text(seconds_late: float) -> str:
    """How late a submission arrived, whatever the penalty, on the feedback page."""
    return f"{minutes_late(seconds_late)} minutes late ({seconds_late:.0f} s after the due date)"


def _total(scores: dict[str, float | None], points: dict[str, float], late_penalty: float, seconds_late: float) -> str:
    """The total after the late penalty, how late the submission was, and what still waits for hand grading."""
    pending = [grade_id for grade_id in points if scores.get(grade_id) is None]
    total = sum(v for v in scores.values() if v is not None) - late_penalty
    line = f"**Total: {total:g} of {sum(points.values()):g} points**"
    if late_penalty:
        line += f" (after a late-submission penalty of {late_penalty:g})"
    if seconds_late > 0:
        line += f". Submitted {late_text(seconds_late)}"
    if pending:
        waiting = sum(points[g] for g in pending)
        line += (f". Still to be graded by hand: {', '.join(f'`{g}`' for g in pending)} "
                 f"({waiting:g} point{'s' if waiting != 1 else ''}).")
    return line


def handed_in_line(handed_in: object) -> str:
    """For a notebook graded from a file under another name (``training (1).ipynb``): which file was graded, and the
    name to give it next time. Empty for anything but {"graded": str, "expected": str} (the metadata may be edited)."""
    if not isinstance(handed_in, dict) or not all(isinstance(handed_in.get(k), str) for k in ("graded", "expected")):
        return ""
    graded, expected = (_markdown_text(repr(handed_in[k])) for k in ("graded", "expected"))  # repr: one line, quoted
    return (f"**Graded from your file {graded}**, {HANDED_IN_INSTEAD} {expected}: name your notebook {expected} "
            "next time (a notebook under another name is graded only when it is the only one handed in).")


def verdict_output(score: float | None, points: float, reasons: list[str]) -> nbformat.NotebookNode:
    """What a test cell shows once graded: the grader's verdict, never the student kernel's output."""
    full = (score or 0) >= points
    text = (f"passed: {_points(score, points)}\n" if full else f"{_scored(score, points)}:\n") + \
        "".join(f"- {reason}\n" for reason in ([] if full else reasons))
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def redact(nb, scores: dict[str, float | None], reasons: dict[str, list[str]], late_penalty: float,
           comments: dict[str, str] | None = None, seconds_late: float = 0.0):
    """Strip hidden tests and their outputs from every graded test cell; say why points were lost.

    The reasons come from the grader's comparison of the student's answers with the reference
    (``g2c.grading.compare``), never from what ran in the student's kernel; ``comments`` are the
    grader's hand-grading comments (formgrader's, by cell name), shown beside the part they explain.
    A score of None is a written answer no one has graded yet. A notebook graded from a file under another name
    (``HANDED_IN_KEY`` in its metadata) is said so under the title.
    """
    comments = {k: v for k, v in (comments or {}).items() if v and v.strip()}
    summary = ["| part | score | why points were lost |", "| --- | --- | --- |"]
    worth: dict[str, float] = {}  # grade_id -> points
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        grade_id, points = meta["grade_id"], meta.get("points", 0)
        score, worth[grade_id] = scores.get(grade_id), points
        said = [f"the grader: {comments.pop(grade_id)}"] if grade_id in comments else []
        if cell.cell_type == "code" and not meta.get("solution"):
            lost = reasons.get(grade_id, []) if (score or 0) < points else []
            cell.source = HIDDEN.sub("", cell.source)
            cell.outputs = [verdict_output(score, points, lost + said)]
            why = _markdown_text("; ".join(lost + said)) or ("none" if (score or 0) >= points else "")
            summary.append(f"| `{grade_id}` | {_scored(score, points)} | {why} |")
        elif meta.get("solution"):
            shown = "to be graded by hand" if score is None else _scored(score, points)
            unexplained = ["graded by hand, no comment given"] if score is not None and score < points and not said else []
            summary.append(f"| `{grade_id}` (written) | {shown} | {_markdown_text('; '.join(said + unexplained))} |")
    summary += [f"| `{name}` | | {_markdown_text(f'the grader: {text}')} |" for name, text in sorted(comments.items())]
    nb.metadata["title"] = TITLE  # the page's title, whoever renders it (nbconvert would take the file's name, or "Notebook")
    top = [f"# {TITLE}", handed_in_line(nb.metadata.get(HANDED_IN_KEY)), _total(scores, worth, late_penalty, seconds_late)]
    head = "\n\n".join(filter(None, top)) + "\n\n"
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(head + "\n".join(summary)))
    return nb


# JupyterLab's page, with no script and nothing from outside: no require.js, MathJax or mermaid from a CDN (a page
# opened offline from file:// must read the same, and a page that runs no script cannot be made to run one), a
# Content-Security-Policy that refuses any request but inline styles and data: images, and TeX left as the text the
# student wrote (the scores, reasons and comments the page is for hold no formula; inlining MathJax would add 2 MB
# of script to every student's page). A code cell's source is not parsed again by bleach once pygments has
# highlighted it: pygments escapes every character of the source, and that second parse was 40% of a page's time.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:"
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_javascript scoped %}{%- endblock data_javascript %}
{%- block data_widget_view scoped %}{%- endblock data_widget_view %}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
     <div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
     </div>
</div>
{%- endblock input %}
""".replace("{{ csp }}", CSP)

# What a rendered markdown cell or an HTML output may hold. nbconvert's own list (bleach's defaults and a few) has no
# heading, paragraph, table head or image, and bleach escapes what it does not allow: every markdown cell of a
# sanitized page showed as literal tags. Sanitizing stays (outputs come from students' kernels); the list is one
# that covers what markdown renders. Links keep http(s) (a click, never a request of the page's own); images only data:.
ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "samp", "span", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
})


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "id", "title", "alt", "colspan", "rowspan"):
        return True
    if tag == "a" and name == "href":
        return value.startswith(("http://", "https://", "mailto:", "#"))
    return tag == "img" and name == "src" and value.startswith("data:image/")


def clean_html(element) -> str:
    """nbconvert's ``clean_html`` filter with :data:`ALLOWED_TAGS`: disallowed tags are dropped (their text kept)."""
    import bleach

    text = element.decode() if isinstance(element, bytes) else str(element)
    return bleach.clean(text, tags=ALLOWED_TAGS, attributes=_allowed_attribute, protocols={"http", "https", "mailto", "data"},
                        strip=True)


def _feedback_exporter_class():
    """:class:`FeedbackExporter`, defined on first use (nbconvert is heavy to import)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    class FeedbackExporter(HTMLExporter):
        """The feedback page, for ``g2c autograde`` and ``nbgrader generate_feedback`` alike (nbgrader_config.py
        names it ``GenerateFeedback.exporter_class``): one page whoever writes it."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # set after the configuration: nbgrader's GenerateFeedback configures its own "feedback" template
            self.extra_loaders = [DictLoader({"g2c-feedback.html.j2": PAGE_TEMPLATE})]
            self.extra_template_basedirs, self.extra_template_paths = [], []
            self.template_name, self.template_file = "lab", "g2c-feedback.html.j2"
            self.template_paths = self._template_paths()  # computed once, from the template name nbgrader configured
            self.sanitize_html = True  # the outputs come from the student's kernel, and the page is opened by people
            self.filters = {**self.filters, "clean_html": clean_html}  # kept when the template environment is made again
            # nbgrader's converters empty Exporter.default_preprocessors; the page needs HTMLExporter's (among them the
            # highlighting CSS), whoever renders it
            self.default_preprocessors = HTMLExporter.class_traits()["default_preprocessors"].default()
            self._preprocessors = []
            self._init_preprocessors()

        def from_notebook_node(self, nb, resources=None, **kw):
            """HTMLExporter's page without its closing BeautifulSoup pass (38 % of a page's time): the same
            alternative text and keyboard stops are added to the rendered markup directly (:func:`accessible`)."""
            from nbconvert.exporters.templateexporter import TemplateExporter
            from nbconvert.filters.highlight import Highlight2HTML
            from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

            info = nb.metadata.get("language_info", {})
            lexer = info.get("pygments_lexer", info.get("name", None))
            resources = self._init_resources(resources)
            self.register_filter("highlight_code", self.filters.get("highlight_code",
                                                                    Highlight2HTML(pygments_lexer=lexer, parent=self)))
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata,
                                                                           parent=self, resources=resources))
            page, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            return accessible(page), resources

    return FeedbackExporter


NO_ALT = "No description has been provided for this image"  # nbconvert's words for a picture without one
_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)")
_KEYBOARD_STOP = re.compile(r'(<div class="(?:jp-Cell-inputWrapper|[^"]*\bjp-OutputArea-output\b[^"]*)")')


def accessible(page: str) -> str:
    """What nbconvert's HTMLExporter adds with BeautifulSoup: alternative text on every picture without any, and
    a keyboard stop on every input and output area (a reader scrolls a wide one from the keyboard)."""
    page = _IMG_WITHOUT_ALT.sub(f'<img alt="{NO_ALT}"', page)
    return _KEYBOARD_STOP.sub(r'\1 tabindex="0"', page)


FEEDBACK_EXPORTER = "g2c.grading.feedback.FeedbackExporter"  # nbgrader_config.py's GenerateFeedback.exporter_class


def __getattr__(name: str):
    if name == "FeedbackExporter":  # for traitlets' import of FEEDBACK_EXPORTER
        return _exporter_class()
    raise AttributeError(name)


@functools.cache
def _exporter_class():
    return _feedback_exporter_class()


@functools.cache
def _page_exporter():
    """One exporter per process: its templates are found and compiled once, not once per page (0.1 s each)."""
    return _exporter_class()()


def feedback_html(autograded: nbformat.NotebookNode, scores: dict[str, float | None], reasons: dict[str, list[str]],
                  late_penalty: float = 0.0, comments: dict[str, str] | None = None, seconds_late: float = 0.0) -> str:
    """The student's feedback page: their notebook, hidden tests cut, lost points explained.

    Rendered in a child process bounded in time and memory (:func:`rendered_in_child`); when it
    fails, a plain page with the same summary: a page never changes a score or a status.
    """
    nb = redact(autograded, scores, reasons, late_penalty, comments, seconds_late)
    page = rendered_in_child(nb)
    return page if page is not None else plain_page(nb)


RENDER_SECONDS = 30.0  # an honest page renders in about 0.3 s
RENDER_MEMORY_MB = 1024  # address space the rendering child may add to its parent's
MAX_PAGE_BYTES = 64 * 2**20
FALLBACK_NOTE = ("Your notebook could not be shown on this page (rendering it took longer than {seconds:g} s or more than "
                 "{memory} MB). Your score and the reasons above are not affected.")


# One pixel: the warm-up page carries a picture, as a student's does.
_PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


@functools.cache
def _warm_exporter() -> None:
    """Render a page of every kind of cell and output here, once, so that each forked child only renders: its
    first page paid for the templates, pygments' Python lexer, the highlighting CSS and the HTML passes (0.9 s of
    1.3 s a page, in every child)."""
    new = nbformat.v4
    code = new.new_code_cell("import torch\nprint(torch.ones(2))  # warm", outputs=[
        new.new_output("stream", name="stdout", text="tensor([1., 1.])\n"),
        new.new_output("execute_result", data={"text/plain": "1"}, execution_count=1),
        new.new_output("display_data", data={"image/png": _PIXEL, "text/plain": "<Figure>"}),
        new.new_output("error", ename="ValueError", evalue="warm", traceback=["\x1b[0;31mValueError\x1b[0m: warm"])])
    text = new.new_markdown_cell("# Warm\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n*em* `code` [link](https://example.org) $x^2$")
    notebook = new.new_notebook(cells=[text, code], metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                              "display_name": "Python 3"}})
    _page_exporter().from_notebook_node(notebook)


def rendered_in_child(nb: nbformat.NotebookNode) -> str | None:
    """The page of ``nb`` rendered in a forked child (RENDER_SECONDS, RENDER_MEMORY_MB, MAX_PAGE_BYTES), or None.

    Rendering is work on hostile input (nbconvert, mistune, pygments, bleach over student text):
    a fork of this already warm process costs a few milliseconds, not a fresh interpreter.
    """
    _warm_exporter()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to spare: the plain page
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: render, write, leave without running the parent's exit handlers
        status = 1
        try:
            os.close(read_end)
            gc.disable()  # a collection would walk (and copy, page by page) the parent's whole heap: torch, nbgrader
            _limit_address_space(RENDER_MEMORY_MB)
            body, _ = _page_exporter().from_notebook_node(nb)
            with os.fdopen(write_end, "wb") as out:
                out.write(body.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    data, complete = _read_until(read_end, time.monotonic() + RENDER_SECONDS)
    if not complete:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return data.decode() if complete and status == 0 else None


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything written to ``fd`` until it closes (True), or what came before the deadline or the size cap (False)."""
    chunks, size = [], 0
    try:
        while size <= MAX_PAGE_BYTES:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return b"", False
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"", False
    finally:
        os.close(fd)


def _limit_address_space(extra_mb: int) -> None:
    import resource

    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = current + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def plain_page(nb: nbformat.NotebookNode) -> str:
    """The fallback page: the summary (total and lost points, as text) and why the notebook is not shown."""
    summary = nb.cells[0].source if nb.cells else ""
    note = FALLBACK_NOTE.format(seconds=RENDER_SECONDS, memory=RENDER_MEMORY_MB)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Feedback</title></head><body><main>"
            f"<pre>{html.escape(summary)}</pre><p>{html.escape(note)}</p></main></body></html>\n")


def standing(submission, notebook_name: str) -> dict:
    """What the gradebook holds now for one submitted notebook, everything a feedback page and grades.csv say:
    cell scores (:func:`score_of`), hand-grading comments by cell name, the late penalty, seconds late and the
    server's timestamp. The one reader for ``g2c autograde`` and ``nbgrader generate_feedback``."""
    notebook = next(nb for nb in submission.notebooks if nb.name == notebook_name)
    return {"cells": {g.name: score_of(g) for g in notebook.grades},
            "comments": {c.name: c.manual_comment for c in notebook.comments if c.manual_comment and c.manual_comment.strip()},
            "late_penalty": notebook.late_submission_penalty or 0.0,
            "seconds_late": max(0.0, float(submission.total_seconds_late or 0)),
            "timestamp": submission.timestamp.isoformat(sep=" ") if submission.timestamp else ""}


def score_of(grade) -> float | None:
    """nbgrader's rule, a hand grade wins over the autograde, except that a written answer no one
    has graded yet is None (pending), where nbgrader's ``Grade.score`` says 0."""
    return grade.manual_score if grade.manual_score is not None else grade.auto_score
