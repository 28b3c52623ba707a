"""The built book in a real browser (Debian's chromium via playwright), opened from file:// with
every request to another host refused: what a reader with no network gets.

Run by ``make test-book`` (which builds the book and installs chromium first); the plain
``pytest`` run skips it because it needs both.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

HTML = Path(__file__).resolve().parents[1] / "_build" / "html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
MATH_IN_HTML = re.compile(r'class="math notranslate')  # Sphinx's markup for every formula

pytestmark = pytest.mark.skipif(
    os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book and chromium: run `make test-book`"
)


NOT_PAGES = {"_static", "_sources", "mathjax", "html-manager", "requirejs"}  # theme templates, vendored files


def pages() -> list[Path]:
    """Every page a reader can open: the chapters, index, search and genindex."""
    found = sorted(p for p in HTML.rglob("*.html") if not NOT_PAGES & set(p.relative_to(HTML).parts))
    assert found, f"no pages under {HTML}: run `make book` first"
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test-book does it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """One page load that records every failed, refused-remote and console-error event."""

    def __init__(self, browser, path: Path, query: str = ""):
        self.remote: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.route("**/*", self._route)
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.as_uri() + query, wait_until="load")

    def _route(self, route) -> None:
        url = route.request.url
        if urlparse(url).scheme in LOCAL_SCHEMES:
            route.continue_()
        else:
            self.remote.append(url)
            route.abort()

    def settle(self) -> None:
        self.page.wait_for_load_state("networkidle")

    def close(self) -> None:
        self.context.close()


@pytest.mark.parametrize("path", pages() if os.environ.get("G2C_TEST_BOOK") == "1" else [], ids=lambda p: str(p.relative_to(HTML)))
def test_page_is_self_contained_and_renders_math(browser, path: Path) -> None:
    visit = Visit(browser, path)
    try:
        has_math = bool(MATH_IN_HTML.search(path.read_text(encoding="utf-8")))
        if has_math:
            visit.page.wait_for_selector("mjx-container", state="attached", timeout=15_000)
        visit.settle()
        assert visit.remote == [], f"{path.name} asked another host: {visit.remote}"
        assert visit.failed == [], f"{path.name} had failed requests: {visit.failed}"
        assert visit.errors == [], f"{path.name} raised in the browser: {visit.errors}"
        if has_math:
            rendered = visit.page.locator("mjx-container").count()
            assert rendered > 0
    finally:
        visit.close()


AXE = HTML.parent / "vendor" / ".axe" / "axe.min.js"  # vendored by book/_vendor/fetch.sh, never published
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
RUN_AXE = "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"


def axe_violations(page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page as shown now: one line per element.

    Each line names the rule, the element (CSS selector) and axe's summary of what fails, so a
    failing test says what to fix and where.
    """
    assert AXE.exists(), f"{AXE} is missing: `make book` vendors axe-core"
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate(RUN_AXE, WCAG_AA)
    return [
        f"{v['id']} ({v['impact']}): {' '.join(map(str, node['target']))} {node['html'][:120]!r}: "
        + " / ".join(line.strip() for line in node["failureSummary"].splitlines()[1:3])
        for v in result["violations"] for node in v["nodes"]
    ]


def rendered(visit: Visit, path: Path) -> None:
    """Wait until the page's math and widgets are drawn: axe must see what a reader gets."""
    html = path.read_text(encoding="utf-8")
    if MATH_IN_HTML.search(html):
        visit.page.wait_for_selector("mjx-container", state="attached", timeout=15_000)
    views = len(WIDGET_VIEW.findall(html))
    if views:
        visit.page.locator(".widget-subarea").nth(views - 1).locator(".noUi-handle").wait_for(state="visible", timeout=15_000)
    visit.settle()


@pytest.mark.parametrize("path", pages() if os.environ.get("G2C_TEST_BOOK") == "1" else [], ids=lambda p: str(p.relative_to(HTML)))
def test_page_meets_wcag_21_aa(browser, path: Path) -> None:
    """axe-core finds no WCAG 2.0/2.1 A or AA violation on the rendered page (math and widgets drawn)."""
    visit = Visit(browser, path)
    try:
        rendered(visit, path)
        found = axe_violations(visit.page)
        assert found == [], f"{path.relative_to(HTML)}: {len(found)} WCAG violations:\n" + "\n".join(found)
    finally:
        visit.close()


