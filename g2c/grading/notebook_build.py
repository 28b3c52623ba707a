"""Generate an assignment's source notebook and its student release from its folder of data.

- The notebook's text is ``source_notebooks/<assignment>/notebook.md`` and its facts (points,
  checks, answers, constants) ``assignment.toml`` (``g2c.grading.assignment``).
- Answer cells (``:answer: adamw``) are cut from ``g2c/training`` with their
  ``### BEGIN SOLUTION`` regions intact (nbgrader strips them on release).
- Visible test code is cut from the contract file (test functions and the helpers they use);
  hidden parts only name the probe scenarios ``g2c autograde`` decides them by.
- The kit's pytest files (the contract, ``conftest.py``) are written beside the source notebook,
  so that nbgrader itself copies them into ``release/``: ``make release``,
  ``nbgrader generate_assignment --force`` and formgrader's Generate button give the same kit.
- ``release`` runs real ``nbgrader generate_assignment`` with the course's configuration.

``python -m g2c.grading.notebook_build [--release]`` rewrites the files; CI regenerates and
fails on any difference (``make check-release``).
"""

from __future__ import annotations

import argparse
import ast
import functools
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from g2c.grading import assignment, path_with_this_environment
from g2c.widgets.diagnosis import KINDS

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "03b-training"
SPEC = assignment.load(ASSIGNMENT)
NOTEBOOK = SPEC.notebook
TRAINING = ROOT / "g2c" / "training"
CONTRACT = SPEC.contract

# Views of the spec the grader reads. answer -> [(grade_id, points, visible contract tests, probe scenarios)]
TEST_CELLS = {name: [(g.grade_id, g.points, list(g.tests), list(g.scenarios)) for g in SPEC.graded.values() if g.answer == name]
              for name in SPEC.answers}
# grade_id -> (points, probe scenarios) of the exercises whose answer is a value
AUTOGRADED_EXERCISES = {g.grade_id: (g.points, list(g.scenarios)) for g in SPEC.graded.values() if g.answer is None}
PROBED_CELLS = list(SPEC.probed)


def autograded_points() -> dict[str, int]:
    """grade_id -> points of every autograded cell, in notebook order."""
    return {g.grade_id: g.points for g in SPEC.graded.values()}


def scenarios_of() -> dict[str, list[str]]:
    """grade_id -> the probe scenarios that decide it."""
    return {g.grade_id: list(g.scenarios) for g in SPEC.graded.values()}


def contract_names() -> list[str]:
    """The contract's test functions, in file order."""
    return re.findall(r"^def (test_\w+)", CONTRACT.read_text(), re.M)


def graded_tests() -> list[str]:
    """The contract tests shown in the notebook's test cells: the parts students write."""
    return [test for g in SPEC.graded.values() for test in g.tests]


def given_tests() -> int:
    """How many contract tests pass on the untouched kit: those of the code students receive written."""
    return len(contract_names()) - len(graded_tests())


def hidden_part(scenarios: list[str]) -> str:
    """A test cell's hidden part: inert text naming the probes that decide its points.

    Nothing of it runs in the student's kernel (the grader strips it before the notebook runs);
    ``g2c autograde`` reads the names from the source notebook.
    """
    return (
        f"### BEGIN HIDDEN TESTS\n# graded outside your notebook by g2c autograde: {', '.join(scenarios)}\n"
        "### END HIDDEN TESTS"
    )


MANUAL_CELLS = SPEC.manual
BY_HAND = SPEC.constants["by_hand"]  # exercise 2: one scalar AdamW step


@functools.cache
def diagnosis_key() -> dict[str, str]:
    """Exercise 7's answer: ``diagnose`` (the classifier of every widget and figure) on the runs the
    notebook's ``curves`` cell makes, run here from the notebook's own text."""
    import torch

    from g2c.data import regression, tokens
    from g2c.nn import MLP, TinyLM, seeded
    from g2c.training import SGD, train
    from g2c.widgets.diagnosis import diagnose

    (curves,) = [cell.body for cell in text_cells() if cell.grade_id == "curves"]
    namespace = {
        "torch": torch, "regression": regression, "tokens": tokens, "MLP": MLP,
        "TinyLM": TinyLM, "seeded": seeded, "SGD": SGD, "train": train,
    }
    exec(curves, namespace)
    return {name: diagnose(history).label for name, history in namespace["curves"].items()}


def text_cells() -> list[assignment.TextCell]:
    return assignment.parse_cells(SPEC.text.read_text())


# What the probe runs before the probed cells: only what an answer may use (not the setup cell:
# its g2c names, train among them, would reach torch's clipping).
PROBE_PREAMBLE = f"import math\n\nimport torch\n\nKINDS = {KINDS!r}\n"


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


def answer_source(module: str, name: str, methods: list[str] | None = None, text: str | None = None) -> str:
    """``name`` (with only ``methods`` if a class) from ``g2c/training/<module>.py`` (or ``text``), imports first."""
    text = (TRAINING / f"{module}.py").read_text() if text is None else text
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


ANSWER_CELLS = {gid: (a.module, a.name, list(a.methods) if a.methods else None) for gid, a in SPEC.answers.items()}


def answer_sources(texts: dict[str, str] | None = None) -> dict[str, str]:
    """grade_id -> answer cell source; ``texts`` (module -> source) replaces the reference files."""
    texts = texts or {}
    return {gid: answer_source(mod, name, methods, texts.get(mod)) for gid, (mod, name, methods) in ANSWER_CELLS.items()}


