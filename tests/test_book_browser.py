"""The built book in a real browser (Debian's chromium via playwright), opened from file:// with
every request to another host refused: what a reader with no network gets.

Run by ``make test-book`` (which builds the book and installs chromium first); the plain
``pytest`` run skips it because it needs both.
"""

from __future__ import annotations

import os
import re
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


def test_every_chapter_is_tested() -> None:
    """The parametrized test above really covers the book: every chapter page exists."""
    names = {p.name for p in pages()}
    for chapter in ("intro.html", "learning-rates.html", "optimizers.html", "clipping.html", "schedules.html",
                    "reading-curves.html", "pitfalls.html", "checklist.html", "search.html"):
        assert chapter in names


def _visible_frame(page) -> str:
    """The src of the image the widget's Stack currently shows (a Stack renders only that child)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('img.widget-image')]
                 .filter(img => img.offsetParent !== null && img.getBoundingClientRect().height > 0)
                 .map(img => img.src).join('|')"""
    )


def test_static_widget_slider_switches_the_picture(browser) -> None:
    visit = Visit(browser, HTML / "book" / "learning-rates.html")
    try:
        page = visit.page
        handle = page.locator(".noUi-handle").first
        handle.wait_for(state="visible", timeout=15_000)
        before = _visible_frame(page)
        assert before and "|" not in before, f"expected exactly one visible frame, got {before[:200]!r}"
        start = handle.get_attribute("aria-valuenow")
        handle.focus()
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        assert handle.get_attribute("aria-valuenow") != start, "the slider did not move"
        page.wait_for_function("b => { const s = document.querySelectorAll('img.widget-image'); "
                               "return [...s].some(i => i.offsetParent !== null && i.src !== b); }", arg=before,
                               timeout=5_000)
        after = _visible_frame(page)
        assert after and "|" not in after and after != before
        assert visit.remote == [] and visit.failed == [] and visit.errors == []
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
