"""Intake (g2c/grading/sandbox/intake.py), in process: hostile markup is inert wherever it is rendered, honest
markdown reads the same, rendering is bounded and a failed render changes nothing but the page.

Each payload is rendered the way formgrader renders a markdown cell (``markdown2html`` then
``strip_files_prefix``) and the way the feedback page does (g2c's page, nbconvert's lab template),
and the HTML is read by a parser of this test's own: only the tags and attributes markdown makes,
no handler, no style but table alignment, no link of another scheme, no acting MathJax command in
the text. The same corpus is tried in a real browser, logged in as the instructor, in
tests/test_formgrader_browser.py.
"""

from __future__ import annotations

import copy
import html
import json
import re
import time
from html.parser import HTMLParser

import nbformat
import pytest
from conftest import SOURCE

from g2c.grading import feedback
from g2c.grading.sandbox import intake

# What every payload does if it runs: a request the browser test (tests/test_formgrader_browser.py) looks for
ACT = "fetch('/formgrader/api/g2c-pwned')"
MARKER = "g2c-pwned"


def armed(payloads: dict) -> dict:
    """The payloads with their script doing ACT."""
    text = json.dumps(payloads).replace("parent.document.body.dataset.pwned", "document.body.dataset.pwned")
    for action in ("document.body.dataset.pwned = 1", "document.body.dataset.pwned=1", "alert(1)", "alert(2)", "alert(3)"):
        text = text.replace(action, ACT.replace("'", "\\u0027"))
    return json.loads(text)


