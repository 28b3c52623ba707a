"""Generate the assignment's source notebook and its student release from the one source of truth.

- Answer cells ``adamw``, ``clip`` and ``schedule`` are cut from ``g2c/training`` with their
  ``### BEGIN SOLUTION`` regions intact (nbgrader strips them on release).
- Visible test code is cut from ``tests/test_training.py`` (test functions and the helpers
  they use); hidden parts only name the probe scenarios ``g2c autograde`` decides them by.
- The kit's pytest files (``tests/test_training.py``, ``conftest.py``) are written beside the
  source notebook, so that nbgrader itself copies them into ``release/``: ``make release``,
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

from g2c.grading import path_with_this_environment
from g2c.widgets.diagnosis import KINDS

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "03b-training"
NOTEBOOK = "training.ipynb"
TRAINING = ROOT / "g2c" / "training"
CONTRACT = ROOT / "tests" / "test_training.py"

# (grade_id, points, visible contract tests, probe scenarios that decide it); every pitfall has a cell.
TEST_CELLS = {
    "adamw": [
        ("test_adamw_bias_correction", 1, ["test_adamw_first_step_by_hand"], ["adamw_first_step"]),
        ("test_adamw_matches_torch", 3, ["test_adamw_matches_torch_float64_over_many_steps", "test_adamw_matches_torch_float32_over_many_steps"],
         ["adamw_trajectory_float64", "adamw_trajectory_float32"]),
        ("test_adamw_decoupled_decay", 1, ["test_adamw_weight_decay_is_decoupled"], ["adamw_decoupled_decay"]),
        ("test_adamw_step_counter", 1, ["test_adamw_step_counter_advances_once_per_step"], ["adamw_step_counter"]),
        ("test_adamw_no_autograd", 1, ["test_adamw_update_is_not_recorded_by_autograd"], ["adamw_no_autograd"]),
        ("test_adamw_frozen_params", 1, ["test_adamw_leaves_parameters_without_grad_untouched"], ["adamw_frozen"]),
    ],
    "clip": [
        ("test_clip_matches_torch", 2, ["test_clip_matches_torch_norm_and_grads"], ["clip_matches"]),
        ("test_clip_global", 1, ["test_clip_is_global_not_per_parameter"], ["clip_global"]),
        ("test_clip_small_untouched", 1, ["test_clip_leaves_small_gradients_untouched"], ["clip_small_untouched"]),
        ("test_clip_skips_none_and_eps", 1, ["test_clip_skips_params_without_grad_and_uses_eps"], ["clip_none_and_eps"]),
    ],
    "schedule": [
        ("test_schedule_warmup", 1, ["test_schedule_warmup_is_linear_from_zero"], ["schedule_warmup"]),
        ("test_schedule_cosine", 1, ["test_schedule_cosine_matches_closed_form"], ["schedule_cosine"]),
        ("test_schedule_floor", 1, ["test_schedule_holds_min_lr_after_max_steps"], ["schedule_floor"]),
    ],
}
# grade_id -> (points, probe scenarios) of the exercises whose answer is a value
AUTOGRADED_EXERCISES = {"test_adamw_by_hand": (1, ["by_hand_p1"]), "test_diagnosis": (2, ["diagnosis"])}
# The cells the probe runs on their own, after the preamble, in this order.
PROBED_CELLS = ["adamw", "clip", "schedule", "adamw_by_hand_answer", "diagnosis_answer"]


def autograded_points() -> dict[str, int]:
    """grade_id -> points of every autograded cell, in notebook order."""
    tests = {grade_id: points for cells in TEST_CELLS.values() for grade_id, points, _, _ in cells}
    return tests | {grade_id: points for grade_id, (points, _) in AUTOGRADED_EXERCISES.items()}


def scenarios_of() -> dict[str, list[str]]:
    """grade_id -> the probe scenarios that decide it."""
    tests = {grade_id: scenarios for cells in TEST_CELLS.values() for grade_id, _, _, scenarios in cells}
    return tests | {grade_id: scenarios for grade_id, (_, scenarios) in AUTOGRADED_EXERCISES.items()}


def contract_names() -> list[str]:
    """The contract's test functions, in file order."""
    return re.findall(r"^def (test_\w+)", CONTRACT.read_text(), re.M)


def graded_tests() -> list[str]:
    """The contract tests shown in the notebook's test cells: the parts students write."""
    return [test for cells in TEST_CELLS.values() for _, _, tests, _ in cells for test in tests]