def contract_code(tests: list[str]) -> str:
    """The named tests of tests/test_training.py plus every module-level helper they need."""
    text = CONTRACT.read_text()
    tree, lines = ast.parse(text), text.splitlines()
    defs: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defs[node.name] = node
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            for target in node.targets:
                defs.setdefault(target.id, node)
    skip = {"AdamW", "clip_grad_norm_", "cosine_with_warmup", "impl"}  # the notebook's own
    wanted, queue = [], list(tests)
    while queue:
        name = queue.pop()
        if name in wanted or name in skip or name not in defs:
            continue
        wanted.append(name)
        queue.extend(n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name))
    ordered = sorted({id(defs[n]): defs[n] for n in wanted}.values(), key=lambda n: n.lineno)
    return "\n\n\n".join(_segment(lines, n) for n in ordered)


# ---------------------------------------------------------------- the reference numbers


def by_hand_values() -> dict[str, float]:
    """Exercise 2's answer and its two classic wrong answers, from torch.optim.AdamW at build time."""
    import torch

    h = BY_HAND

    def first_step(weight_decay: float, l2: float = 0.0) -> float:
        p = torch.tensor([h["p"]], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.AdamW([p], lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=weight_decay)
        p.grad = torch.tensor([h["g"] + l2 * h["p"]], dtype=torch.float64)
        opt.step()
        return p.item()

    m, v = (1 - h["beta1"]) * h["g"], (1 - h["beta2"]) * h["g"] ** 2
    no_bias = h["p"] * (1 - h["lr"] * h["weight_decay"]) - h["lr"] * m / (math.sqrt(v) + h["eps"])
    return {
        "right": first_step(h["weight_decay"]),
        "adam_l2": first_step(0.0, l2=h["weight_decay"]),
        "no_bias_correction": no_bias,
    }


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


def test_cell(graded: assignment.Graded, own_checks: str) -> nbformat.NotebookNode:
    """``%%check``, the visible checks (cut from the contract, or the cell's own), then the hidden part."""
    if graded.tests:
        visible = (
            f"# Visible checks (from {CONTRACT.relative_to(ROOT)}); hidden ones run when graded.\n"
            f"{contract_code(list(graded.tests))}"
        )
    else:
        visible = own_checks
    return code(
        f"%%check\n{visible}\n\n{hidden_part(list(graded.scenarios))}",
        graded.grade_id, grade=True, locked=True, points=graded.points,
    )


def solution(text: str) -> str:
    return f"### BEGIN SOLUTION\n{text.strip()}\n### END SOLUTION"


def facts() -> dict[str, object]:
    """What ``{{name}}`` in notebook.md may name: the spec's constants and what is derived from the package."""
    return {
        **SPEC.constants,
        "given": given_tests(),
        "failing": len(graded_tests()),
        "KINDS": KINDS,
        "diagnosis_key": diagnosis_key(),
    }


def cell_of(cell: assignment.TextCell, answers: dict[str, str], known: dict[str, object]) -> nbformat.NotebookNode:
    body = assignment.fill(cell.body, known)
    if cell.kind == "markdown":
        return md(body)
    if cell.kind == "answer":
        return md(solution(body), cell.grade_id, grade=True, solution=True, points=MANUAL_CELLS[cell.grade_id])
    if cell.kind == "locked":
        return code(body, cell.grade_id, locked=True)
    if cell.kind == "solution":
        return code(solution(body), cell.grade_id, solution=True)
    if cell.kind == "cut":
        return code(answers[cell.grade_id], cell.grade_id, solution=True)
    if cell.kind == "checks":
        return test_cell(SPEC.graded[cell.grade_id], body)
    widget = code(body)  # a g2c widget: pictures for the student, never graded nor run by the grader
    widget.metadata["tags"] = [WIDGET_TAG, GOES_ON]
    return widget


def cells() -> list[nbformat.NotebookNode]:
    answers, known = answer_sources(), facts()
    return [cell_of(cell, answers, known) for cell in text_cells()]


def build_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = cells()
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives the same file
        cell.id = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell-{i:02d}").replace("_", "-")
    nbformat.validate(nb)
    return nb


def source_path(root: Path = ROOT) -> Path:
    return root / "source_notebooks" / ASSIGNMENT / NOTEBOOK


# kit file (relative to the assignment folder) -> where it comes from
KIT_FILES = {CONTRACT.relative_to(ROOT): CONTRACT, Path("conftest.py"): Path(__file__).with_name("kit_conftest.py")}


def write_source(root: Path = ROOT) -> Path:
    """The source notebook and, beside it, the kit's pytest files nbgrader copies on release."""
    path = source_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(build_notebook(), path)
    for name, origin in KIT_FILES.items():
        (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, path.parent / name)
    return path


def release(root: Path = ROOT) -> Path:
    """Regenerate the source folder and run nbgrader's own ``generate_assignment`` (course config:
    its gradebook gets the assignment; the kit's files come along as in formgrader's Generate)."""
    write_source(root)
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force", "--log-level=WARN"],
        cwd=root, check=True, env={**os.environ, "PATH": path_with_this_environment()},
    )
    return root / "release" / ASSIGNMENT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", action="store_true", help="also run nbgrader generate_assignment into release/")
    args = parser.parse_args(argv)
    print(release() if args.release else write_source())
    return 0


if __name__ == "__main__":
    sys.exit(main())
