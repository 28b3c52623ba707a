"""No solution is ever published: no code from a ``### BEGIN SOLUTION`` region of g2c/training
reaches the built book, in any form a reader could copy it from (HTML text, highlighted code,
the search index, the page sources under _sources/, or any other file of _build/html).

Which lines count: every solution line of at least MIN_LINE characters on its own, and every run
of RUN consecutive lines, whatever their length. A short line alone (``continue``,
``return min_lr``, ``if not grads:``) is generic Python that prose may legitimately contain and
gives nothing away; the same lines in sequence are the solution, so the runs catch a listing of
short lines that the single-line check would let through.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

from g2c.grading.regions import solution_lines

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
VENDORED = {"mathjax", "html-manager", "requirejs"}  # third-party files copied verbatim
MIN_LINE = 20
RUN = 3
TEXT_SUFFIXES = {".html", ".js", ".txt", ".md", ".ipynb", ".json", ".css", ".py"}

pytestmark = pytest.mark.skipif(
    os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book: run `make test-book`"
)


def _normalize(text: str) -> str:
    """Collapse what HTML does to code: tags (syntax highlighting), entities, whitespace."""
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text)
    return re.sub(r"\s+", " ", text)


def forbidden_snippets() -> list[str]:
    snippets: list[str] = []
    # Lines of the public contract (tests/test_training.py, shipped in the kit) are given, not solutions.
    public = {re.sub(r"\s+", " ", line.strip()) for line in (ROOT / "tests" / "test_training.py").read_text().splitlines()}
    for source in sorted((ROOT / "g2c" / "training").glob("*.py")):
        lines = [re.sub(r"\s+", " ", line) for line in solution_lines(source.read_text(encoding="utf-8"))]
        snippets += [line for line in lines if len(line) >= MIN_LINE and line not in public]
        snippets += [" ".join(lines[i : i + RUN]) for i in range(len(lines) - RUN + 1)]
    return snippets


def published_files(root: Path) -> list[Path]:
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in TEXT_SUFFIXES and not VENDORED & set(path.relative_to(root).parts)
    ]


def leaks(root: Path, snippets: list[str]) -> list[tuple[str, str]]:
    """(file, snippet) for every solution snippet found in a published file."""
    found = []
    for path in published_files(root):
        text = _normalize(path.read_text(encoding="utf-8", errors="replace"))
        raw = path.read_text(encoding="utf-8", errors="replace")
        for snippet in snippets:
            if snippet in text or snippet in raw:
                found.append((str(path.relative_to(root)), snippet))
    return found


def test_solution_regions_exist() -> None:
    """The check below is only meaningful if there are solution lines to look for."""
    snippets = forbidden_snippets()
    assert len(snippets) >= 30
    assert any("bias_correction1" in s for s in snippets)
    assert any("clip_coef" in s for s in snippets)
    assert any("warmup_steps" in s for s in snippets)


def test_no_solution_line_in_the_built_book() -> None:
    files = published_files(HTML)
    assert any(p.name == "optimizers.html" for p in files), f"no built book under {HTML}: run `make book`"
    assert leaks(HTML, forbidden_snippets()) == []


RELEASED = ROOT / "release" / "03b-training"  # the student's kit (notebook, conftest, tests), offered for download


def test_no_solution_markers_or_hidden_tests_in_the_built_book() -> None:
    """The released kit may name nbgrader (its cell metadata: grading needs it; its conftest reads it), nothing else may."""
    markers = ("### BEGIN SOLUTION", "### END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "nbgrader")
    released = {p.read_bytes() for p in RELEASED.rglob("*") if p.is_file()}
    hits = [
        (str(p.relative_to(HTML)), m)
        for p in published_files(HTML)
        for m in markers
        if m in p.read_text(encoding="utf-8", errors="replace") and not (m == "nbgrader" and p.read_bytes() in released)
    ]
    assert hits == []


def test_the_check_finds_a_highlighted_leak(tmp_path: Path) -> None:
    """A page that shows one solution line, split by syntax-highlighting tags, is caught;
    so is a run of short lines; a page of formulas and prose is not."""
    snippets = forbidden_snippets()
    long_line = next(s for s in snippets if "clip_coef = " in s)
    name, rest = long_line.split(" = ", 1)
    (tmp_path / "leak.html").write_text(
        f'<pre><span class="n">{name}</span> <span class="o">=</span> {html.escape(rest)}</pre>', encoding="utf-8"
    )
    (tmp_path / "short.html").write_text(
        "<pre>if clip_coef &lt; 1:\n    for g in grads:\n        g.mul_(clip_coef)</pre>", encoding="utf-8"
    )
    (tmp_path / "clean.html").write_text(
        "<p>multiply every gradient by the same scalar $c = \\texttt{max\\_norm}/(\\|g\\| + \\epsilon)$</p>",
        encoding="utf-8",
    )
    found = {file for file, _ in leaks(tmp_path, snippets)}
    assert found == {"leak.html", "short.html"}
