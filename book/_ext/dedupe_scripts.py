"""Drop repeated inline <script> tags from every page.

sphinx-thebe 0.3 adds its configuration script (``const THEBE_JS_URL = ...``) on each
``env-before-read-docs``, which fires more than once in a Jupyter Book build; the second copy
redeclares the constants and the browser raises a SyntaxError on every page (the first copy
is added with ``filename=None``, the second with ``""``, so Sphinx's own de-duplication misses it).
"""

from __future__ import annotations

from typing import Any


def _dedupe(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the same inline script arrives once with filename None and once with "": one key for both
        key = (getattr(script, "filename", script) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
