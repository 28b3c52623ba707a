"""The feedback page, in process: markdown rendered (not shown as tags), no script and nothing from outside,
every lost point explained (the grader's reasons and hand-grading comments), the total after the late
penalty and how late the submission was. The page in a real browser: tests/test_course_flow.py."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser

import nbformat
import pytest
from conftest import SOURCE, SPEC

from g2c.grading import feedback
from g2c.grading.sandbox import intake

WRITTEN = next(iter(SPEC.manual))  # a written answer, graded by hand


class Page(HTMLParser):
    """What a browser would show as text, and every tag with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text, self.tags, self._skip = [], [], 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)

    @property
    def visible(self) -> str:
        return "".join(self.text)


def a_test_cell() -> str:
    nb = nbformat.read(SOURCE, as_version=4)
    return next(c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
                and c.cell_type == "code" and not c.metadata["nbgrader"].get("solution"))


@pytest.fixture(scope="module")
def graded_page() -> tuple[str, str]:
    """The solution notebook's page, as a student late by 18 s whose written answer lost half a point sees it."""
    test_cell = a_test_cell()
    nb = intake.inert_notebook(nbformat.read(SOURCE, as_version=4))
    nb.cells.append(nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output("display_data", data={"text/html": (
        "<table><thead><tr><th>lr</th></tr></thead><tbody><tr><td>0.1</td></tr></tbody></table>"
        "<script>alert(1)</script><img src='http://example.org/x.png' onerror='alert(2)'>")})]))
    scores = {WRITTEN: SPEC.manual[WRITTEN] - 0.5, test_cell: 0.0}
    page = feedback.feedback_html(nb, scores, {test_cell: ["your loss rises after step 3"]}, late_penalty=0.25,
                                  comments={WRITTEN: "the <b>decay</b> is not scaled by the rate"}, seconds_late=18.0)
    return page, test_cell


def test_markdown_the_summary_and_tables_render_as_markup_not_as_tags(graded_page):
    page, _ = graded_page
    shown = Page(page.split("</head>", 1)[1])
    assert not re.search(r"<(h1|p|th|thead|td)\b", shown.visible), re.search(r".{60}<(h1|p|th)\b.{60}", shown.visible, re.S)
    tags = [tag for tag, _ in shown.tags]
    assert tags.count("h1") >= 2 and "p" in tags and tags.count("th") >= 4 and "thead" in tags  # summary and output tables
    assert "Feedback: Module 03B" in shown.visible


