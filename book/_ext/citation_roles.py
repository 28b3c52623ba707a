"""Drop the ARIA roles docutils puts on the bibliography, which break WCAG rules.

docutils writes each citation as ``<div role="doc-biblioentry">`` (a role ARIA 1.2 deprecates)
inside ``<div role="list">``, whose children (back-links among them) are not list items, so axe
reports aria-deprecated-role and aria-required-children on the reading list. Plain divs carry
the same text and links with no broken promise to assistive technology.
"""

from __future__ import annotations

from typing import Any

ROLES = (' role="doc-biblioentry"', '<div role="list" class="citation-list">')


def plain_citations(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    body = context.get("body")
    if isinstance(body, str) and "citation" in body:
        context["body"] = body.replace(ROLES[0], "").replace(ROLES[1], '<div class="citation-list">')


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", plain_citations)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
