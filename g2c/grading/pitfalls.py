"""An assignment's pitfalls as mutants of its reference: what a wrong answer's data looks like.

The catalogue is data (the assignment's ``pitfalls.toml``): each pitfall is a small edit of one
answer's reference (a few lines of its ``### BEGIN SOLUTION`` region replaced, or, for
delegation, a whole new region body). The reference of a cut answer is its course file; of a
value answer, its solution cell in notebook.md. The comparator runs the probe's scenarios on the
mutants to name a student's mistake and to avoid charging one mistake to the cells of another.
Grader side only: this module reads the reference solutions.
"""

from __future__ import annotations

import functools
import itertools
import tomllib
from dataclasses import dataclass
from typing import Any

from g2c.grading import regions
from g2c.grading.assignment import Assignment, cell_body, fill


@dataclass(frozen=True)
class Pitfall:
    """One wrong answer: ``edits`` maps a line of the reference (stripped) to the lines that replace
    it (indented like it), or ``body`` replaces the whole region (then it pairs with nothing).
    ``charged_to``: the scenarios whose cells it costs besides its answer's catch-all cells."""

    name: str
    answer: str
    charged_to: tuple[str, ...]
    message: str
    edits: tuple[tuple[str, tuple[str, ...]], ...] = ()
    body: str | None = None


def compatible(a: Pitfall, b: Pitfall) -> bool:
    """Two pitfalls combine when both are edits of the same answer touching different lines."""
    if a.answer != b.answer or a.body is not None or b.body is not None or a.name == b.name:
        return False
    return not {old for old, _ in a.edits} & {old for old, _ in b.edits}


class Catalogue:
    """The pitfalls of one assignment and the mutants built from them (cached: a batch builds each once)."""

    def __init__(self, spec: Assignment) -> None:
        self.spec = spec
        data = tomllib.loads(spec.pitfalls.read_text()) if spec.pitfalls.is_file() else {}
        self.pitfalls = tuple(_pitfall(spec, entry) for entry in data.get("pitfall", []))
        self.by_name = {p.name: p for p in self.pitfalls}
        if len(self.by_name) != len(self.pitfalls):
            raise ValueError(f"{spec.pitfalls}: two pitfalls share a name")
        self._built: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._pairs: dict[str, tuple[tuple[Pitfall, Pitfall], ...]] = {}

    def of(self, answer: str) -> list[Pitfall]:
        """The pitfalls of one answer, in catalogue order."""
        return [p for p in self.pitfalls if p.answer == answer]

    def pairs(self, answer: str) -> tuple[tuple[Pitfall, Pitfall], ...]:
        """Every combinable pair of one answer's pitfalls: a student may make two mistakes."""
        if answer not in self._pairs:
            self._pairs[answer] = tuple((a, b) for a, b in itertools.combinations(self.of(answer), 2)
                                        if compatible(a, b) and self._applies(answer, (a.name, b.name)))
        return self._pairs[answer]

    def _applies(self, answer: str, names: tuple[str, ...]) -> bool:
        try:
            self.mutated_source(answer, names)
        except ValueError:
            return False
        return True

    def reference_source(self, answer: str) -> str:
        """The answer's reference: its course file (cut), or its solution cell with its facts unfilled (value)."""
        a = self.spec.answers[answer]
        return (self.spec.root / a.source).read_text() if a.source else cell_body(self.spec, a.cell) + "\n"

    def mutated_source(self, answer: str, names: tuple[str, ...]) -> str:
        """The reference with the named pitfalls applied to its one solution region (a value answer's
        whole cell).

        ValueError when an edit's line is not exactly once in the region (the reference changed:
        update the catalogue) or when two pitfalls cannot combine.
        """
        source = self.reference_source(answer)
        lines = source.splitlines()
        if self.spec.answers[answer].source:
            found = regions._regions(source)
            if len(found) != 1:
                raise ValueError(f"{self.spec.answers[answer].source} has {len(found)} solution regions, expected one")
            begin, end, _ = found[0]
        else:
            begin, end = -1, len(lines)
        region = lines[begin + 1 : end]
        chosen = [self.by_name[n] for n in names]
        for a, b in itertools.combinations(chosen, 2):
            if not compatible(a, b):
                raise ValueError(f"pitfalls {a.name} and {b.name} do not combine")
        for pitfall in chosen:
            if pitfall.body is not None:
                region = pitfall.body.strip("\n").splitlines()  # written at the region's indentation
                continue
            for old, new in pitfall.edits:
                at = [i for i, line in enumerate(region) if line.strip() == old]
                if len(at) != 1:
                    raise ValueError(f"pitfall {pitfall.name}: {old!r} is {len(at)} times in the reference of {answer}")
                pad = region[at[0]][: len(region[at[0]]) - len(region[at[0]].lstrip())]
                region[at[0] : at[0] + 1] = [pad + line for line in new]  # () deletes the line
        return "\n".join(lines[: max(begin, 0)] + region + lines[end + 1 :]) + "\n"

    def build(self, answer: str, names: tuple[str, ...]) -> Any:
        """The answer's object (class, function or value) with the named pitfalls applied (built once)."""
        if (answer, names) not in self._built:
            self._built[answer, names] = self._build(answer, names)
        return self._built[answer, names]

    def _build(self, answer: str, names: tuple[str, ...]) -> Any:
        a = self.spec.answers[answer]
        namespace: dict[str, Any] = {"__name__": f"g2c_pitfall_{answer}"}
        if a.source:
            code = self.mutated_source(answer, names)
        else:  # a solution cell runs after the probe's preamble, as the student's does
            from g2c.grading.notebook_build import facts

            known = facts(self.spec)
            code = fill(self.spec.preamble, known) + "\n" + fill(self.mutated_source(answer, names), known)
        exec(compile(code, f"<g2c pitfall {answer}: {'+'.join(names) or 'reference'}>", "exec"), namespace)
        return namespace[a.name]

    def namespace(self, answer: str, names: tuple[str, ...]) -> dict[str, Any]:
        """What the probe's scenarios read: the mutant (``names`` empty: the reference) under its public name."""
        return {self.spec.answers[answer].name: self.build(answer, names)}


def _pitfall(spec: Assignment, entry: dict) -> Pitfall:
    if entry.get("answer") not in spec.answers:
        raise ValueError(f"{spec.pitfalls}: pitfall {entry.get('name')!r} names no answer of the spec")
    edits = tuple((old, tuple(new)) for old, new in entry.get("edits", ()))
    return Pitfall(entry["name"], entry["answer"], tuple(entry.get("charged_to", ())), entry["message"], edits,
                   entry.get("body"))


@functools.cache
def catalogue(spec: Assignment) -> Catalogue:
    return Catalogue(spec)

