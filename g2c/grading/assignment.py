"""One assignment = one folder of data: ``source_notebooks/<name>/``.

- ``assignment.toml``, the spec: the notebook's name, the contract test file, the answers (cut
  from a package module's solution region, or the value a solution cell sets), the autograded
  cells (points, contract tests shown, probe scenarios that decide them), the hand-graded cells,
  how the probe's data is compared, and the assignment's constants and computed facts;
- ``notebook.md``, the notebook as text (prose and cells; see ``parse_cells``);
- the probe's scenarios (``scenarios.py``: inputs drawn from a seed, no expected value) and the
  pitfall catalogue (``pitfalls.toml``), as the spec names them.

None of these is released to students (``NOT_RELEASED`` joins nbgrader's ignore list): they hold
the solutions and the hidden checks. Everything else in the folder is generated from them.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC_FILE = "assignment.toml"
TEXT_FILE = "notebook.md"
FACTS_FILE = "facts.json"  # the computed facts that train runs, as `make release` computed them (notebook_build)
NOT_RELEASED = (SPEC_FILE, TEXT_FILE, "scenarios.py", "pitfalls.toml", FACTS_FILE)
DEFAULT_TOLERANCE = (1e-9, 1e-12)  # (rtol, atol) of a recorded number unless the spec says otherwise


@dataclass(frozen=True)
class Answer:
    """What students write, graded by the probe under ``name``.

    Cut (``source`` set): ``name`` from the course file ``source`` (with only ``methods`` if a
    class), solution region intact; its answer cell's grade id is the answer's key. Value
    (``cell`` set): the object ``name`` that the solution cell ``cell`` of notebook.md sets.
    """

    key: str
    name: str
    work: str  # what the exercise is to write, for messages: "the update"
    source: str | None = None
    methods: tuple[str, ...] | None = None
    cell: str | None = None

    @property
    def grade_id(self) -> str:
        return self.cell or self.key


@dataclass(frozen=True)
class Graded:
    """An autograded cell: its points, the contract tests it shows and the probe scenarios that decide it."""

    grade_id: str
    points: int
    scenarios: tuple[str, ...]
    answer: str  # the answer these checks grade
    tests: tuple[str, ...] = ()
    catch_all: bool = False  # its scenarios pass only on the reference: every pitfall of the answer costs it
    hint: str = ""  # said after a failure no pitfall explains


@dataclass(frozen=True)
class Assignment:
    name: str
    folder: Path
    title: str
    notebook: str
    contract: Path
    answers: dict[str, Answer]  # in spec order: the probe runs their cells in this order
    graded: dict[str, Graded]  # in notebook order
    manual: dict[str, int]
    preamble: str  # what the probe runs before the answer cells ({{facts}} filled by the generator)
    scenarios: Path
    pitfalls: Path
    tolerance: tuple[float, float]
    tolerances: dict[str, tuple[float, float]]  # scenario -> (rtol, atol)
    exact: dict[str, tuple[str, ...]]  # scenario -> glob patterns of data paths compared bit for bit
    constants: dict[str, Any]
    computed: dict[str, Any]  # fact -> "module:attribute", or {call = "module:function", cell = grade_id}

    def __hash__(self) -> int:  # one spec per folder: a cache key
        return hash(self.folder)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Assignment) and other.folder == self.folder

    @property
    def root(self) -> Path:
        """The course: the folder above ``source_notebooks/``."""
        return self.folder.parents[1]

    @property
    def text(self) -> Path:
        return self.folder / TEXT_FILE

    @property
    def stem(self) -> str:
        """nbgrader's name for the notebook."""
        return Path(self.notebook).stem

    @property
    def probed(self) -> list[str]:
        """The cells the probe runs on their own, in order: each answer's."""
        return [a.grade_id for a in self.answers.values()]

    def answer_of(self, scenario: str) -> str:
        """The answer a scenario grades (its cell's)."""
        return self._scenario_answers[scenario]

    @property
    def scenario_names(self) -> list[str]:
        """Every scenario the cells name, in cell order."""
        return list(self._scenario_answers)

    def catch_all(self, answer: str) -> tuple[str, ...]:
        return tuple(s for g in self.graded.values() if g.catch_all and g.answer == answer for s in g.scenarios)

    def hint(self, scenario: str) -> str:
        return next((g.hint for g in self.graded.values() if scenario in g.scenarios), "")

    def cells_of(self, answer: str) -> list[Graded]:
        return [g for g in self.graded.values() if g.answer == answer]

    @functools.cached_property  # a frozen spec: derived once (the comparator asks for each scenario of each record)
    def _scenario_answers(self) -> dict[str, str]:
        return {s: g.answer for g in self.graded.values() for s in g.scenarios}