# markdown a student may write in any cell: each would act in a browser if rendered as written
MARKDOWN_PAYLOADS = {
    "raw img onerror": "<img src=x onerror=\"fetch('/formgrader/api/g2c-pwned')\">",
    "script": "<script>document.body.dataset.pwned = 1</script>",
    "svg script": "<svg><script>document.body.dataset.pwned = 1</script></svg>",
    "svg onload": "<svg onload=\"document.body.dataset.pwned = 1\"></svg>",
    "iframe": "<iframe src=\"javascript:parent.document.body.dataset.pwned = 1\"></iframe>",
    "iframe srcdoc": "<iframe srcdoc=\"<script>parent.document.body.dataset.pwned=1</script>\"></iframe>",
    "html link": "<a href=\"javascript:document.body.dataset.pwned = 1\">click</a>",
    "markdown link": "[click](javascript:document.body.dataset.pwned=1)",
    "markdown link, spaced and cased": "[click](  JaVaScRiPt:document.body.dataset.pwned=1)",
    "markdown link, entity": "[click](javascript&#58;document.body.dataset.pwned=1)",
    "markdown link in brackets": "[click](<javascript:document.body.dataset.pwned=1>)",
    "vbscript link": "[click](vbscript:msgbox)",
    "data image": "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "data link": "[x](data:text/html,<script>alert(1)</script>)",
    "image beacon": "![x](/formgrader/api/g2c-pwned-image)",
    "autolink": "<javascript:document.body.dataset.pwned=1>",
    "reference definition": "[click][r]\n\n[r]: javascript:document.body.dataset.pwned=1",
    "reference image": "![x][r]\n\n[r]: /formgrader/api/g2c-pwned-image",
    "style block": "<style>body { display: none }</style>",
    "style attribute": "<div style=\"position:fixed;top:0;left:0;width:100%;height:100%\">covered</div>",
    "comment": "<!-- <script>alert(1)</script> -->",
    "object": "<object data=\"javascript:alert(1)\"></object>",
    "form": "<form action=\"/formgrader/api/assignment/x\" method=post><button>save</button></form>",
    "meta refresh": "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "escaped backslash then tag": "\\\\<img src=x onerror=alert(1)>",
    "entity tag": "&lt;img src=x onerror=alert(1)&gt;",
    "in a list": "- item <img src=x onerror=alert(1)>\n- [x](javascript:alert(1))",
    "in a table": "| a | b |\n|---|---|\n| <img src=x onerror=alert(1)> | [x](javascript:alert(1)) |",
    "in a heading": "# <img src=x onerror=alert(1)>",
    "in a quote": "> <script>alert(1)</script>",
    "false code span": "`` a ` <img src=x onerror=alert(1)> ``",
    "unclosed code span": "` <img src=x onerror=alert(1)>",
    "false math": "\\(<img src=x onerror=alert(1)>\\)",
    "math with markup": "$<img src=x onerror=alert(1)>$ and \\\\(<img src=x onerror=alert(2)>\\\\)",
    "mathjax href": "$\\href{javascript:document.body.dataset.pwned=1}{click}$",
    "mathjax display": "$$\\unicode{x3C}\\class{x}{y}\\style{color:red}{z}\\cssId{a}{b}\\data{x}{y}$$",
    "mathjax require": "$\\require{action}\\toggle{a}{b}\\endtoggle$",
    "mathjax escaped backslash": "$\\\\\\href{javascript:alert(1)}{x}$",
    "mathjax entity": "$&#92;href{javascript:alert(1)}{x}$ &#92;href{javascript:alert(2)}{y}",
    "mathjax environment": "\\begin{align}\\href{javascript:alert(1)}{x}\\end{align}",
    "attachment image": "![plot](attachment:missing.png)",
    "nested brackets": "[" * 60_000 + "x" + "]" * 60_000,  # 120 kB
    "nested links": "[a](" * 30_000,
    "emphasis": "*" * 40_000 + "a" + "*" * 40_000,
}
MARKDOWN_PAYLOADS = armed(MARKDOWN_PAYLOADS)
HONEST = {
    "heading and emphasis": "## Why AdamW\n\nIt *decouples* weight decay; **bias correction** matters early.",
    "list": "1. warmup\n2. cosine decay\n   - to `min_lr`\n\n- [x] done\n- [ ] todo",
    "code": "```python\nopt = AdamW(params, lr=1e-3)  # x[i] <= y & z\n```\n\nInline `x[i] <= y`.",
    "math": "$\\theta \\leftarrow \\theta - \\eta\\lambda\\theta$ and $$\\hat m_t = \\frac{m_t}{1-\\beta_1^t}$$",
    "latex math": "\\\\(a < b\\\\) and \\begin{align}a &= b\\end{align}",
    "table": "| lr | loss |\n|---:|:---:|\n| 1e-3 | 0.4 |",
    "link": "See [the paper](https://arxiv.org/abs/1711.05101), [mail me](mailto:x@y.org) or [top](#top).",
    "prose": "The loss diverges when lr > 1e-2 and warmup = 0 (see (a) and (b)); 3 < 4.",
    "quote and rule": "> a quote\n\n---\n\nafter",
}
# outputs a student's kernel may produce: each would act in a browser if shown as it came
OUTPUT_PAYLOADS = {
    "text/html": {"output_type": "display_data", "metadata": {},
                  "data": {"text/html": "<img src=x onerror=\"fetch('/formgrader/api/g2c-pwned')\">", "text/plain": "<HTML>"}},
    "image/svg+xml": {"output_type": "display_data", "metadata": {},
                      "data": {"image/svg+xml": "<svg onload=\"document.body.dataset.pwned=1\"></svg>"}},
    "application/javascript": {"output_type": "display_data", "metadata": {},
                               "data": {"application/javascript": "document.body.dataset.pwned = 1"}},
    "text/markdown": {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                      "data": {"text/markdown": "<img src=x onerror=alert(1)>"}},
    "text/latex": {"output_type": "display_data", "metadata": {}, "data": {"text/latex": "$\\href{javascript:alert(1)}{x}$"}},
    "widget": {"output_type": "display_data", "metadata": {},
               "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0}}},
    "png with an attribute": {"output_type": "display_data", "metadata": {},
                              "data": {"image/png": "iVBORw0KGgo=\" onerror=\"document.body.dataset.pwned=1"}},
    "png width metadata": {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="},
                           "metadata": {"image/png": {"width": "1 onerror=document.body.dataset.pwned=1"}}},
    "stream markup": {"output_type": "stream", "name": "stdout", "text": "<script>document.body.dataset.pwned=1</script>"},
    "error markup": {"output_type": "error", "ename": "<img src=x onerror=alert(1)>", "evalue": "<script>alert(2)</script>",
                     "traceback": ["<svg onload=alert(3)>"]},
}
OUTPUT_PAYLOADS = armed(OUTPUT_PAYLOADS)
PAYLOAD_COUNT = len(MARKDOWN_PAYLOADS) + len(OUTPUT_PAYLOADS)  # the browser test carries these and a hostile student id

TAGS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol",
        "li", "table", "thead", "tbody", "tr", "th", "td", "a", "div", "span", "input"}
ACTING = re.compile(r"\\(href|unicode|class|style|cssId|data|require)\b")


