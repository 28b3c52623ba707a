"""The built book carries the whole module: every section, the restored formulas, and figures
from real runs with captions and alt text (and no figure that failed to render)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

HTML = Path(__file__).resolve().parents[1] / "_build" / "html"

pytestmark = pytest.mark.skipif(
    os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book: run `make test-book`"
)

# Every section of the module text (seed: module-03b-training), as the book titles it.
SECTIONS = [
    "Before you start", "Where this fits", "The big idea", "Learning rates", "The learning-rate sweep",
    "SGD: one global scale", "AdamW’s effective step size", "Decoupled weight decay",
    "SGD vs AdamW under matched conditions", "Norms and scale", "Gradient clipping", "Warmup and cosine decay",
    "Reading curves", "Regularization and dropout", "Concepts to internalize", "What we don’t cover",
    "What you’ll build", "How to run the tests", "Exercises", "Pitfalls to expect", "CPU notes", "M-series notes", "Reading",
    "Deliverable checklist",
]
FIGURES = {"fig-lr-sweep", "fig-sgd-vs-adamw", "fig-clipping", "fig-schedule", "fig-curve-shapes", "fig-layer-scales",
           "fig-clip-spike", "fig-warmup-runs", "fig-cosine-runs", "fig-weight-decay", "fig-early-stopping"}


def book_html() -> dict[str, str]:
    pages = {p.name: p.read_text(encoding="utf-8") for p in sorted((HTML / "book").glob("*.html"))}
    assert pages, f"no pages under {HTML / 'book'}: run `make book`"
    return pages


def test_every_section_of_the_module_is_a_heading() -> None:
    headings = set()
    for html in book_html().values():
        for match in re.finditer(r"<h[1-3][^>]*>(.*?)</h[1-3]>", html, re.S):
            text = re.sub(r"<[^>]+>|¶|#", "", match.group(1))
            headings.add(re.sub(r"^[\d.]+\s*", "", " ".join(text.split())).replace("'", "’"))
    missing = [s for s in SECTIONS if s not in headings]
    assert missing == [], f"sections missing from the book: {missing}"


def test_at_least_twelve_numbered_formulas() -> None:
    labels = {m for html in book_html().values() for m in re.findall(r'id="equation-(eq-[\w-]+)"', html)}
    assert len(labels) >= 12, sorted(labels)
    for needed in ("eq-sgd", "eq-adamw-m", "eq-adamw-v", "eq-adamw-bias", "eq-adamw-step", "eq-effective-step",
                   "eq-decoupled-decay", "eq-l2-norm", "eq-global-norm", "eq-clip-coef", "eq-clip", "eq-warmup",
                   "eq-cosine", "eq-floor", "eq-quadratic-step", "eq-momentum-gain", "eq-bias-derivation", "eq-spike-bound"):
        assert needed in labels


def test_the_introduction_numbers_no_equation_and_defines_the_terms_first() -> None:
    """Chapter equations are numbered 1.1, 2.2, ...; unnumbered introduction equations would read (1)-(3) beside them.
    The five terms, used from chapter 1 on, are each defined in the introduction."""
    from g2c.widgets import KINDS

    intro = book_html()["intro.html"]
    assert 'id="equation-' not in intro
    definitions = re.findall(r'<dt[^>]*>.*?term-([\w-]+).*?</dt>', intro, re.S)
    assert set(KINDS) <= set(definitions), definitions


def test_the_exercises_page_gives_the_kit_with_its_tests_and_commands() -> None:
    """The book-only route: the notebook, its conftest and its tests, each the release's file, and the commands."""
    root = HTML.parent.parent
    page = book_html()["exercises.html"]
    links = re.findall(r'<a class="reference download internal"[^>]*href="([^"]+)"', page)
    for name, release in (("training.ipynb", "training.ipynb"), ("conftest.py", "conftest.py"),
                          ("test_training.py", "tests/test_training.py")):
        (link,) = [link for link in links if link.endswith("/" + name)]
        assert (HTML / "book" / link).read_bytes() == (root / "release" / "03b-training" / release).read_bytes()
    words = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    for command in ("pip install -r requirements.txt -e .", "jupyter notebook training.ipynb", "pytest tests/test_training.py"):
        assert command in words, command


def test_figures_are_rendered_images_with_caption_and_alt_text() -> None:
    seen = set()
    for html in book_html().values():
        assert "&lt;Figure size" not in html, "a figure rendered as text instead of an image"
        for figure in re.finditer(r'<figure[^>]*id="([\w-]+)"[^>]*>(.*?)</figure>', html, re.S):
            name, body = figure.groups()
            img = re.search(r'<img[^>]*alt="([^"]{40,})"[^>]*src="[^"]+\.png"', body) or re.search(
                r'<img[^>]*src="[^"]+\.png"[^>]*alt="([^"]{40,})"', body)
            assert img, f"{name}: no PNG with a descriptive alt text"
            assert re.search(r"<figcaption>.{40,}</figcaption>", body, re.S), f"{name}: no caption"
            seen.add(name)
    assert FIGURES <= seen, f"missing figures: {FIGURES - seen}"


WIDGET_CHAPTERS = ("learning-rates.html", "optimizers.html", "clipping.html", "schedules.html", "reading-curves.html")
PAGE_BUDGET = 3_000_000  # bytes of HTML per page: embedded widget frames make the heavy ones


@pytest.mark.parametrize("name", WIDGET_CHAPTERS)
def test_static_widget_state_is_embedded(name: str) -> None:
    html = book_html()[name]
    assert html.count('type="application/vnd.jupyter.widget-view+json"') == 1, "one g2c static widget per chapter"
    assert 'application/vnd.jupyter.widget-state+json' in html
    assert html.count('class=\\"g2c-frame\\"') >= 5, "one precomputed frame (an <img> with alt text) per slider position"
    assert '"model_name": "LinkModel"' in html, "the slider is jslinked to the frames"
    for script in re.findall(r"<script[^>]*src=[^>]*>", html):
        assert "crossorigin" not in script and "integrity" not in script, script


def test_every_page_stays_light() -> None:
    sizes = {name: len(html.encode()) for name, html in book_html().items()}
    assert max(sizes.values()) < PAGE_BUDGET, sizes


def test_the_classifiers_thresholds_are_printed_from_the_code() -> None:
    """Reading curves shows each named threshold of g2c.widgets.diagnosis with its value, as the code holds it."""
    from g2c.widgets.diagnosis import THRESHOLDS

    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", book_html()["reading-curves.html"], re.S):
        cells = [" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if len(cells) == 3:
            rows[cells[0]] = cells[1]
    assert rows == {name: f"{value:g}" for name, (value, _) in THRESHOLDS.items()}