def names(root: Path) -> list[str]:
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


def load(name: str, root: Path) -> Assignment:
    """The assignment ``name`` of the course at ``root``; ValueError names what is wrong."""
    return load_folder(Path(root).resolve() / "source_notebooks" / name)


@functools.cache
def load_folder(folder: Path) -> Assignment:
    """The assignment whose folder is ``folder`` (``<course>/source_notebooks/<name>``), read from its spec."""
    folder = Path(folder).resolve()
    path = folder / SPEC_FILE
    if not path.is_file():
        raise ValueError(f"no assignment {folder.name!r}: {path} is missing")
    spec = tomllib.loads(path.read_text())
    answers = {key: _answer(path, key, a) for key, a in spec.get("answers", {}).items()}
    graded = {}
    for grade_id, cell in spec.get("checks", {}).items():
        if cell.get("answer") not in answers:
            raise ValueError(f"{path}: checks.{grade_id} needs an answer, one of {', '.join(answers)}")
        graded[grade_id] = Graded(grade_id, int(cell["points"]), tuple(cell["scenarios"]), cell["answer"],
                                  tuple(cell.get("tests", ())), bool(cell.get("catch_all", False)), cell.get("hint", ""))
    scenarios = [s for g in graded.values() for s in g.scenarios]
    if len(scenarios) != len(set(scenarios)):
        raise ValueError(f"{path}: a scenario decides more than one cell")
    return Assignment(
        folder.name, folder, spec.get("title", folder.name), spec["notebook"], folder.parents[1] / spec["contract"],
        answers, graded, {k: int(v) for k, v in spec.get("manual", {}).items()}, spec.get("preamble", ""),
        folder / spec.get("scenarios", "scenarios.py"), folder / spec.get("pitfalls", "pitfalls.toml"),
        tuple(spec.get("tolerance", DEFAULT_TOLERANCE)), {k: tuple(v) for k, v in spec.get("tolerances", {}).items()},
        {k: tuple(v) for k, v in spec.get("exact", {}).items()}, spec.get("constants", {}), spec.get("facts", {}),
    )


def _answer(path: Path, key: str, a: dict) -> Answer:
    if ("source" in a) == ("cell" in a):
        raise ValueError(f"{path}: answers.{key} needs either source (a course file) or cell (a solution cell)")
    return Answer(key, a.get("name", key), a.get("work", "it"), a.get("source"),
                  tuple(a["methods"]) if "methods" in a else None, a.get("cell"))


def imported(reference: str) -> Any:
    """``"package.module:attribute"`` -> that attribute."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


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


def text_cells(spec: Assignment) -> list[TextCell]:
    return parse_cells(spec.text.read_text())


def cell_body(spec: Assignment, grade_id: str) -> str:
    """The body of notebook.md's code cell ``grade_id``, its facts not yet filled."""
    found = [c.body for c in text_cells(spec) if c.kind in CODE_KINDS - {"answer"} | {"cut"} and c.grade_id == grade_id]
    if len(found) != 1:
        raise ValueError(f"{spec.text} has {len(found)} code cells {grade_id!r}, expected one")
    return found[0]


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