class Found(HTMLParser):
    """Every tag, attribute and text of an HTML fragment, as a browser's tokenizer would list them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.other: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.other.append(data)

    def problems(self) -> list[str]:
        found = [f"comment {c!r}" for c in self.other]
        for tag, attrs in self.tags:
            if tag not in TAGS:
                found.append(f"<{tag}>")
            for name, value in attrs.items():
                value = value or ""
                if name.startswith("on") or name in ("src", "srcdoc", "action", "formaction", "data"):
                    found.append(f"<{tag} {name}>")
                if name == "style" and not re.fullmatch(r"text-align:\s*(left|right|center);?", value):
                    found.append(f"<{tag} style={value!r}>")
                if name == "href" and not re.match(r"(https?:|mailto:|#|[\w./-]*($|[#?/]))", value.strip(), re.I):
                    found.append(f"<{tag} href={value!r}>")
        if ACTING.search("".join(self.text)):
            found.append("an acting MathJax command in the text")
        return found


def formgrader_html(source: str) -> str:
    """A markdown cell as nbgrader's formgrade template renders it."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    from nbconvert.filters.strings import strip_files_prefix

    return strip_files_prefix(markdown2html_mistune(source))


@pytest.mark.parametrize("name", MARKDOWN_PAYLOADS)
def test_hostile_markdown_renders_inert(name):
    raw = MARKDOWN_PAYLOADS[name]
    shown = intake.inert_markdown(raw)
    assert not Found(formgrader_html(shown)).problems(), shown[:300]
    assert intake.inert_markdown(shown) == shown  # intake again (nbgrader generate_feedback) changes nothing


def test_the_check_of_this_test_sees_the_payloads_as_they_came():
    """Without intake, nbconvert renders most of the corpus as live markup (the check is not blind)."""
    live = [name for name, raw in MARKDOWN_PAYLOADS.items() if len(raw) < 1000 and "attachment:" not in raw
            and Found(formgrader_html(raw)).problems()]
    assert len(live) >= 25, live


@pytest.mark.parametrize("name", HONEST)
def test_honest_markdown_reads_the_same(name):
    source = HONEST[name]
    assert formgrader_html(intake.inert_markdown(source)) == formgrader_html(source)


