"""Generate an assignment's source notebook and its student release from its folder of data.

- The notebook's text is ``source_notebooks/<assignment>/notebook.md`` and its facts (points,
  checks, answers, constants) ``assignment.toml`` (``g2c.grading.assignment``).
- Answer cells (``:answer: adamw``) are cut from the course file the spec names, with their
  ``### BEGIN SOLUTION`` regions intact (nbgrader strips them on release).
- A test cell names the contract tests it runs (``%%check tests/test_x.py`` and one name a line): their
  source lives once, in the contract file the kit carries beside the notebook; a cell with checks of its
  own carries their asserts. Hidden parts only name the probe scenarios ``g2c autograde`` decides them by.
- The kit's pytest files (the contract, ``conftest.py``) are written beside the source notebook,
  so that nbgrader itself copies them into ``release/``: ``make release``,
  ``nbgrader generate_assignment --force`` and formgrader's Generate button give the same kit.
- ``release`` runs real ``nbgrader generate_assignment`` with the course's configuration.

``python -m g2c.grading.notebook_build [ASSIGNMENT...] [--release]`` rewrites the files; CI regenerates and
fails on any difference (``make check-release``).
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat

from g2c.grading import path_with_this_environment
from g2c.grading.assignment import (
    FACTS_FILE,
    Assignment,
    Graded,
    TextCell,
    cell_body,
    fill,
    imported,
    load,
    names,
    text_cells,
)


def contract_names(spec: Assignment) -> list[str]:
    """The contract's test functions, in file order."""
    return re.findall(r"^def (test_\w+)", spec.contract.read_text(), re.M)


def graded_tests(spec: Assignment) -> list[str]:
    """The contract tests the notebook's test cells run: the parts students write."""
    return [test for g in spec.graded.values() for test in g.tests]


def given_tests(spec: Assignment) -> int:
    """How many contract tests pass on the untouched kit: those of the code students receive written."""
    return len(contract_names(spec)) - len(graded_tests(spec))


def autograded_points(spec: Assignment) -> dict[str, int]:
    """grade_id -> points of every autograded cell, in notebook order."""
    return {g.grade_id: g.points for g in spec.graded.values()}


def hidden_part(scenarios: list[str]) -> str:
    """A test cell's hidden part: inert text naming the probes that decide its points.

    Nothing of it runs in the student's kernel (the grader strips it before the notebook runs);
    ``g2c autograde`` reads the names from the source notebook.
    """
    return (
        f"### BEGIN HIDDEN TESTS\n# graded outside your notebook by g2c autograde: {', '.join(scenarios)}\n"
        "### END HIDDEN TESTS"
    )


class Facts(Mapping[str, Any]):
    """What ``{{name}}`` may name in notebook.md and the preamble: the spec's constants, the contract's
    counts and the computed facts (a package attribute, or a function of a cell's source).

    A computed fact is computed when first read: the preamble names KINDS only, and the
    diagnosis key trains real runs (2.7 s of each grading worker's first job, for nothing).
    """

    def __init__(self, spec: Assignment) -> None:
        self.spec = spec
        self.known: dict[str, Any] = {**spec.constants, "given": given_tests(spec), "failing": len(graded_tests(spec))}

    def __getitem__(self, name: str) -> Any:
        if name not in self.known and name in self.spec.computed:
            how = self.spec.computed[name]
            self.known[name] = imported(how) if isinstance(how, str) else imported(how["call"])(cell_body(self.spec, how["cell"]))
        return self.known[name]

    def recorded(self) -> dict[str, Any]:
        """The facts computed by calling a function on a cell (the diagnosis key trains real runs): FACTS_FILE's, and
        what a grading coordinator sends its workers (``learn``)."""
        return {name: self[name] for name, how in self.spec.computed.items() if not isinstance(how, str)}

    def learn(self, values: dict[str, Any]) -> None:
        """Take computed facts another process computed from the same course files, instead of computing them."""
        self.known.update({name: value for name, value in values.items() if name in self.spec.computed})

    def __contains__(self, name: object) -> bool:
        return name in self.known or name in self.spec.computed

    def __iter__(self) -> Iterator[str]:
        return iter({**self.known, **dict.fromkeys(self.spec.computed)})

    def __len__(self) -> int:
        return len(set(self.known) | set(self.spec.computed))


