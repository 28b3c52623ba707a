"""One assignment = one folder of data: ``source_notebooks/<name>/``.

- ``assignment.toml``, the spec: the notebook's name, the contract test file, the answer cells
  cut from ``g2c/training``, the autograded cells (points, contract tests shown, probe scenarios
  that decide them), the hand-graded cells and the assignment's constants;
- ``notebook.md``, the notebook as text (prose and cells; see ``parse_cells``).

Neither is released to students (``NOT_RELEASED`` joins nbgrader's ignore list): the text holds
the solutions. Everything else in the folder is generated from these two and the package.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = "assignment.toml"
TEXT_FILE = "notebook.md"
NOT_RELEASED = (SPEC_FILE, TEXT_FILE)


@dataclass(frozen=True)
class Answer:
    """An answer cell cut from ``g2c/training/<module>.py``: ``name``, with only ``methods`` if a class."""

    module: str
    name: str
    methods: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Graded:
    """An autograded cell: its points, the contract tests it shows and the probe scenarios that decide it."""

    grade_id: str
    points: int
    scenarios: tuple[str, ...]
    tests: tuple[str, ...] = ()
    answer: str | None = None  # the answer cell whose tests these are; None for a value exercise


@dataclass(frozen=True)
class Assignment:
    name: str
    folder: Path
    notebook: str
    contract: Path
    probed: tuple[str, ...]
    answers: dict[str, Answer]
    graded: dict[str, Graded]  # in notebook order
    manual: dict[str, int]
    constants: dict[str, Any] = field(default_factory=dict)  # the spec's other tables (e.g. by_hand)

    @property
    def text(self) -> Path:
        return self.folder / TEXT_FILE


def names(root: Path = ROOT) -> list[str]:
    """The course's assignments: the folders of ``source_notebooks/`` that hold a spec."""
    return sorted(path.parent.name for path in (root / "source_notebooks").glob(f"*/{SPEC_FILE}"))


def chosen(root: Path, given: str | None) -> str:
    """The assignment a command works on: the one given, or the course's only one; ValueError otherwise."""
    known = names(root)
    if given is None and len(known) == 1:
        return known[0]
    if given in known:
        return given
    have = ", ".join(known) or "none"
    raise ValueError(
        f"name an assignment (the course has {have})" if given is None else f"no assignment {given!r} (the course has {have})"
    )


@functools.cache
def load(name: str, root: Path = ROOT) -> Assignment:
    """The assignment ``name`` of the course at ``root``, read from its spec; ValueError names what is wrong."""
    folder = root / "source_notebooks" / name
    path = folder / SPEC_FILE
    if not path.is_file():
        raise ValueError(f"no assignment {name!r}: {path} is missing")
    spec = tomllib.loads(path.read_text())
    answers = {key: Answer(a["module"], a["name"], tuple(a["methods"]) if "methods" in a else None)
               for key, a in spec.get("answers", {}).items()}
    graded = {}
    for grade_id, cell in spec.get("checks", {}).items():
        if cell.get("answer") is not None and cell["answer"] not in answers:
            raise ValueError(f"{path}: checks.{grade_id} names the unknown answer {cell['answer']!r}")
        graded[grade_id] = Graded(grade_id, int(cell["points"]), tuple(cell["scenarios"]), tuple(cell.get("tests", ())),
                                  cell.get("answer"))
    known = {"notebook", "contract", "probed", "answers", "checks", "manual"}
    return Assignment(name, folder, spec["notebook"], root / spec.get("contract", "tests/test_training.py"),
                      tuple(spec.get("probed", ())), answers, graded,
                      {k: int(v) for k, v in spec.get("manual", {}).items()}, {k: v for k, v in spec.items() if k not in known})


# ---------------------------------------------------------------- the notebook as text


@dataclass(frozen=True)
class TextCell:
    """One cell of ``notebook.md``: ``kind`` is markdown, answer (a hand-graded markdown answer),
    locked, solution, cut (an answer cut from the package), checks or widget."""

    kind: str
    body: str
    grade_id: str | None = None


CODE_KINDS = {"locked", "solution", "answer", "checks", "widget"}
_FENCE = re.compile(r"^```\{code-cell\}[^\n]*\n(?::(\w+):[ \t]*(\S*)[ \t]*\n)?(.*?)^```[ \t]*$", re.S | re.M)
_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


def _markdown(text: str) -> list[TextCell]:
    cells = []
    for chunk in re.split(r"^\+\+\+[ \t]*", text, flags=re.M):
        header, _, body = chunk.partition("\n")
        meta = json.loads(header) if header.strip() else {}
        if body.strip():
            graded = "answer" in meta
            cells.append(TextCell("answer", body.strip(), meta["answer"]) if graded else TextCell("markdown", body.strip()))
    return cells


def parse_cells(text: str) -> list[TextCell]:
    """``notebook.md`` -> cells. A ``---`` front matter is skipped; ``+++`` (optionally followed by
    ``{"answer": id}``) starts a markdown cell; a fenced ``{code-cell}`` starts with one option line
    naming its kind and grade id (``:solution: lr_sweep``, ``:answer: adamw``, ``:widget:``...)."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    cells, at = [], 0
    for fence in _FENCE.finditer(text):
        cells += _markdown(text[at : fence.start()])
        kind, grade_id, body = fence.group(1), fence.group(2) or None, fence.group(3)
        if kind not in CODE_KINDS:
            first = fence.group(0).splitlines()[1]
            raise ValueError(f"a code cell needs one of :{': :'.join(sorted(CODE_KINDS))}: first, got {first!r}")
        cells.append(TextCell("cut" if kind == "answer" else kind, body.strip(), grade_id))
        at = fence.end()
    return cells + _markdown(text[at:])


def fill(text: str, facts: dict[str, Any]) -> str:
    """Replace each ``{{name}}`` (``{{table.key}}`` for a table) by its fact; KeyError names a missing one."""

    def value(match: re.Match) -> str:
        found: Any = facts
        for part in match.group(1).split("."):
            if part not in found:
                raise KeyError(f"notebook.md uses {{{{{match.group(1)}}}}}, which is not a fact of the assignment")
            found = found[part]
        return repr(found) if not isinstance(found, (str, int, float)) or isinstance(found, bool) else str(found)

    return _PLACEHOLDER.sub(value, text)