def test_axe_sees_missing_alt_text_labels_and_contrast(browser, tmp_path: Path) -> None:
    """The audit above would catch the failures the book used to have."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<html lang="en"><head><title>bad</title></head><body><main><h1>bad</h1>'
        '<img src="data:image/png;base64,iVBORw0KGgo="><input type="checkbox">'
        '<div role="slider" tabindex="0" aria-valuenow="1" aria-valuemin="0" aria-valuemax="2"></div>'
        '<p style="color:#999;background:#fff">faint</p></main></body></html>',
        encoding="utf-8",
    )
    visit = Visit(browser, page)
    try:
        rules = {line.split(" ", 1)[0] for line in axe_violations(visit.page)}
        assert rules == {"image-alt", "label", "aria-input-field-name", "color-contrast"}, rules
    finally:
        visit.close()


def test_every_chapter_is_tested() -> None:
    """The parametrized test above really covers the book: every chapter page exists."""
    names = {p.name for p in pages()}
    for chapter in ("intro.html", "learning-rates.html", "optimizers.html", "clipping.html", "schedules.html",
                    "reading-curves.html", "pitfalls.html", "checklist.html", "search.html"):
        assert chapter in names


WIDGET_STATE = re.compile(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', re.S)
WIDGET_VIEW = re.compile(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>', re.S)
WIDGET_CHAPTERS = {"learning-rates.html", "optimizers.html", "clipping.html", "schedules.html", "reading-curves.html"}


def static_widgets(html: str) -> list[list[str]]:
    """Each widget view embedded in a page: its Stack's PNG frames (base64), in slider order.

    Read from the embedded widget state, so the browser test knows which picture every slider
    position must show without trusting the page's own JavaScript.
    """
    views = WIDGET_VIEW.findall(html)
    if not views:
        return []
    state = json.loads(WIDGET_STATE.search(html).group(1))["state"]

    def model(ref: str) -> dict:
        return state[ref.removeprefix("IPY_MODEL_")]

    def png(ref: str) -> str:
        page = model(ref)
        if page["model_name"] != "ImageModel":  # a frame with a caption: VBox([Image, caption])
            page = model(page["state"]["children"][0])
        (buffer,) = page["buffers"]
        return buffer["data"]

    widgets = []
    for view in views:
        root = state[json.loads(view)["model_id"]]
        (stack,) = (model(c) for c in root["state"]["children"] if model(c)["model_name"] == "StackModel")
        widgets.append([png(child) for child in stack["state"]["children"]])
    return widgets


def widget_pages() -> list[Path]:
    return [p for p in pages() if WIDGET_VIEW.search(p.read_text(encoding="utf-8"))]


SHOWN_PICTURE = """async area => {
    const shown = [...area.querySelectorAll('img.widget-image')].filter(img => img.offsetParent !== null);
    if (shown.length !== 1) return `${shown.length} visible pictures`;
    const bytes = new Uint8Array(await (await fetch(shown[0].src)).arrayBuffer());
    let text = '';
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
}"""


def wait_for_picture(area, frame: str, timeout: float = 5.0) -> str:
    """The base64 PNG the widget shows once it equals ``frame`` (or whatever it shows at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = area.evaluate(SHOWN_PICTURE)
        if shown == frame or time.monotonic() > deadline:
            return shown
        area.page.wait_for_timeout(50)  # lets playwright serve the page's requests meanwhile


def test_every_widget_chapter_is_tested() -> None:
    """The slider test below really covers the book: each widget chapter embeds its widget."""
    assert {p.name for p in widget_pages()} == WIDGET_CHAPTERS


@pytest.mark.parametrize("path", widget_pages() if os.environ.get("G2C_TEST_BOOK") == "1" else [], ids=lambda p: str(p.relative_to(HTML)))
def test_every_static_widget_slider_switches_the_picture(browser, path: Path) -> None:
    """Keyboard on the real slider, through every position: each shows its own precomputed frame.

    The picture changes only through the jslink between the slider and the Stack of frames,
    in the browser; no kernel runs behind a static page.
    """
    widgets = static_widgets(path.read_text(encoding="utf-8"))
    visit = Visit(browser, path)
    try:
        page = visit.page
        areas = page.locator(".widget-subarea")  # where the widget manager renders each embedded view
        areas.nth(len(widgets) - 1).locator(".noUi-handle").wait_for(state="visible", timeout=15_000)
        assert areas.count() == len(widgets)
        for n, frames in enumerate(widgets):
            area = areas.nth(n)
            handle = area.locator(".noUi-handle")
            assert handle.count() == 1, f"widget {n}: expected one slider"
            handle.focus()
            page.keyboard.press("Home")
            for i, frame in enumerate(frames):
                if i:
                    page.keyboard.press("ArrowRight")
                assert float(handle.get_attribute("aria-valuenow")) == i, f"widget {n}: the slider did not move to {i}"
                shown = wait_for_picture(area, frame)
                seen = f"frame {frames.index(shown)}" if shown in frames else repr(shown[:60])
                assert shown == frame, f"widget {n} on {path.name}: slider at {i} shows {seen}, not frame {i}"
        visit.settle()
        assert visit.remote == [], f"{path.name} asked another host: {visit.remote}"
        assert visit.failed == [], f"{path.name} had failed requests: {visit.failed}"
        assert visit.errors == [], f"{path.name} raised in the browser: {visit.errors}"
    finally:
        visit.close()


def test_search_works_offline(browser) -> None:
    visit = Visit(browser, HTML / "search.html", "?q=AdamW")
    try:
        summary = visit.page.locator("#search-results .search-summary")
        summary.wait_for(timeout=15_000)
        visit.page.wait_for_function(
            "() => /found \\d+ page/i.test(document.querySelector('#search-results .search-summary').textContent)",
            timeout=15_000,
        )
        results = visit.page.locator("#search-results li")
        assert results.count() >= 3, f"AdamW appears on several chapters: {summary.text_content()!r}"
        assert visit.remote == [] and visit.failed == []
    finally:
        visit.close()


def test_a_visit_catches_remote_missing_and_erroring_pages(browser, tmp_path: Path) -> None:
    """The checks above would see a CDN script, a missing local file and a script error."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><script src="https://cdn.jsdelivr.net/npm/x.js"></script>'
        '<img src="missing.png"><script>undefinedFunction()</script></body></html>',
        encoding="utf-8",
    )
    visit = Visit(browser, page)
    try:
        visit.settle()
        assert visit.remote == ["https://cdn.jsdelivr.net/npm/x.js"]
        assert any("missing.png" in failure for failure in visit.failed)
        assert any("undefinedFunction" in error for error in visit.errors)
    finally:
        visit.close()
