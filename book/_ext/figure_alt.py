"""Give each figure the alt text its PNG carries, written from the same runs as the picture.

``book/_figures.png_bytes`` stores a figure's description in the PNG itself (text chunk ``alt``),
computed from the very runs that drew it. A ``glue:figure`` without an ``:alt:`` option gets that
text here, so the words a screen reader hears can never drift from the curves a reader sees
(a typed ``:alt:`` once said "five spikes" beside a legend counting four). An ``:alt:`` given in
the chapter still wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes

KEY = "alt"  # the PNG text chunk book/_figures.png_bytes writes


def png_alt(path: Path) -> str | None:
    """The ``alt`` text chunk of the PNG at ``path``, if it has one."""
    from PIL import Image

    if path.suffix.lower() != ".png" or not path.is_file():
        return None
    with Image.open(path) as image:
        return image.text.get(KEY)


def _image_path(app: Any, node: nodes.image, docname: str) -> Path:
    uri = node.get("candidates", {}).get("*") or node["uri"]
    path = Path(uri)
    if path.is_absolute():
        return path
    in_srcdir = Path(app.srcdir) / path
    return in_srcdir if in_srcdir.exists() else Path(app.srcdir) / Path(docname).parent / path


def fill_alt(app: Any, doctree: nodes.document, docname: str) -> None:
    """Set every image's missing alt text from its PNG."""
    for node in doctree.findall(nodes.image):
        if node.get("alt"):
            continue
        alt = png_alt(_image_path(app, node, docname))
        if alt:
            node["alt"] = alt


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", fill_alt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