def test_the_page_runs_no_script_and_asks_for_nothing_outside(graded_page):
    page, _ = graded_page
    shown = Page(page)
    assert not [tag for tag, _ in shown.tags if tag in ("script", "iframe", "object", "embed", "link")]
    assert not [(tag, name) for tag, attrs in shown.tags for name in attrs if name.startswith("on")]
    fetched = [attrs[name] for tag, attrs in shown.tags for name in ("src", "srcset", "data") if name in attrs]
    assert all(url.startswith("data:") for url in fetched), fetched
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)  # no stylesheet fetches a font or an image either
    metas = [attrs for tag, attrs in shown.tags if tag == "meta"]
    (csp,) = [attrs["content"] for attrs in metas if attrs.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_every_lost_point_is_explained_and_the_total_is_after_the_penalty(graded_page):
    page, test_cell = graded_page
    text = " ".join(Page(page.split("</head>", 1)[1]).visible.split())
    points = SPEC.manual[WRITTEN]
    worth = f"{points:g} point{'s' if points != 1 else ''}"
    assert f"{WRITTEN} (written) scored {points - 0.5:g} of {worth}, lost 0.5 the grader: the <b>decay</b>" in text
    assert f"{test_cell} scored 0 of" in text and "your loss rises after step 3" in text
    total = points - 0.5 - 0.25
    assert re.search(rf"Total: {total:g} of \d+ points \(after a late-submission penalty of 0.25\)", text)
    assert "0.30 minutes late (18 s after the due date)" in text


def test_a_hand_graded_loss_without_a_comment_says_so():
    nb = feedback.redact(nbformat.read(SOURCE, as_version=4), {WRITTEN: 0.0}, {}, 0.0)
    row = next(line for line in nb.cells[0].source.splitlines() if f"`{WRITTEN}` (written)" in line)
    assert "graded by hand, no comment given" in row


def test_a_verdict_says_what_was_scored_not_points_lost():
    assert feedback.verdict_output(0.0, 1, ["why"]).text == "scored 0 of 1 point, lost 1:\n- why\n"
    assert feedback.verdict_output(1.5, 2, ["why"]).text.startswith("scored 1.5 of 2 points, lost 0.5:")
    assert feedback.verdict_output(2, 2, ["why"]).text == "passed: 2 of 2 points\n"


def test_the_allowlist_keeps_text_and_drops_what_acts():
    cleaned = feedback.clean_html("<h2 onclick='x()'>t</h2><p>a<script>b</script></p><a href='javascript:c()'>l</a>"
                                  "<img src='https://e.org/i.png'><img src='data:image/png;base64,AAAA'>")
    tags = Page(cleaned).tags
    assert tags == [("h2", {}), ("p", {}), ("a", {}), ("img", {}), ("img", {"src": "data:image/png;base64,AAAA"})]
    assert "t" in cleaned and "<script" not in cleaned and "javascript" not in cleaned


def test_pages_are_the_same_from_either_writer():
    """``g2c autograde``'s page and the one nbgrader's GenerateFeedback renders with the course's configuration
    (its "feedback" template, its emptied default preprocessors, the exporter nbgrader_config.py names)."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    config = Config()
    config.GenerateFeedback.exporter_class = feedback.FEEDBACK_EXPORTER
    converter = GenerateFeedback(coursedir=CourseDirectory(config=config), config=config)
    nbgraders = converter.exporter_class(parent=converter, config=converter.config)  # as its start() makes it
    nb = nbformat.read(SOURCE, as_version=4)
    ours = feedback.feedback_html(copy.deepcopy(nb), {}, {})
    theirs, _ = nbgraders.from_notebook_node(feedback.redact(copy.deepcopy(nb), {}, {}, 0.0))
    ids = re.compile(r'id="cell-id=[0-9a-f-]+"')  # the summary cell gets a new id each time
    assert ids.sub("", ours) == ids.sub("", theirs)


def test_the_page_keeps_what_nbconverts_closing_pass_adds_for_readers():
    """The page skips HTMLExporter's BeautifulSoup pass (38 % of its time) and must still give every picture
    alternative text and every input and output area a keyboard stop, as that pass does."""
    from nbconvert import HTMLExporter

    nb = nbformat.read(SOURCE, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("display_data", data={"image/png": feedback._PIXEL, "text/plain": "<Figure>"})]
    page = feedback.redact(nb, {}, {}, 0.0, {}, 0.0)
    exporter = feedback._page_exporter()
    ours, stock = exporter.from_notebook_node(page)[0], HTMLExporter.from_notebook_node(exporter, page)[0]

    def stops(html: str) -> tuple[int, int, int]:
        return (html.count('tabindex="0"'), len(re.findall(r"<img(?![^>]*\balt=)", html)), html.count(feedback.NO_ALT))

    assert stops(ours) == stops(stock) and stops(ours)[0] > 20 and stops(ours)[1:] == (0, 1)


def test_the_file_a_renamed_notebook_came_from_is_shown_as_text_under_the_title():
    """The file's name is the student's text: shown on one line, quoted, never as markup or a heading of its own."""
    hostile = "x <img src=x onerror=alert(1)>\n# forged **bold**.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("mine")])
    nb.metadata[feedback.HANDED_IN_KEY] = {"graded": hostile, "expected": "training.ipynb"}
    shown = Page(feedback.feedback_html(nb, {}, {}).split("</head>", 1)[1])
    text = " ".join(shown.visible.split())
    assert f"Graded from your file {hostile!r}, handed in instead of 'training.ipynb'" in text
    assert text.index("Graded from your file") < text.index("Total:")
    assert [tag for tag, _ in shown.tags].count("h1") == 1 and not [t for t, _ in shown.tags if t == "img"]


@pytest.mark.parametrize("edited", [None, "training (1).ipynb", {"graded": 1, "expected": "training.ipynb"}, {"graded": "a"}])
def test_no_file_line_unless_the_metadata_names_both_files(edited):
    nb = nbformat.v4.new_notebook()
    if edited is not None:
        nb.metadata[feedback.HANDED_IN_KEY] = edited
    assert "Graded from your file" not in feedback.redact(nb, {}, {}, 0.0).cells[0].source
