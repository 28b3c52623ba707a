"""pytest plugin of the student kit: test the notebook's own answer cells with the assignment's contract tests.

The generator copies it to ``release/<assignment>/conftest.py`` with the assignment's answer
cells (``ANSWERS``, ``CLASSES``) and notebook (``NOTEBOOK``) filled in from its spec. It loads
``g2c.checks``, so each failure reads as in the notebook's check cells: the pitfall in plain words first.

The answer cells are the code cells whose nbgrader ``grade_id`` is a key of ``ANSWERS`` (a
duplicated cell keeps its id, and later copies win, as in the kernel). Their code runs in one
fresh module, which ``G2C_TRAINING_MODULE`` (``g2c.checks.IMPLEMENTATION``) names. A missing or
broken cell gives a stand-in that fails its tests with a clear message instead of breaking
collection. The tests read the saved notebook: save it before running pytest. (The notebook's
check cells run the same tests without this file, on the kernel's objects: ``g2c.checks``.)

Student code must not weaken the checks: the namespaces the tests take their references,
inputs and comparisons from (torch and its optim, nn.utils, testing modules, the Tensor class,
math, pytest) are captured before any answer code runs and restored before every test, and a
test during which any of their names was rebound fails. This keeps a student's own checks
honest; grades never depend on it (``g2c autograde`` decides them outside the student's code).
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.testing

from g2c.checks import IMPLEMENTATION

pytest_plugins = ["g2c.checks"]
MODULE_NAME = "g2c_notebook_answers"
# Filled in from the assignment's spec by the generator (g2c.grading.notebook_build.kit_conftest):
ANSWERS = {}  # answer cell grade_id -> what it defines
CLASSES = []  # those objects that are classes
NOTEBOOK = ""  # the notebook's file name, beside this file
GUARDED = {
    "torch": torch, "torch.testing": torch.testing, "torch.optim": torch.optim, "torch.optim.AdamW": torch.optim.AdamW,
    "torch.optim.Adam": torch.optim.Adam, "torch.optim.Optimizer": torch.optim.Optimizer, "torch.nn.utils": torch.nn.utils,
    "torch.nn.functional": torch.nn.functional, "torch.Tensor": torch.Tensor, "math": math, "pytest": pytest,
}


def _use_references_once() -> None:
    """torch rebinds some of its own names on first use (torch._dynamo wraps torch.manual_seed)."""
    param = torch.zeros(2, requires_grad=True)
    param.grad = torch.ones(2)
    torch.optim.AdamW([param], lr=0.1, foreach=False).step()
    torch.nn.utils.clip_grad_norm_([param], 1.0)


_use_references_once()
_ORIGINALS = {label: (owner, dict(vars(owner))) for label, owner in GUARDED.items()}
_MISSING = object()


def answer_sources(notebook: Path) -> dict[str, list[str]]:
    """grade_id -> the sources of every code cell carrying it, in notebook order."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    found: dict[str, list[str]] = {grade_id: [] for grade_id in ANSWERS}
    for cell in cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("cell_type") == "code" and grade_id in found:
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            # IPython-only lines (magics, shell escapes) mean nothing to plain Python.
            lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
            found[grade_id].append("\n".join(lines))
    return found


def _stand_in(name: str, reason: str):
    def fail(*args, **kwargs):
        raise NotImplementedError(reason)

    if name in CLASSES:  # no instance can be made, so every test of it fails with the reason
        return type(name, (), {"__init__": fail})
    return fail


def load_answers(notebook: Path) -> types.ModuleType:
    """Run the answer cells of ``notebook`` in a fresh module and register it for import."""
    module = types.ModuleType(MODULE_NAME, f"answer cells of {notebook}")
    for grade_id, sources in answer_sources(notebook).items():
        name = ANSWERS[grade_id]
        if not sources:
            setattr(module, name, _stand_in(name, f"the answer cell '{grade_id}' is missing from {Path(notebook).name}"))
            continue
        for source in sources:
            try:
                exec(compile(source, f"<answer cell {grade_id}>", "exec"), module.__dict__)
            except Exception as err:  # a broken cell fails its own tests, never the others
                setattr(module, name, _stand_in(name, f"the answer cell '{grade_id}' raised {type(err).__name__}: {err}"))
        if not hasattr(module, name):
            setattr(module, name, _stand_in(name, f"the answer cell '{grade_id}' does not define {name}"))
        elif str(getattr(getattr(module, name), "__module__", "")).startswith(("g2c.", "torch.")):
            setattr(module, name, _stand_in(name, f"the answer cell '{grade_id}' imports {name} instead of writing it"))
    _restore()
    sys.modules[MODULE_NAME] = module
    os.environ[IMPLEMENTATION] = MODULE_NAME
    return module


def _rebound(owner: object, originals: dict[str, object]) -> list[str]:
    now = vars(owner)
    return [name for name, original in originals.items() if now.get(name, _MISSING) is not original]


def _tampered() -> list[str]:
    return [f"{label}.{name}" for label, (owner, originals) in _ORIGINALS.items() for name in _rebound(owner, originals)]


def _restore() -> None:
    for owner, originals in _ORIGINALS.values():
        for name in _rebound(owner, originals):
            setattr(owner, name, originals[name])


def notebook_path() -> Path:
    return Path(os.environ.get("G2C_NOTEBOOK") or Path(__file__).with_name(NOTEBOOK))


load_answers(notebook_path())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _restore()
    outcome = yield
    replaced = _tampered()
    _restore()
    if replaced:
        outcome.force_exception(AssertionError(f"your code replaced {', '.join(replaced)}: the test cannot trust its result"))
