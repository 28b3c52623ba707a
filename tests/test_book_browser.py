"""The built book in a real browser (Debian's chromium via playwright), opened from file:// with
every request to another host refused: what a reader with no network gets.

Run by ``make test-book`` (which builds the book and installs chromium first); the plain
``pytest`` run skips it because it needs both.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from dataclasses import dataclass
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
# How long a page may take to load, draw or answer a key: `make test` grades a class of sandboxed submissions beside
# the book on two cores, where a page that settles in a second alone once took over 30 s. Each wait ends as soon as
# the page is ready; only a page that never gets there waits it out.
PATIENCE_MS = 90_000
QUIET_MS = 15_000  # the longest wait for a page with no request in flight (Visit.settle)
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
        self.context.set_default_timeout(PATIENCE_MS)  # every wait on the page below
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
        """Wait for half a second without a request, at most QUIET_MS: what the page draws is already waited for
        (its formulas, its widgets' handles), and every request it makes is recorded and checked (``failed``,
        ``remote``). Once in a `make test` on a loaded machine, chromium never reported the page idle and the
        test waited out 90 s for nothing."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_load_state("networkidle", timeout=QUIET_MS)
        except PlaywrightTimeout:
            pass

    def close(self) -> None:
        self.context.close()


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


# per formula (mjx-container), how many MathML copies MathJax left for screen readers: one each
ASSISTIVE_MATHML = ("() => [...document.querySelectorAll('mjx-container')]"
                    ".map(c => c.querySelectorAll('mjx-assistive-mml math').length)")
NEXT_FRAMES = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


def rendered(visit: Visit, path: Path) -> None:
    """Wait until the page's math and widgets are drawn: axe must see what a reader gets."""
    html = path.read_text(encoding="utf-8")
    if MATH_IN_HTML.search(html):
        visit.page.wait_for_selector("mjx-container", state="attached")
    views = len(WIDGET_VIEW.findall(html))
    if views:
        visit.page.locator(".widget-subarea").nth(views - 1).locator(".noUi-handle").wait_for(state="visible")
    visit.settle()
    visit.page.evaluate(NEXT_FRAMES)  # what scripts do after a render (widgets-a11y.js) is done by then


@pytest.mark.parametrize(
    "path", pages() if os.environ.get("G2C_TEST_BOOK") == "1" else [], ids=lambda p: str(p.relative_to(HTML))
)
def test_page_is_self_contained_renders_math_and_meets_wcag_21_aa(browser, path: Path) -> None:
    """One load of each page: it asks no other host, every request succeeds, no script raises, its
    formulas render, each with a MathML copy for screen readers, and axe-core finds no WCAG 2.0/2.1 A or AA
    violation once math and widgets are drawn."""
    visit = Visit(browser, path)
    try:
        rendered(visit, path)
        assert visit.remote == [], f"{path.name} asked another host: {visit.remote}"
        assert visit.failed == [], f"{path.name} had failed requests: {visit.failed}"
        assert visit.errors == [], f"{path.name} raised in the browser: {visit.errors}"
        if MATH_IN_HTML.search(path.read_text(encoding="utf-8")):
            counts = visit.page.evaluate(ASSISTIVE_MATHML)
            assert counts and all(c == 1 for c in counts), f"{path.name}: formulas without assistive MathML: {counts}"
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
    """The parametrized page test above really covers the book: every chapter page exists."""
    names = {p.name for p in pages()}
    for chapter in ("intro.html", "learning-rates.html", "optimizers.html", "clipping.html", "schedules.html",
                    "reading-curves.html", "pitfalls.html", "checklist.html", "search.html"):
        assert chapter in names


