"""The glossary and the bibliography: the diagnostic terms and main symbols are glossary terms the
text links to, and the reading list and every cited paper come from ``book/references.bib``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from g2c.widgets import KINDS, TERMS

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HTML = ROOT / "_build" / "html" / "book"
SYMBOLS = ("learning rate", "gradient", "first moment", "second moment", "bias correction", "effective step size",
           "weight decay", "global gradient norm", "max_norm", "warmup", "cosine decay", "predict-the-mean loss",
           "momentum", "L2 norm", "early stopping", "dropout", "epsilon", "sharpness", "edge of stability")
# papers the text's claims rest on (RAdam's warmup argument, the edge of stability, dropout, Adam, AdamW)
CITED = ("liu2020radam", "cohen2021edge", "srivastava2014dropout", "kingma2015adam", "loshchilov2019decoupled")
needs_book = pytest.mark.skipif(os.environ.get("G2C_TEST_BOOK") != "1", reason="needs the built book: run `make test-book`")


def glossary() -> dict[str, str]:
    text = (BOOK / "glossary.md").read_text(encoding="utf-8")
    body = text[text.index("```{glossary}"):]
    return dict(re.findall(r"^(\S[^\n]*)\n((?:  [^\n]*\n?)+)", body, re.M))


def test_every_diagnostic_term_is_a_glossary_term_with_the_modules_words():
    entries = glossary()
    for kind in KINDS:
        assert kind in entries, f"{kind} is not in the glossary"
        words = " ".join(entries[kind].split())
        assert TERMS[kind].seen.lower() in words.lower(), (kind, words)
        assert "{ref}`diagnostic-terms`" in words, f"{kind}: the glossary must point to the one definition"


def test_the_main_symbols_are_glossary_terms():
    assert set(SYMBOLS) <= set(glossary())


@needs_book
def test_the_text_links_the_terms_to_the_glossary():
    linked = set()
    for page in HTML.glob("*.html"):
        linked |= set(re.findall(r'href="glossary\.html#term-([\w-]+)"', page.read_text(encoding="utf-8")))
    assert {k.replace(" ", "-") for k in KINDS} <= linked, linked


@needs_book
def test_every_bibliography_entry_is_cited_and_listed():
    """sphinxcontrib-bibtex lists only the entries some page cites: each title listed means each one cited."""
    bib = (BOOK / "references.bib").read_text(encoding="utf-8")
    titles = [re.sub(r"[{}\\]", "", t) for t in re.findall(r"^\s*title\s*=\s*\{(.*)\},?$", bib, re.M)]
    reading = (HTML / "reading.html").read_text(encoding="utf-8")
    entries = [
        " ".join(re.sub(r"<[^>]+>", " ", e).split()).lower()
        for e in re.findall(r'<div class="citation".*?</div>', reading, re.S)
    ]
    assert len(entries) == len(titles) == len(re.findall(r"^@\w+\{", bib, re.M))
    for title in titles:
        assert any(" ".join(title.split()).lower()[:40] in e for e in entries), f"{title!r} is not in the bibliography"


def test_the_papers_behind_the_claims_are_in_the_bibliography_and_cited():
    bib = (BOOK / "references.bib").read_text(encoding="utf-8")
    text = " ".join(p.read_text(encoding="utf-8") for p in BOOK.glob("*.md"))
    for key in CITED:
        assert re.search(rf"^@\w+\{{{key},", bib, re.M), f"{key} is not in references.bib"
        assert f"`{key}`" in text, f"{key} is never cited"


@needs_book
def test_the_bibliography_renders_no_latex():
    """Every entry as the reader sees it: no backslash command, no stray brace (a \\texttt printed literally)."""
    reading = (HTML / "reading.html").read_text(encoding="utf-8")
    entries = [" ".join(re.sub(r"<[^>]+>", " ", e).split()) for e in re.findall(r'<div class="citation".*?</div>', reading, re.S)]
    assert entries
    for entry in entries:
        assert not re.search(r"\\[a-zA-Z]+|[{}]", entry), entry