def given_tests() -> int:
    """How many contract tests pass on the untouched kit: those of the code students receive written."""
    return len(contract_names()) - len(graded_tests())


def hidden_part(scenarios: list[str]) -> str:
    """A test cell's hidden part: inert text naming the probes that decide its points.

    Nothing of it runs in the student's kernel (the grader strips it before the notebook runs);
    ``g2c autograde`` reads the names from the source notebook.
    """
    return f"### BEGIN HIDDEN TESTS\n# graded outside your notebook by g2c autograde: {', '.join(scenarios)}\n### END HIDDEN TESTS"


MANUAL_CELLS = {"lr_choice": 1, "schedule_phases": 1, "why_adamw": 2}

# Exercise 2: one scalar AdamW step.
BY_HAND = dict(p=1.0, g=0.5, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
# Exercise 7: name four runs' curves with the module's terms; the key is what the widgets' classifier says.
CURVES = """
def run(model, data, optimizer, steps):
    return train(model, data, optimizer, steps=steps, eval_every=10)

curves = {}
m = seeded(0, lambda: MLP((2, 1))); curves["A"] = run(m, regression(), SGD(m.parameters(), lr=0.1), 300)
m = seeded(0, lambda: TinyLM(12, 2)); curves["B"] = run(m, tokens(n_train=512, batch_size=None), torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0), 150)
m = seeded(0, lambda: MLP((2, 32, 1))); curves["C"] = run(m, regression(), SGD(m.parameters(), lr=1e-3), 200)
m = seeded(0, lambda: MLP((2, 32, 1))); curves["D"] = run(m, regression(), SGD(m.parameters(), lr=1.0), 200)
"""


@functools.cache
def diagnosis_key() -> dict[str, str]:
    """Exercise 7's answer: ``diagnose`` (the classifier of every widget and figure) on the very runs the notebook makes."""
    import torch

    from g2c.data import regression, tokens
    from g2c.nn import MLP, TinyLM, seeded
    from g2c.training import SGD, train
    from g2c.widgets.diagnosis import diagnose

    namespace = {"torch": torch, "regression": regression, "tokens": tokens, "MLP": MLP, "TinyLM": TinyLM, "seeded": seeded, "SGD": SGD, "train": train}
    exec(CURVES, namespace)
    return {name: diagnose(history).label for name, history in namespace["curves"].items()}


# What the probe runs before the probed cells: only what an answer may use (not the setup cell:
# its g2c names, train among them, would reach torch's clipping).
PROBE_PREAMBLE = f"import math\n\nimport torch\n\nKINDS = {KINDS!r}\n"


# ---------------------------------------------------------------- cutting code out of modules


def _segment(lines: list[str], node: ast.AST) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    end = node.end_lineno  # the AST ends at the last statement: keep trailing comments (### END SOLUTION)
    while end < len(lines) and lines[end].strip().startswith("#") and len(lines[end]) - len(lines[end].lstrip()) > node.col_offset:
        end += 1
    return "\n".join(lines[start - 1 : end])


def _imports(tree: ast.Module, lines: list[str]) -> list[str]:
    return [_segment(lines, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and getattr(n, "module", None) != "__future__"]


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


ANSWER_CELLS = {  # grade_id -> (module of g2c/training, name, methods kept if a class)
    "adamw": ("optim", "AdamW", ["__init__", "_check_hyperparameters", "zero_grad", "step"]),
    "clip": ("clip", "clip_grad_norm_", None),
    "schedule": ("schedule", "cosine_with_warmup", None),
}


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
    return {"right": first_step(h["weight_decay"]), "adam_l2": first_step(0.0, l2=h["weight_decay"]), "no_bias_correction": no_bias}


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


def widget(prompt: str, call: str) -> list[nbformat.NotebookNode]:
    """A one-line "move this, watch that" prompt and a plain, ungraded cell showing a g2c widget.

    The factories catch every error (a stub's NotImplementedError too) and show it inside the
    widget, so these cells never stop a Run All. Tagged: the tests find them by the tag, and
    ``g2c autograde`` does not run them (pictures for the student, no points).
    """
    factory = call.split("(", 1)[0]
    cell = code(f"from g2c.widgets import {factory}\n\n{call}")
    cell.metadata["tags"] = [WIDGET_TAG, GOES_ON]
    return [md(prompt), cell]


def test_cell(grade_id: str, points: int, tests: list[str], scenarios: list[str]) -> nbformat.NotebookNode:
    visible = contract_code(tests)
    source = f"%%check\n# Visible checks (from tests/test_training.py); hidden ones run when graded.\n{visible}\n\n{hidden_part(scenarios)}"
    return code(source, grade_id, grade=True, locked=True, points=points)


def solution(text: str) -> str:
    return f"### BEGIN SOLUTION\n{text.strip()}\n### END SOLUTION"


def cells() -> list[nbformat.NotebookNode]:
    answers = answer_sources()
    h = BY_HAND
    given, failing = given_tests(), len(graded_tests())
    out = [
        md(f"""
# Module 03B — Training: exercises

Seven exercises on the training recipe. Write your code where it says `YOUR CODE HERE`
(delete the `raise NotImplementedError()`), and your answers where it says `YOUR ANSWER HERE`.

- The three answer cells (`AdamW`, `clip_grad_norm_`, `cosine_with_warmup`) and the cells that
  set `p1` and `diagnosis` must stay **self-contained**: they are graded on their own, outside
  this notebook, with only `math`, `torch` and `KINDS` defined; use tensor operations, `math`
  and plain Python (no other imports).
- The cell of checks under each answer tells you, first and in plain words, which pitfall it
  caught; a failing check never stops the notebook, so Run All reaches every cell and widget.
- The same checks run from a terminal in your kit folder: **save the notebook first** (they
  read the saved file), then `pytest tests/test_training.py` (untouched kit: {given} passed,
  {failing} failed, each failure saying "not written yet").
- When graded, hidden checks run your answers on inputs drawn at grading time and compare what
  they do with the reference over many steps and settings. Write the algorithms yourself: an
  answer that calls `torch.optim` or torch's clipping utilities gets no points for that part.
- Before you submit, run the whole notebook top to bottom (Kernel → Restart Kernel and Run All
  Cells…) and save it.
"""),
        code(f"""
%matplotlib inline
%load_ext g2c.checks
import math

import matplotlib.pyplot as plt
import pytest
import torch

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM, seeded
from g2c.training import SGD, train

torch.manual_seed(0)
KINDS = {KINDS!r}  # the five terms of exercise 7
""", "setup", locked=True),
        md("""
## 1. Learning-rate sweep

Train the same seeded `MLP((2, 32, 1))` on `regression()` with plain `SGD` for 200 steps at
`lr` = 1e-3, 1e-1 and 1.0 (use `train` from `g2c.training`; every run starts from
`seeded(0, ...)`). Plot the training loss of each run on a log scale: one stalls, one is
healthy, one diverges (the terms of exercise 7). Then set `KEEP_LR` to the learning rate you
would keep.
"""),
        code(solution("""
sweep = {}
for lr in (1e-3, 1e-1, 1.0):
    model = seeded(0, lambda: MLP((2, 32, 1)))
    sweep[lr] = train(model, regression(), SGD(model.parameters(), lr=lr), steps=200)
fig, ax = plt.subplots(figsize=(6, 3.5))
for lr, history in sweep.items():
    label = f"lr={lr:g}" + (f" (diverged at step {history.diverged_at})" if history.diverged else "")
    ax.plot(history.train_loss, label=label)
ax.set(yscale="log", xlabel="step", ylabel="training loss", title="One model, three learning rates")
ax.legend()
plt.show()
KEEP_LR = 1e-1
"""), "lr_sweep", solution=True),
        md("Which learning rate do you keep, and why not the other two? (two or three sentences)"),
        md(solution("""
Keep lr = 0.1: its loss falls fast and steadily. At 1e-3 the run stalls (each step is too
small to make progress in 200 steps); at 1.0 the updates overshoot, the loss grows and the run
diverges within a few steps. The best lr is usually a little below the one that diverges.
"""), "lr_choice", grade=True, solution=True, points=MANUAL_CELLS["lr_choice"]),
        *widget(
            "**Watch it move:** slide the learning rate from 1e-4 to 3 on the same seeded model; watch the run go from stalled "
            "to healthy to diverging (x), and where the largest lr that still trains smoothly sits.",
            "lr_sweep(lambda: MLP((2, 32, 1)))",
        ),
        md(f"""
## 2. AdamW by hand

A scalar parameter $p_0 = {h['p']}$ gets the gradient $g_1 = {h['g']}$ on the first step of
AdamW with $\\eta = {h['lr']}$, $\\beta_1 = {h['beta1']}$, $\\beta_2 = {h['beta2']}$,
$\\epsilon = 10^{{-8}}$ and weight decay $\\lambda = {h['weight_decay']}$. Compute $p_1$ on paper
(moments, bias correction, decoupled decay), then set `p1` to your number.
"""),
        code(solution(f"""
m = (1 - 0.9) * 0.5            # first moment after one step
v = (1 - 0.999) * 0.5**2       # second moment
m_hat, v_hat = m / (1 - 0.9), v / (1 - 0.999)   # bias correction: exactly g and g^2
p1 = {h['p']} * (1 - 0.1 * 0.1) - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8)
"""), "adamw_by_hand_answer", solution=True),
        code(f"""
%%check
def test_p1_is_a_number():
    assert isinstance(p1, (int, float)) and math.isfinite(p1), "set p1 to a finite number"

{hidden_part(AUTOGRADED_EXERCISES["test_adamw_by_hand"][1])}
""", "test_adamw_by_hand", grade=True, locked=True, points=AUTOGRADED_EXERCISES["test_adamw_by_hand"][0]),
        md("""
## 3. Implement AdamW

Write `AdamW.step`: one step counter for the whole optimizer; for each parameter with a
gradient: decoupled weight decay, the two moments, bias correction, the update, all under
`torch.no_grad()`. The constructor and `zero_grad` are given.
"""),
        code(answers["adamw"], "adamw", solution=True),
    ]
    out += [test_cell(*cell) for cell in TEST_CELLS["adamw"]]
    out += [
        md("""
## 4. SGD vs AdamW

Make two matched runs: the same seeded model, `seeded(0, lambda: MLP((2, 32, 1)))`, on the
same data, `regression()`, for the same 200 steps, once with `SGD` at lr 0.1 and once with your
`AdamW` at lr 0.01. Plot both training losses on one log-scale axis.
"""),
        code(solution("""
runs = {}
for name, make in [("SGD lr=0.1", lambda ps: SGD(ps, lr=0.1)), ("AdamW lr=0.01", lambda ps: AdamW(ps, lr=0.01))]:
    model = seeded(0, lambda: MLP((2, 32, 1)))
    runs[name] = train(model, regression(), make(model.parameters()), steps=200)
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, history in runs.items():
    ax.plot(history.train_loss, label=name)
ax.set(yscale="log", xlabel="step", ylabel="training loss", title="Matched runs: same model, data, seed, steps")
ax.legend()
plt.show()
"""), "sgd_vs_adamw", solution=True),
        *widget(
            "**Watch it move:** your `AdamW` races `torch.optim.AdamW` (same model, seed, batches): at equal lr and weight decay "
            "the curves must lie on top of each other; move one slider at a time and watch them part. "
            "Until `AdamW.step` is written the widget says NotImplementedError.",
            'optimizer_race(lambda: MLP((2, 32, 1)), optimizers={"your AdamW": AdamW, "torch.optim.AdamW": torch.optim.AdamW})',
        ),
        md("""
## 5. Gradient clipping

Write `clip_grad_norm_`: one global L2 norm over all gradients, one shared scale
`max_norm / (total + eps)` applied only when it is below 1, and return the norm before clipping.
"""),
        code(answers["clip"], "clip", solution=True),
    ]
    out += [test_cell(*cell) for cell in TEST_CELLS["clip"]]
    out += [
        md("Demonstrate it: two parameters with gradients (3, 4) and (12,) have a global norm of 13. Clip to 1 and print both gradients before and after; check the direction did not change."),
        code(solution("""
a = torch.zeros(2, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])
print("before:", a.grad.tolist(), b.grad.tolist())
total = clip_grad_norm_([a, b], max_norm=1.0)
print(f"global norm before clipping: {float(total):.3f}")
print("after: ", a.grad.tolist(), b.grad.tolist(), "(every gradient divided by the same 13)")
"""), "clip_demo", solution=True),
        *widget(
            "**Watch it move:** lower `max_norm` from 5 to 0.05 and watch global clipping shrink the gradient but keep its "
            "direction (cosine 1) while per-tensor clipping bends it, and how often clipping fires in a real run "
            "(the example gradient is clipped by your `clip_grad_norm_`, the training run by g2c's).",
            "clipping_demo(clip=clip_grad_norm_)",
        ),
        md("""
## 6. Warmup + cosine schedule

Write `cosine_with_warmup` (linear warmup from 0, cosine decay to `min_lr` at `max_steps`,
then `min_lr`), plot it for `warmup_steps=100, max_steps=1000, max_lr=3e-4, min_lr=3e-5` over
1200 steps, and explain its three phases.
"""),
        code(answers["schedule"], "schedule", solution=True),
    ]
    out += [test_cell(*cell) for cell in TEST_CELLS["schedule"]]
    out += [
        code(solution("""
steps = range(1200)
lrs = [cosine_with_warmup(t, warmup_steps=100, max_steps=1000, max_lr=3e-4, min_lr=3e-5) for t in steps]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(list(steps), lrs)
ax.axvline(100, ls=":", c="gray")
ax.axvline(1000, ls=":", c="gray")
ax.set(xlabel="step", ylabel="learning rate", title="Linear warmup, cosine decay, floor")
plt.show()
"""), "schedule_plot", solution=True),
        md(solution("""
**Warmup** (steps 0-99): the lr rises linearly from 0, because AdamW's second-moment estimate is
still poor and large early steps can wreck the fresh model. **Cosine decay** (100-999): the lr
falls smoothly from max_lr to min_lr, large steps first for fast progress, small steps later to
settle into a minimum. **Floor** (1000 on): the lr stays at min_lr and never decays further.
"""), "schedule_phases", grade=True, solution=True, points=MANUAL_CELLS["schedule_phases"]),
        *widget(
            "**Watch it move:** change one setting at a time, `warmup_steps` first, and watch the three phases stretch and "
            "shrink; the curve is your own `cosine_with_warmup`, so a mistake shows up here too.",
            "schedule_explorer(warmup_steps=100, max_steps=1000, max_lr=3e-4, min_lr=3e-5, schedule=cosine_with_warmup)",
        ),
        md(f"""
## 7. Reading curves

Four runs made with `g2c` below show train and validation loss. Name what each of A, B, C and D
shows with one of the five terms in `KINDS` = {list(KINDS)} (one term is not used), and put
your answers in the dict `diagnosis`, e.g. `{{"A": "healthy", ...}}`. The curve doctor below
shows what each term looks like, how to tell it from the others, and what to try next.
"""),
        code(CURVES.strip() + """

fig, axes = plt.subplots(1, 4, figsize=(13, 3))
for ax, (name, h) in zip(axes, curves.items()):
    ax.plot(h.eval_steps, h.eval_train_loss, label="train")
    ax.plot(h.eval_steps, h.val_loss, label="validation")
    ax.set(title=name + (" (NaN/inf after step %d)" % h.diverged_at if h.diverged else ""), xlabel="step", yscale="log")
axes[0].legend()
plt.show()
""", "curves", locked=True),
        *widget(
            "**Practise first:** press *New curve*, pick a term, press *Check* (it tells you what to try next for that "
            "term), and repeat until you can tell the shapes apart; then name A to D below.",
            "curve_doctor(quiz=True)",
        ),
        code(solution(f"diagnosis = {diagnosis_key()!r}"), "diagnosis_answer", solution=True),
        code("""
%%check
def test_diagnosis_uses_the_terms():
    assert sorted(diagnosis) == ["A", "B", "C", "D"], "diagnosis needs the keys A, B, C and D"
    unknown = {curve: term for curve, term in diagnosis.items() if term not in KINDS}
    assert not unknown, f"{unknown} not among the five terms: each value must be one of {KINDS}"

""" + hidden_part(AUTOGRADED_EXERCISES["test_diagnosis"][1]), "test_diagnosis", grade=True, locked=True, points=AUTOGRADED_EXERCISES["test_diagnosis"][0]),
        md("""
## Checklist: written answer

Module 10 trains its model with AdamW without changing the model or the loss. Why can the
optimizer be swapped on its own, and what does AdamW bring there? (three to five sentences)
"""),
        md(solution("""
The optimizer only consumes gradients and updates parameters: the model defines the function and
the loss defines what is minimized, so neither needs to change to swap SGD for AdamW. AdamW
rescales each parameter's step by its own gradient history (momentum and the second moment, with
bias correction for the first steps), which tolerates gradients of very different scales across
embeddings and layers and makes one learning rate work for all. Its weight decay is decoupled:
it shrinks the weights directly instead of entering the adaptive update, so regularization
strength does not depend on the gradient statistics.
"""), "why_adamw", grade=True, solution=True, points=MANUAL_CELLS["why_adamw"]),
    ]
    return out


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
KIT_FILES = {Path("tests") / "test_training.py": CONTRACT, Path("conftest.py"): Path(__file__).with_name("kit_conftest.py")}


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