@functools.cache
def facts(spec: Assignment) -> Facts:
    """The assignment's facts (one ``Facts`` per process: each computed fact is computed once)."""
    return Facts(spec)


def grading_facts(spec: Assignment) -> dict[str, Any]:
    """The facts that train runs, for a grading run's workers: as FACTS_FILE records them (`make release` computed
    them, filled the source notebook's solutions from the same values, and `make check-release` proves both
    current), else computed here. A worker reads the others itself (package attributes its server preloaded)."""
    path = spec.folder / FACTS_FILE
    if path.is_file():
        facts(spec).learn(json.loads(path.read_text()))
    return facts(spec).recorded()


def facts_text(spec: Assignment) -> str:
    """FACTS_FILE's text: the recorded facts, checked to read back as they are (JSON keeps no tuple)."""
    recorded = facts(spec).recorded()
    if json.loads(json.dumps(recorded)) != recorded:
        raise ValueError(f"{spec.name}: a computed fact does not survive JSON: {recorded!r}")
    return json.dumps(recorded, indent=1, sort_keys=True) + "\n"


def preamble(spec: Assignment) -> str:
    """What the probe runs before the answer cells (facts filled)."""
    return fill(spec.preamble, facts(spec)).strip() + "\n"


# ---------------------------------------------------------------- cutting code out of modules


def _segment(lines: list[str], node: ast.AST) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    end = node.end_lineno  # the AST ends at the last statement: keep trailing comments (### END SOLUTION)
    while (
        end < len(lines)
        and lines[end].strip().startswith("#")
        and len(lines[end]) - len(lines[end].lstrip()) > node.col_offset
    ):
        end += 1
    return "\n".join(lines[start - 1 : end])


def _imports(tree: ast.Module, lines: list[str]) -> list[str]:
    return [
        _segment(lines, n)
        for n in tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom)) and getattr(n, "module", None) != "__future__"
    ]


def answer_source(text: str, name: str, methods: tuple[str, ...] | None = None) -> str:
    """``name`` (with only ``methods`` if a class) from a module's ``text``, imports first."""
    tree, lines = ast.parse(text), text.splitlines()
    node = next(n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name)
    if methods is None:
        body = _segment(lines, node)
    else:
        header_end = node.body[1].lineno - 1 if ast.get_docstring(node) else node.body[0].lineno - 1
        parts = ["\n".join(lines[node.lineno - 1 : header_end]).rstrip()]
        for method in methods:
            member = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == method)
            parts.append(_segment(lines, member))
        body = "\n\n".join(parts)
    return "\n".join(_imports(tree, lines)) + "\n\n\n" + body


def answer_sources(spec: Assignment, texts: dict[str, str] | None = None) -> dict[str, str]:
    """grade_id -> source of each cut answer's cell; ``texts`` (answer -> module source) replaces its course file."""
    texts = texts or {}
    return {a.grade_id: answer_source(texts.get(a.key) or (spec.root / a.source).read_text(), a.name, a.methods)
            for a in spec.answers.values() if a.source}


# ---------------------------------------------------------------- cells


