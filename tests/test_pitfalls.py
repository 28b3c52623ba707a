"""tests/test_training.py tells right from wrong: run it against the module's pitfalls.

Each variant is the reference ``g2c/training`` source with one edit, loaded as the module
under test through ``G2C_TRAINING_MODULE``. The starter (solution regions stripped) must give
exactly 7 passed, 14 failed; each pitfall must fail the test that names it; correct
implementations written differently from ours must pass all 21.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from g2c.grading.regions import strip_solutions

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {name: (ROOT / "g2c" / "training" / f"{name}.py").read_text() for name in ("optim", "clip", "schedule")}

ALT_ADAMW_STEP = '''
        with torch.no_grad():
            self.step_count += 1
            beta1, beta2 = self.betas
            live = [(p, m, v) for p, m, v in zip(self.params, self.m, self.v) if p.grad is not None]
            if not live:
                return
            ps, ms, vs = (list(t) for t in zip(*live))
            gs = [p.grad for p in ps]
            torch._foreach_mul_(ps, 1 - self.lr * self.weight_decay)
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, gs, alpha=1 - beta1)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, gs, gs, value=1 - beta2)
            m_hat = torch._foreach_div(ms, 1 - beta1 ** self.step_count)
            v_hat = torch._foreach_div(vs, 1 - beta2 ** self.step_count)
            denom = torch._foreach_add(torch._foreach_sqrt(v_hat), self.eps)
            torch._foreach_addcdiv_(ps, m_hat, denom, value=-self.lr)
'''
ALT_CLIP = '''
    grads = [p.grad for p in ([parameters] if isinstance(parameters, torch.Tensor) else parameters) if p.grad is not None]
    total = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)) if grads else torch.tensor(0.0)
    scale = float(max_norm / (total + eps))
    if scale < 1:
        torch._foreach_mul_(grads, scale)
    return total
'''
ALT_SCHEDULE = '''
    if step >= max_steps:
        return min_lr
    if step < warmup_steps:
        return step * (max_lr / warmup_steps)
    angle = math.pi * (step - warmup_steps) / (max_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * (math.cos(angle) + 1) / 2
'''


def replace_region(source: str, body: str) -> str:
    """Put ``body`` where the (single) solution region of ``source`` stands."""
    pattern = re.compile(r"^\s*### BEGIN SOLUTION\n.*?^\s*### END SOLUTION\n", re.S | re.M)
    assert len(pattern.findall(source)) == 1
    return pattern.sub(lambda _: body.lstrip("\n"), source)


def edit(name: str, *replacements: tuple[str, str]) -> dict[str, str]:
    """The reference ``name``.py with each (old, new) replacement made."""
    text = SOURCES[name]
    for old, new in replacements:
        assert old in text, f"the reference {name}.py no longer contains {old!r}: update this mutant"
        text = text.replace(old, new)
    return {name: text}


MUTANTS = {
    "adam_l2_instead_of_decoupled_decay": (
        edit("optim", ("p.mul_(1 - self.lr * self.weight_decay)", "grad = grad.add(p, alpha=self.weight_decay)")),
        "test_adamw_weight_decay_is_decoupled",
    ),
    "step_counter_per_parameter": (
        edit(
            "optim",
            (
                "                grad = p.grad\n",
                "                grad = p.grad\n                self.step_count += 1\n"
                "                bias_correction1 = 1 - beta1**self.step_count\n"
                "                bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)\n"
                "                step_size = self.lr / bias_correction1\n",
            ),
        ),
        "test_adamw_step_counter_advances_once_per_step",
    ),
    "no_bias_correction": (
        edit(
            "optim",
            ("bias_correction1 = 1 - beta1**self.step_count", "bias_correction1 = 1"),
            ("bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)", "bias_correction2_sqrt = 1"),
        ),
        "test_adamw_first_step_by_hand",
    ),
    "update_recorded_by_autograd": (
        edit("optim", ("with torch.no_grad():", "if True:")),
        "test_adamw_update_is_not_recorded_by_autograd",
    ),
    "clip_each_parameter_alone": (
        edit(
            "clip",
            (
                "    if clip_coef < 1:\n        for g in grads:\n            g.mul_(clip_coef)\n",
                "    for g, n in zip(grads, norms):\n        if max_norm / (n + eps) < 1:\n            g.mul_(max_norm / (n + eps))\n",
            ),
        ),
        "test_clip_is_global_not_per_parameter",
    ),
    "schedule_warmup_off_by_one": (
        edit("schedule", ("return max_lr * step / warmup_steps", "return max_lr * (step + 1) / warmup_steps")),
        "test_schedule_warmup_is_linear_from_zero",
    ),
    "schedule_decays_past_max_steps": (
        edit("schedule", ("    if step >= max_steps:\n        return min_lr\n", "")),
        "test_schedule_holds_min_lr_after_max_steps",
    ),
}


def write_variant(root: Path, name: str, sources: dict[str, str]) -> str:
    package = root / name
    package.mkdir()
    for module, text in {**SOURCES, **sources}.items():
        (package / f"{module}.py").write_text(text)
    (package / "__init__.py").write_text(
        "from .optim import AdamW\nfrom .clip import clip_grad_norm_\nfrom .schedule import cosine_with_warmup\n"
    )
    return name


def run_contract_tests(root: Path, module: str) -> tuple[int, int, set[str]]:
    """(passed, failed, names of failed tests) of tests/test_training.py against ``module``."""
    env = {**os.environ, "G2C_TRAINING_MODULE": module, "PYTHONPATH": f"{root}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_training.py"), "-q", "--tb=no", "-rf", "-p", "no:cacheprovider"],
        capture_output=True, text=True, env=env, cwd=root, timeout=300,
    ).stdout
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", out)) else 0
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", out)) else 0
    return passed, failed, set(re.findall(r"FAILED \S*::(\w+)", out))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[int, int, set[str]]]:
    root = tmp_path_factory.mktemp("variants")
    variants = {"starter": {name: strip_solutions(text) for name, text in SOURCES.items()}}
    variants |= {name: sources for name, (sources, _) in MUTANTS.items()}
    variants["alternative"] = {
        "optim": replace_region(SOURCES["optim"], ALT_ADAMW_STEP),
        "clip": replace_region(SOURCES["clip"], ALT_CLIP),
        "schedule": replace_region(SOURCES["schedule"], ALT_SCHEDULE),
    }
    modules = {name: write_variant(root, name, sources) for name, sources in variants.items()}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda item: (item[0], run_contract_tests(root, item[1])), modules.items())
        return dict(results)


def test_starter_state_is_7_passed_14_failed(outcomes):
    passed, failed, _ = outcomes["starter"]
    assert (passed, failed) == (7, 14)


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_each_pitfall_fails_the_test_that_names_it(outcomes, mutant):
    passed, failed, names = outcomes[mutant]
    assert MUTANTS[mutant][1] in names, f"{mutant} slipped past; failed only {sorted(names)}"
    assert passed + failed == 21


def test_a_different_correct_implementation_passes_everything(outcomes):
    assert outcomes["alternative"][:2] == (21, 0), outcomes["alternative"]
