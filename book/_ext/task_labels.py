"""Give every task-list checkbox its item's text as a label.

MyST's ``tasklist`` writes ``<input type="checkbox">`` before the item's text with nothing
tying the two together, so a screen reader meets seven unnamed checkboxes on the checklist
(axe: ``label``). Wrapping the checkbox and the text in one ``<label>`` names each box by its
own sentence, with no second copy of the text to keep in step.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes

CHECKBOX = "task-list-item-checkbox"


def label_tasks(app: Any, doctree: nodes.document, docname: str) -> None:
    """Wrap each task item's first paragraph, checkbox included, in a ``<label>``."""
    for item in doctree.findall(nodes.list_item):
        if "task-list-item" not in item["classes"] or not item.children:
            continue
        paragraph = item.children[0]
        if not isinstance(paragraph, nodes.paragraph) or not paragraph.children:
            continue
        box = paragraph.children[0]
        if isinstance(box, nodes.raw) and CHECKBOX in box.astext():
            paragraph.replace(box, nodes.raw("", "<label>" + box.astext(), format="html"))
            paragraph.append(nodes.raw("", "</label>", format="html"))


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", label_tasks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