def test_the_course_markdown_passes_intake_unchanged():
    nb = nbformat.read(SOURCE, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert cells and [intake.inert_markdown(s) for s in cells] == cells


def test_links_keep_http_and_mailto_and_lose_the_other_schemes():
    shown = formgrader_html(intake.inert_markdown(
        "[a](https://example.org/x) [b](mailto:t@example.org) [c](javascript:alert(1)) [d](data:text/html,x) [e](vbscript:x)"))
    assert re.findall(r'href="([^"]*)"', shown) == ["https://example.org/x", "mailto:t@example.org", "#", "#", "#"]


def test_big_or_deeply_nested_markdown_is_cut_and_flattened_with_a_visible_note():
    shown = intake.inert_markdown(MARKDOWN_PAYLOADS["nested brackets"])
    assert len(shown) <= intake.MAX_CELL + len(intake.CUT) + 10 and "[g2c: the rest of this cell" in shown
    assert max(line.count("[") for line in shown.splitlines()) <= intake.MAX_BRACKETS_PER_LINE
    assert "[g2c: the rest of this cell" in html.unescape(formgrader_html(shown))


def small_notebook(*cells) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=list(cells), metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"}})


def test_a_notebooks_markdown_is_capped_as_a_whole():
    cells = [nbformat.v4.new_markdown_cell("honest words. " * 500) for _ in range(3 * intake.MAX_NOTEBOOK // 7000)]
    nb = intake.inert_notebook(small_notebook(*cells))
    shown = [c.source for c in nb.cells]
    assert sum(map(len, shown)) < intake.MAX_NOTEBOOK + 400 * len(shown)
    assert shown[0] == "honest words. " * 500 and all("limited to" in s for s in shown[-3:])


def hostile_notebook() -> nbformat.NotebookNode:
    """Every payload: markdown cells, outputs, a raw cell, metadata, attachments."""
    nb = small_notebook(nbformat.v4.new_code_cell("x = 1"))
    nb.metadata["title"] = "</title><script>document.body.dataset.pwned=1</script>"
    nb.metadata["kernelspec"]["display_name"] = "<img src=x onerror=alert(1)>"
    cells = [nbformat.v4.new_markdown_cell(raw) for raw in MARKDOWN_PAYLOADS.values()]
    cells[0].attachments = {"x.png": {"image/png": "iVBORw0KGgo="}}
    raw = nbformat.v4.new_raw_cell("<script>document.body.dataset.pwned=1</script>")
    raw.metadata["raw_mimetype"] = "text/html"
    code = nbformat.v4.new_code_cell("print('hi')", outputs=[nbformat.from_dict(o) for o in OUTPUT_PAYLOADS.values()])
    code.metadata.update(tags=["ok", "x\" onmouseover=\"alert(1)"], jupyter={"source_hidden": True})
    nb.cells[1:1] = [*cells, raw, code]
    return nb


def test_outputs_keep_text_and_pictures_only():
    outputs = intake.inert_outputs([nbformat.from_dict(o) for o in OUTPUT_PAYLOADS.values()])
    kinds = [(o.output_type, sorted(o.get("data", {}))) for o in outputs]
    assert kinds == [("display_data", ["text/plain"]), ("display_data", ["image/png"]), ("stream", []), ("error", [])]
    assert all(not o.get("metadata") for o in outputs)
    assert outputs[2].text == OUTPUT_PAYLOADS["stream markup"]["text"]  # text stays as written: templates escape it


def test_the_feedback_page_of_a_hostile_notebook_runs_only_its_own_scripts():
    """The lab template's own scripts (MathJax, require.js) and nothing a student wrote."""
    clean = feedback.feedback_html(small_notebook(), {}, {})
    page = feedback.feedback_html(intake.inert_notebook(hostile_notebook()), {}, {})
    scripts = re.compile(r"<script\b[^>]*>")
    assert sorted(scripts.findall(page)) == sorted(scripts.findall(clean))
    assert "pwned" not in "".join(re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S))
    body = Found(page.split("</head>", 1)[1])
    assert not [(tag, name) for tag, attrs in body.tags for name in attrs if name.startswith("on")]
    assert not [tag for tag, _ in body.tags if tag in ("svg", "iframe", "object", "form", "meta", "style", "embed")]
    images = [attrs.get("src", "") for tag, attrs in body.tags if tag == "img"]
    assert all(re.fullmatch(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=\s]+", src) for src in images), images
    assert "<title>" in page and "pwned" not in page.split("</title>")[0]


def test_a_notebooks_own_metadata_and_raw_cells_carry_nothing():
    nb = intake.inert_notebook(hostile_notebook())
    assert set(nb.metadata) == {"language_info"} or "title" not in nb.metadata
    assert "kernelspec" not in nb.metadata  # its display name was markup
    assert not any("attachments" in c for c in nb.cells) and not any(c.cell_type == "raw" for c in nb.cells)
    code = next(c for c in nb.cells if c.cell_type == "code" and c.source == "print('hi')")
    assert dict(code.metadata) == {"tags": ["ok"]}


def test_a_missing_attachment_no_longer_fails_the_page():
    nb = small_notebook(nbformat.v4.new_markdown_cell("My plot: ![plot](attachment:missing.png)"))
    assert feedback.rendered_in_child(copy.deepcopy(nb)) is None  # as submitted, nbconvert raises
    page = feedback.feedback_html(intake.inert_notebook(nb), {}, {})
    assert "My plot:" in page and feedback.FALLBACK_NOTE[:40] not in page


def test_exception_text_in_reasons_stays_text():
    reason = "raised ValueError: <img src=x onerror=alert(1)> $\\href{javascript:alert(2)}{x}$ &#92;href"
    nb = nbformat.read(SOURCE, as_version=4)
    graded = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
                  and not c.metadata["nbgrader"].get("solution"))
    grade_id = graded.metadata["nbgrader"]["grade_id"]
    nb = feedback.redact(nb, {grade_id: 0.0}, {grade_id: [reason]}, 0.0)
    summary = formgrader_html(nb.cells[0].source)
    assert not Found(summary).problems()
    assert "&lt;img src=x onerror=alert(1)&gt;" in summary


def test_student_ids_and_details_in_the_report_are_text():
    from g2c.grading import report

    evil = "<img src=x onerror=alert(1)>"
    rows = [{"student_id": evil, "status": "crashed", "timestamp": "", "late_penalty": "1", "minutes_late": "0.30", "score": "0",
             "max_score": "1", "timestamp_flag": ""}]
    results = {evil: {"student_id": evil, "status": "crashed", "detail": "<script>alert(2)</script>", "seconds": 1.0}}
    page = report._statuses(rows, results) + report._late(rows) + report._slowest(results) + report._students(rows, results, 1)
    assert "<img" not in page and "<script" not in page and page.count("&lt;img") == 4


# ---------------------------------------------------------------- the rendering child


def slow_exporter(*args, **kwargs):
    time.sleep(60)


def greedy_exporter(*args, **kwargs):
    return bytearray(2 * feedback.RENDER_MEMORY_MB * 2**20)


@pytest.mark.parametrize("render", [slow_exporter, greedy_exporter])
def test_a_render_that_stalls_or_grows_gives_the_plain_page(monkeypatch, render):
    monkeypatch.setattr(feedback, "RENDER_SECONDS", 1.0)
    feedback._warm_exporter()
    monkeypatch.setattr(feedback._page_exporter(), "from_notebook_node", render)
    start = time.monotonic()
    page = feedback.feedback_html(small_notebook(nbformat.v4.new_markdown_cell("# mine")), {}, {})
    assert time.monotonic() - start < 30
    assert "Total: " in page and "could not be shown" in page and "<script" not in page
