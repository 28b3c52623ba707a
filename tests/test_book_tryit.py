"""Every "try it" section (each chapter with a widget) offers the exercise notebook: a download of
the student's notebook that ships with the book, and the command that opens it locally."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
WIDGET_CHAPTERS = ("learning-rates", "optimizers", "clipping", "schedules", "reading-curves")

pytestmark = pytest.mark.skipif(os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book: run `make test-book`")


@pytest.mark.parametrize("name", WIDGET_CHAPTERS)
def test_try_it_offers_the_notebook_download_and_the_command(name: str) -> None:
    page = (HTML / "book" / f"{name}.html").read_text(encoding="utf-8")
    links = re.findall(r'<a class="reference download internal"[^>]*href="([^"]+training\.ipynb)"', page)
    assert links, f"{name}: no download of the exercise notebook"
    target = (HTML / "book" / links[0]).resolve()
    assert target.exists(), f"{name}: the download {links[0]} is missing from the build"
    words = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "jupyter notebook training.ipynb" in words and "make notebook" in words


def test_the_download_is_the_students_release_notebook() -> None:
    """The file offered is the generated student notebook (no solutions), byte for byte."""
    (download,) = {p for p in (HTML / "_downloads").rglob("training.ipynb")}
    assert download.read_bytes() == (ROOT / "release" / "03b-training" / "training.ipynb").read_bytes()
    cells = json.loads(download.read_text(encoding="utf-8"))["cells"]
    assert not any("### BEGIN SOLUTION" in "".join(c["source"]) for c in cells)
