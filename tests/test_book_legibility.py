"""Figure text is legible in the built book: measured in Chromium, on a normal and a HiDPI screen.

Every figure PNG (book figures and static-widget frames) records the font size of its smallest
text in image pixels (tEXt ``min-font-px``, written by ``g2c.widgets.render.to_png`` and
``book/_figures.png_bytes``). The browser lays the page out; the test reads how wide each picture
is drawn (CSS px) against its pixel width, so the smallest text's rendered height in CSS px is
``min-font-px * drawn / natural``, and compares it with the body text's computed font size.
Every quantity is in CSS px or image pixels, which a screen's device scale factor does not change
(the pictures have no srcset): one layout, at a HiDPI screen's factor of 2, serves both screens.
Book figures must also be 2x PNGs (sharp on HiDPI screens) drawn at their intended size.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_book_browser import CHROMIUM, CHROMIUM_ARGS, HTML, PATIENCE_MS

FLOOR = 0.8  # of the body text
SCREEN_SCALE = 2  # a HiDPI screen; the CSS px measured are those of a normal one too
FIGURE_PAGES = ("learning-rates", "optimizers", "clipping", "schedules", "reading-curves", "regularization")

pytestmark = pytest.mark.skipif(
    os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book and chromium: run `make test-book`"
)


def min_font_px(png: bytes) -> float:
    """The ``min-font-px`` text chunk of a PNG (missing: the figure was not made by the book's helpers)."""
    from PIL import Image

    text = Image.open(io.BytesIO(png)).text
    assert "min-font-px" in text, "a figure PNG without its min-font-px record"
    return float(text["min-font-px"])


FRAME_PNG = re.compile(r'<img class="g2c-frame"[^>]* src="data:image/png;base64,([^"]+)"')


def widget_frames(page: str) -> list[bytes]:
    """Every PNG frame embedded in the page's widget state."""
    match = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', page, re.S)
    if not match:
        return []
    state = json.loads(match.group(1))["state"]
    values = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]  # frames are Pictures
    return [base64.b64decode(data) for value in values for data in FRAME_PNG.findall(str(value))]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


MEASURE = """() => {
    const body = parseFloat(getComputedStyle(document.querySelector('article p, main p')).fontSize);
    const shown = img => img.offsetParent !== null && img.clientWidth > 0;
    const figures = [...document.querySelectorAll('figure img, .cell_output img')]
        .filter(img => !img.classList.contains('g2c-frame') && shown(img))
        .map(img => ({src: img.src, drawn: img.getBoundingClientRect().width, natural: img.naturalWidth}));
    const widgets = [...document.querySelectorAll('img.g2c-frame')].filter(shown)
        .map(img => ({drawn: img.getBoundingClientRect().width, natural: img.naturalWidth}));
    return {body, figures, widgets};
}"""


@pytest.mark.parametrize("name", FIGURE_PAGES)
def test_no_figure_text_below_the_floor(browser, name: str) -> None:
    path = HTML / "book" / f"{name}.html"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=SCREEN_SCALE)
    try:
        context.set_default_timeout(PATIENCE_MS)
        page = context.new_page()
        page.goto(path.as_uri(), wait_until="load")
        if widget_frames(path.read_text(encoding="utf-8")):  # a page with a widget: wait until it is drawn
            page.locator("img.g2c-frame").first.wait_for(state="visible")
        found = page.evaluate(MEASURE)
    finally:
        context.close()
    floor = FLOOR * found["body"]
    assert found["figures"] or found["widgets"], f"{name}: no figure measured"
    for figure in found["figures"]:
        png = Path(unquote(urlparse(figure["src"]).path)).read_bytes()
        smallest = min_font_px(png) * figure["drawn"] / figure["natural"]
        assert smallest >= floor, (
            f"{name}: {figure['src'].rsplit('/', 1)[-1]} has text {smallest:.1f} px tall, below {floor:.1f} px"
        )
        assert figure["natural"] >= 1.9 * figure["drawn"], (
            f"{name}: a figure is not a 2x PNG ({figure['natural']} px drawn at {figure['drawn']:.0f})"
        )
    frames = widget_frames(path.read_text(encoding="utf-8"))
    for widget in found["widgets"]:
        scale = widget["drawn"] / widget["natural"]
        assert widget["natural"] >= 1.9 * widget["drawn"], f"{name}: a widget frame is not a 2x PNG"
        smallest = min(min_font_px(png) for png in frames) * scale  # every frame is the same size as the one shown
        assert smallest >= floor, f"{name}: widget text {smallest:.1f} px tall, below {floor:.1f} px"


def test_the_record_is_the_smallest_text(tmp_path) -> None:
    """The measurement itself: a figure with one 6 pt label records 6 pt in pixels."""
    from matplotlib.figure import Figure

    from g2c.widgets.render import to_png

    fig = Figure(figsize=(4, 3), dpi=100)
    ax = fig.subplots()
    ax.set_title("big", fontsize=14)
    ax.text(0.5, 0.5, "tiny", fontsize=6)
    assert min_font_px(to_png(fig, dpi=100)) == pytest.approx(6 * 100 / 72, abs=0.01)