def _meta(grade_id: str, *, grade=False, solution=False, locked=False, points=0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def md(text: str, grade_id: str | None = None, **kw) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(text.strip())
    if grade_id:
        cell.metadata.update(_meta(grade_id, **kw))
    return cell


GOES_ON = "raises-exception"  # Jupyter's Run All (and nbclient, nbgrader's Validate) go on past such a cell's error


def code(text: str, grade_id: str | None = None, **kw) -> nbformat.NotebookNode:
    """A code cell; all but the setup carry ``raises-exception``, so one failure never stops Run All."""
    cell = nbformat.v4.new_code_cell(text.strip())
    if grade_id:
        cell.metadata.update(_meta(grade_id, **kw))
    if grade_id != "setup":
        cell.metadata["tags"] = [GOES_ON]
    return cell


WIDGET_TAG = "widget"


def test_cell(spec: Assignment, graded: Graded, own_checks: str) -> nbformat.NotebookNode:
    """``%%check`` and the contract tests it runs by name (the kit's copy of the contract file sits at the same
    path from the notebook as the contract from the course root), or the cell's own asserts; then the hidden part."""
    if graded.tests:
        visible = f"%%check {spec.contract.relative_to(spec.root).as_posix()}\n" + "\n".join(graded.tests)
    else:
        visible = f"%%check\n{own_checks}"
    return code(
        f"{visible}\n\n{hidden_part(list(graded.scenarios))}",
        graded.grade_id, grade=True, locked=True, points=graded.points,
    )


def solution(text: str) -> str:
    return f"### BEGIN SOLUTION\n{text.strip()}\n### END SOLUTION"


def cell_of(spec: Assignment, cell: TextCell, answers: dict[str, str], known: dict[str, Any]) -> nbformat.NotebookNode:
    body = fill(cell.body, known)
    if cell.kind == "markdown":
        return md(body)
    if cell.kind == "answer":
        return md(solution(body), cell.grade_id, grade=True, solution=True, points=spec.manual[cell.grade_id])
    if cell.kind == "locked":
        return code(body, cell.grade_id, locked=True)
    if cell.kind == "solution":
        return code(solution(body), cell.grade_id, solution=True)
    if cell.kind == "cut":
        return code(answers[cell.grade_id], cell.grade_id, solution=True)
    if cell.kind == "checks":
        return test_cell(spec, spec.graded[cell.grade_id], body)
    widget = code(body)  # a g2c widget: pictures for the student, never graded nor run by the grader
    widget.metadata["tags"] = [WIDGET_TAG, GOES_ON]
    return widget


def build_notebook(spec: Assignment, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The source notebook (solutions in their regions); ``answers`` (grade_id -> source) replaces cut answers."""
    answers, known = {**answer_sources(spec), **(answers or {})}, facts(spec)
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = [cell_of(spec, cell, answers, known) for cell in text_cells(spec)]
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives the same file
        cell.id = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell-{i:02d}").replace("_", "-")
    nbformat.validate(nb)
    return nb


def source_path(spec: Assignment) -> Path:
    return spec.folder / spec.notebook


KIT_CONFTEST = Path(__file__).with_name("kit_conftest.py")


def kit_conftest(spec: Assignment) -> str:
    """The kit's pytest plugin: ``kit_conftest.py`` with the assignment's answer cells and notebook."""
    answers = {a.grade_id: a.name for a in spec.answers.values() if a.source}
    classes = sorted(a.name for a in spec.answers.values() if a.source and a.methods)
    text = KIT_CONFTEST.read_text()
    for name, value in (("ANSWERS", answers), ("CLASSES", classes), ("NOTEBOOK", spec.notebook)):
        line = f"{name} = {json.dumps(value)}"
        text, n = re.subn(rf"^{name} = .*?(  #.*)?$", lambda m, line=line: line + (m.group(1) or ""), text, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"{KIT_CONFTEST} has no line {name} = ...")
    return text


def kit_files(spec: Assignment) -> dict[Path, str]:
    """The kit's pytest files (relative to the assignment folder) and their text."""
    return {spec.contract.relative_to(spec.root): spec.contract.read_text(), Path("conftest.py"): kit_conftest(spec)}


def write_source(spec: Assignment) -> Path:
    """The source notebook and, beside it, the kit's pytest files nbgrader copies on release."""
    path = source_path(spec)
    nbformat.write(build_notebook(spec), path)
    (spec.folder / FACTS_FILE).write_text(facts_text(spec))
    for name, text in kit_files(spec).items():
        (spec.folder / name).parent.mkdir(parents=True, exist_ok=True)
        (spec.folder / name).write_text(text)
    return path


def release(spec: Assignment) -> Path:
    """Regenerate the source folder and run nbgrader's own ``generate_assignment`` (course config:
    its gradebook gets the assignment; the kit's files come along as in formgrader's Generate)."""
    write_source(spec)
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", spec.name, "--force", "--log-level=WARN"],
        cwd=spec.root, check=True, env={**os.environ, "PATH": path_with_this_environment()},
    )
    return spec.root / "release" / spec.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="folder names under source_notebooks/ (default: all)")
    parser.add_argument("--course", type=Path, default=Path.cwd(), help="the course root (default: here)")
    parser.add_argument("--release", action="store_true", help="also run nbgrader generate_assignment into release/")
    args = parser.parse_args(argv)
    for name in args.assignments or names(args.course):
        spec = load(name, args.course)
        print(release(spec) if args.release else write_source(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