WIDGET_STATE = re.compile(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>', re.S)
WIDGET_VIEW = re.compile(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>', re.S)
WIDGET_CHAPTERS = {"learning-rates.html", "optimizers.html", "clipping.html", "schedules.html", "reading-curves.html"}


FRAME_IMG = re.compile(r'<img class="g2c-frame"[^>]* alt="([^"]*)" src="data:image/png;base64,([^"]+)">')


@dataclass
class Frame:
    """One slider position of a static widget, as embedded: picture, alt text and caption words."""

    png: str  # base64
    alt: str
    caption: list[str]


@dataclass
class StaticWidget:
    description: str  # what the slider changes, as the widget labels it
    options: list[str]
    frames: list[Frame]


def words(text: str) -> list[str]:
    """A text's words, whatever the markup, spacing and punctuation around them."""
    return re.findall(r"\w+", text)


def static_widgets(page_html: str) -> list[StaticWidget]:
    """Each widget view embedded in a page: its slider and its Stack's frames, in slider order.

    Read from the embedded widget state, so the browser test knows which picture, alt text and
    caption every slider position must show without trusting the page's own JavaScript.
    """
    views = WIDGET_VIEW.findall(page_html)
    if not views:
        return []
    state = json.loads(WIDGET_STATE.search(page_html).group(1))["state"]

    def model(ref: str) -> dict:
        return state[ref.removeprefix("IPY_MODEL_")]

    def frame(ref: str) -> Frame:
        page = model(ref)
        below: list[str] = []
        if page["model_name"] != "HTMLModel":  # a frame with a caption: VBox([Picture, caption])
            picture, caption = (model(c) for c in page["state"]["children"])
            shown = caption["state"].get("titles") or [caption["state"].get("value", "")]  # an Accordion shows its title
            below = words(re.sub(r"<[^>]+>", " ", html.unescape(shown[0])))
            page = picture
        alt, data = FRAME_IMG.search(page["state"]["value"]).groups()
        return Frame(data, html.unescape(alt), below)

    widgets = []
    for view in views:
        root = state[json.loads(view)["model_id"]]
        children = [model(c) for c in root["state"]["children"]]
        (slider,) = (c for c in children if c["model_name"] == "SelectionSliderModel")
        (stack,) = (c for c in children if c["model_name"] == "StackModel")
        frames = [frame(child) for child in stack["state"]["children"]]
        widgets.append(StaticWidget(slider["state"]["description"], slider["state"]["_options_labels"], frames))
    return widgets


def widget_pages() -> list[Path]:
    return [p for p in pages() if WIDGET_VIEW.search(p.read_text(encoding="utf-8"))]


SHOWN_PICTURE = """area => {
    const shown = [...area.querySelectorAll('img')].filter(img => img.offsetParent !== null);
    if (shown.length !== 1) return [`${shown.length} visible pictures`, null];
    const src = shown[0].getAttribute('src');
    return [src.startsWith('data:image/png;base64,') ? src.split(',')[1] : src, shown[0].getAttribute('alt')];
}"""


def wait_for_picture(area, frame: str, timeout: float = PATIENCE_MS / 1000) -> tuple[str, str | None]:
    """(base64 PNG, alt text) the widget shows once the PNG is ``frame`` (or whatever it shows at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        shown, alt = area.evaluate(SHOWN_PICTURE)
        if shown == frame or time.monotonic() > deadline:
            return shown, alt
        area.page.wait_for_timeout(50)  # lets playwright serve the page's requests meanwhile


def test_every_widget_chapter_is_tested() -> None:
    """The widget tests below really cover the book: each widget chapter embeds its widget."""
    assert {p.name for p in widget_pages()} == WIDGET_CHAPTERS


def walks_every_frame(page, path: Path, widgets) -> None:
    """Keyboard on the real slider, through every position: each shows its own precomputed frame.

    The picture changes only through the jslink between the slider and the Stack of frames,
    in the browser; no kernel runs behind a static page.
    """
    areas = page.locator(".widget-subarea")  # where the widget manager renders each embedded view
    assert areas.count() == len(widgets)
    for n, widget in enumerate(widgets):
        area = areas.nth(n)
        handle = area.locator(".noUi-handle")
        assert handle.count() == 1, f"widget {n}: expected one slider"
        handle.focus()
        page.keyboard.press("Home")
        pngs = [f.png for f in widget.frames]
        for i, frame in enumerate(widget.frames):
            if i:
                page.keyboard.press("ArrowRight")
            assert float(handle.get_attribute("aria-valuenow")) == i, f"widget {n}: the slider did not move to {i}"
            shown, alt = wait_for_picture(area, frame.png)
            seen = f"frame {pngs.index(shown)}" if shown in pngs else repr(shown[:60])
            assert shown == frame.png, f"widget {n} on {path.name}: slider at {i} shows {seen}, not frame {i}"
            assert alt == frame.alt, f"widget {n} on {path.name}: frame {i} shown with alt {alt!r}"


FOCUSED = """() => {
    const el = document.activeElement, style = getComputedStyle(el);
    return {handle: el.classList.contains('noUi-handle'),
            area: [...document.querySelectorAll('.widget-subarea')].findIndex(a => a.contains(el)),
            label: el.getAttribute('aria-label'), valuetext: el.getAttribute('aria-valuetext'),
            outline: style.outlineStyle === 'none' ? 0 : parseFloat(style.outlineWidth)};
}"""
LIVE_REGION = "area => [...area.querySelectorAll('[aria-live=polite]')].map(r => [r.getAttribute('role'), r.textContent])"


def tab_to_slider(page, n: int, limit: int = 150) -> dict:
    """Press Tab from the top of the page until widget ``n``'s slider handle has the focus."""
    page.locator("body").focus()
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused["handle"] and focused["area"] == n:
            return focused
    raise AssertionError(f"{limit} presses of Tab never reached widget {n}'s slider")


def focused_name(page, wanted: str, timeout: float = PATIENCE_MS / 1000) -> str:
    """The focused element's aria-label once it is ``wanted`` (or whatever it is at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        label = page.evaluate(FOCUSED)["label"]
        if label == wanted or time.monotonic() > deadline:
            return label
        page.wait_for_timeout(50)


def live_caption(area, wanted: list[str], timeout: float = PATIENCE_MS / 1000) -> list[list[str]]:
    """The widget's polite live regions once one announces ``wanted`` words (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        regions = area.evaluate(LIVE_REGION)
        if any(words(text) == wanted for _, text in regions) or time.monotonic() > deadline:
            return regions
        area.page.wait_for_timeout(50)


@pytest.mark.parametrize(
    "path", widget_pages() if os.environ.get("G2C_TEST_BOOK") == "1" else [], ids=lambda p: str(p.relative_to(HTML))
)
def test_every_static_widget_works_from_the_keyboard_says_what_it_shows_and_shows_every_frame(browser, path: Path) -> None:
    """Tab reaches the slider (with a visible focus ring), its name says what it sets and the value,
    and an arrow key changes the picture, its alt text, the name, and what the live region reads out;
    then, on the same page, the slider walks through every position (``walks_every_frame``).
    """
    widgets = static_widgets(path.read_text(encoding="utf-8"))
    visit = Visit(browser, path)
    try:
        rendered(visit, path)
        page = visit.page
        for n, widget in enumerate(widgets):
            area = page.locator(".widget-subarea").nth(n)
            focused = tab_to_slider(page, n)
            start = widget.options.index(focused["valuetext"])
            assert focused["label"] == f"{widget.description} {widget.options[start]}", focused
            assert focused["outline"] >= 2, f"widget {n} on {path.name}: no visible focus ring on the slider ({focused})"
            assert wait_for_picture(area, widget.frames[start].png) == (widget.frames[start].png, widget.frames[start].alt)
            assert live_caption(area, [], timeout=0) == [["status", ""]], "one polite status region, silent until a move"
            there, back = ("ArrowLeft", "ArrowRight") if start == len(widget.options) - 1 else ("ArrowRight", "ArrowLeft")
            other = start + (1 if there == "ArrowRight" else -1)
            for key, i, before in ((there, other, start), (back, start, other)):  # one step and back
                page.keyboard.press(key)
                frame = widget.frames[i]
                shown, alt = wait_for_picture(area, frame.png)
                assert shown == frame.png, f"widget {n} on {path.name}: {key} did not bring frame {i}"
                assert alt == frame.alt != widget.frames[before].alt, f"widget {n} on {path.name}: frame {i} alt {alt!r}"
                assert (
                    focused_name(page, f"{widget.description} {widget.options[i]}")
                    == f"{widget.description} {widget.options[i]}"
                )
                regions = live_caption(area, frame.caption)
                assert [words(text) for _, text in regions] == [frame.caption], f"frame {i} caption not announced: {regions}"
        walks_every_frame(page, path, widgets)
        visit.settle()
        assert visit.remote == [], f"{path.name} asked another host: {visit.remote}"
        assert visit.failed == [], f"{path.name} had failed requests: {visit.failed}"
        assert visit.errors == [], f"{path.name} raised in the browser: {visit.errors}"
    finally:
        visit.close()


def test_curve_doctor_verdict_opens_from_the_keyboard(browser) -> None:
    """The hidden diagnosis is a button: Tab reaches it, Enter opens it, aria-expanded follows, and
    the opened verdict passes the audit too."""
    visit = Visit(browser, HTML / "book" / "reading-curves.html")
    try:
        rendered(visit, HTML / "book" / "reading-curves.html")
        page = visit.page
        header = page.locator(".widget-subarea .jupyter-widget-Collapse-header")
        assert header.get_attribute("role") == "button" and header.get_attribute("aria-expanded") == "false"
        tab_to_slider(page, 0)
        for _ in range(5):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.classList.contains('jupyter-widget-Collapse-header')"):
                break
        else:
            raise AssertionError("Tab from the slider never reached the Diagnosis header")
        verdict = page.locator(".widget-subarea .jupyter-widget-Collapse-contents")
        assert not verdict.is_visible()
        page.keyboard.press("Enter")
        verdict.get_by_text("Diagnosis:").wait_for(state="visible")
        page.wait_for_selector('.widget-subarea .jupyter-widget-Collapse-header[aria-expanded="true"]')
        assert axe_violations(page) == [], "the opened verdict meets WCAG 2.1 AA too"
    finally:
        visit.close()


def test_search_works_offline(browser) -> None:
    visit = Visit(browser, HTML / "search.html", "?q=AdamW")
    try:
        summary = visit.page.locator("#search-results .search-summary")
        summary.wait_for()
        visit.page.wait_for_function(
            "() => /found \\d+ page/i.test(document.querySelector('#search-results .search-summary').textContent)"
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
