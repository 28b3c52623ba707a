"""The module's pitfalls as mutants of the reference: what a wrong answer's data looks like.

Each pitfall is a small edit of one answer's ``### BEGIN SOLUTION`` region in ``g2c/training``
(a few of its lines replaced) or, for delegation, a whole new region body; the comparator runs
the probe's scenarios on them to name a student's mistake and to avoid charging one mistake to
the cells of another. Grader side only: this module reads the reference solutions.

``charged_to`` lists the scenarios whose cell the pitfall should cost, besides the catch-all
trajectory cells (``CATCH_ALL``) that every pitfall of its answer costs.
"""

from __future__ import annotations

import functools
import importlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g2c.grading import regions

# answer -> (module of g2c/training, the object students write)
ANSWERS = {"adamw": ("optim", "AdamW"), "clip": ("clip", "clip_grad_norm_"), "schedule": ("schedule", "cosine_with_warmup")}
# answer -> the scenarios that pass only on the reference
CATCH_ALL = {"adamw": ("adamw_trajectory_float64", "adamw_trajectory_float32"), "clip": ("clip_matches",), "schedule": ()}


@dataclass(frozen=True)
class Pitfall:
    """One wrong answer: ``edits`` maps a line of the solution region (stripped) to the lines that
    replace it (indented like it), or ``body`` replaces the whole region (then it pairs with nothing)."""

    name: str
    answer: str
    charged_to: tuple[str, ...]
    message: str
    edits: tuple[tuple[str, tuple[str, ...]], ...] = ()
    body: str | None = None


DECAY = "p.mul_(1 - self.lr * self.weight_decay)"
BC1 = "bias_correction1 = 1 - beta1**self.step_count"
BC2 = "bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)"
STEP_SIZE = "step_size = self.lr / bias_correction1"
DENOM = "denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)"

CATALOGUE: tuple[Pitfall, ...] = (
    # ---------------------------------------------------------------- AdamW.step
    Pitfall(
        "no_bias_correction", "adamw", ("adamw_first_step",),
        "your AdamW matches AdamW without bias correction: divide m by 1 - beta1**t and v by 1 - beta2**t "
        "(t counts the optimizer's steps from 1)",
        edits=((BC1, ("bias_correction1 = 1",)), (BC2, ("bias_correction2_sqrt = 1",))),
    ),
    Pitfall(
        "no_first_moment_bias_correction", "adamw", ("adamw_first_step",),
        "your AdamW corrects only the second moment: divide m by 1 - beta1**t as well",
        edits=((BC1, ("bias_correction1 = 1",)),),
    ),
    Pitfall(
        "no_second_moment_bias_correction", "adamw", ("adamw_first_step",),
        "your AdamW corrects only the first moment: divide v by 1 - beta2**t as well (its square root "
        "by sqrt(1 - beta2**t))",
        edits=((BC2, ("bias_correction2_sqrt = 1",)),),
    ),
    Pitfall(
        "bias_correction_off_by_one", "adamw", ("adamw_first_step",),
        "your bias correction uses the wrong step: on the first step t = 1, so m is divided by 1 - beta1**1; "
        "advance the counter before you use it",
        edits=((BC1, ("bias_correction1 = 1 - beta1**(self.step_count + 1)",)),
               (BC2, ("bias_correction2_sqrt = math.sqrt(1 - beta2**(self.step_count + 1))",))),
    ),
    Pitfall(
        "eps_before_bias_correction", "adamw", ("adamw_first_step",),
        "your eps is added before the bias correction: divide sqrt(v) by sqrt(1 - beta2**t) first, then add eps",
        edits=((DENOM, ("denom = v.sqrt().add_(self.eps) / bias_correction2_sqrt",)),),
    ),
    Pitfall(
        "eps_inside_sqrt", "adamw", ("adamw_first_step",),
        "your eps is inside the square root: the denominator is sqrt(v_hat) + eps",
        edits=((DENOM, ("denom = (v / bias_correction2_sqrt**2).add_(self.eps).sqrt()",)),),
    ),
    Pitfall(
        "adam_l2", "adamw", ("adamw_decoupled_decay",),
        "your weight decay is folded into the gradient (Adam + L2); AdamW shrinks the parameter directly "
        "with p *= 1 - lr * weight_decay, apart from the adaptive update",
        edits=((DECAY, ("grad = grad.add(p, alpha=self.weight_decay)",)),),
    ),
    Pitfall(
        "decay_without_lr", "adamw", ("adamw_decoupled_decay",),
        "your weight decay ignores the learning rate: AdamW shrinks p by the factor 1 - lr * weight_decay",
        edits=((DECAY, ("p.mul_(1 - self.weight_decay)",)),),
    ),
    Pitfall(
        "no_weight_decay", "adamw", ("adamw_decoupled_decay",),
        "your AdamW never applies weight_decay: shrink each parameter with p *= 1 - lr * weight_decay",
        edits=((DECAY, ("pass",)),),
    ),
    Pitfall(
        "decay_after_update", "adamw", (),
        "your AdamW shrinks the parameter after the adaptive update: apply p *= 1 - lr * weight_decay first, "
        "then the update (the order of torch.optim.AdamW)",
        edits=((DECAY, ("pass",)), ("p.addcdiv_(m, denom, value=-step_size)",
                                    ("p.addcdiv_(m, denom, value=-step_size)", DECAY))),
    ),
    Pitfall(
        "step_counter_per_parameter", "adamw", ("adamw_step_counter",),
        "your step counter advances once per parameter: it must advance once per optimizer step, "
        "before the loop over the parameters",
        edits=(("self.step_count += 1", ()), (BC1, ()), (BC2, ()), (STEP_SIZE, ()),
               ("grad = p.grad", ("grad = p.grad", "self.step_count += 1", BC1, BC2, STEP_SIZE))),
    ),
    Pitfall(
        "update_recorded_by_autograd", "adamw", ("adamw_no_autograd",),
        "step() lets the update enter autograd: wrap the whole update in torch.no_grad()",
        edits=(("with torch.no_grad():", ("if True:",)),),
    ),
    Pitfall(
        "decays_frozen_params", "adamw", ("adamw_frozen",),
        "your AdamW decays parameters whose .grad is None: skip them entirely, weight decay included",
        edits=((DECAY, ()), ("if p.grad is None:", (DECAY, "if p.grad is None:"))),
    ),
    Pitfall(
        "none_grad_as_zero", "adamw", ("adamw_frozen",),
        "your AdamW treats a missing gradient as zero: a parameter whose .grad is None must be skipped entirely",
        edits=(("if p.grad is None:", ()), ("continue", ()),
               ("grad = p.grad", ("grad = p.grad if p.grad is not None else torch.zeros_like(p)",))),
    ),
    Pitfall(
        "wraps_torch_adamw", "adamw", ("adamw_step_counter",),
        "your AdamW counts steps per parameter, as torch.optim.AdamW does (or calls it): the contract has one "
        "step counter for the whole optimizer, and the exercise is to write the update yourself",
        body='''
        if not hasattr(self, "_torch_adamw"):
            self._torch_adamw = torch.optim.AdamW(self.params, lr=self.lr, betas=self.betas, eps=self.eps,
                                                  weight_decay=self.weight_decay, foreach=False)
        for group in self._torch_adamw.param_groups:
            group["lr"] = self.lr
        self._torch_adamw.step()
''',
    ),
    # ---------------------------------------------------------------- clip_grad_norm_
    Pitfall(
        "clip_each_parameter_alone", "clip", ("clip_global",),
        "you clip each gradient on its own: clip globally, with one shared scale max_norm / (total + eps) "
        "from the norm of all gradients together",
        edits=(("if clip_coef < 1:", ("for g, n in zip(grads, norms):", "    if max_norm / (n + eps) < 1:",
                                      "        g.mul_(max_norm / (n + eps))")),
               ("for g in grads:", ()), ("g.mul_(clip_coef)", ())),
    ),
    Pitfall(
        "clip_always_scales", "clip", ("clip_small_untouched",),
        "you scale the gradients even when their norm is below max_norm: scale only when "
        "max_norm / (total + eps) < 1, and leave them untouched otherwise",
        edits=(("if clip_coef < 1:", ("if True:",)),),
    ),
    Pitfall(
        "clip_fixed_eps", "clip", ("clip_none_and_eps",),
        "your clip_grad_norm_ ignores its eps argument (a fixed 1e-6, as in torch.nn.utils.clip_grad_norm_): "
        "use max_norm / (total + eps) with the eps you are given",
        edits=(("clip_coef = max_norm / (total_norm + eps)", ("clip_coef = max_norm / (total_norm + 1e-6)",)),),
    ),
    Pitfall(
        "clip_wraps_torch", "clip", ("clip_none_and_eps",),
        "your clip_grad_norm_ ignores its eps argument (a fixed 1e-6, as in torch.nn.utils.clip_grad_norm_): "
        "use max_norm / (total + eps) with the eps you are given, and write the clipping yourself",
        body='''
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
''',
    ),
    Pitfall(
        "clip_without_eps", "clip", ("clip_none_and_eps",),
        "your scale leaves eps out: it is max_norm / (total + eps)",
        edits=(("clip_coef = max_norm / (total_norm + eps)", ("clip_coef = max_norm / total_norm",)),),
    ),
    Pitfall(
        "clip_not_skipping_none", "clip", ("clip_none_and_eps",),
        "your clip_grad_norm_ fails on a parameter whose .grad is None: skip those parameters",
        edits=(("grads = [p.grad for p in parameters if p.grad is not None]", ("grads = [p.grad for p in parameters]",)),),
    ),
    Pitfall(
        "clip_returns_clipped_norm", "clip", ("clip_matches",),
        "you return the norm after clipping: return the global norm measured before clipping",
        edits=(("return total_norm",
                ("return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))",)),),
    ),
    # ---------------------------------------------------------------- cosine_with_warmup
    Pitfall(
        "schedule_warmup_off_by_one", "schedule", ("schedule_warmup",),
        "your warmup is off by one: it starts at 0 on step 0, max_lr * step / warmup_steps",
        edits=(("return max_lr * step / warmup_steps", ("return max_lr * (step + 1) / warmup_steps",)),),
    ),
    Pitfall(
        "schedule_warmup_from_min_lr", "schedule", ("schedule_warmup",),
        "your warmup rises from min_lr: it rises from 0, max_lr * step / warmup_steps",
        edits=(("return max_lr * step / warmup_steps", ("return min_lr + (max_lr - min_lr) * step / warmup_steps",)),),
    ),
    Pitfall(
        "schedule_progress_over_max_steps", "schedule", ("schedule_cosine",),
        "your cosine measures progress over max_steps: it runs from warmup_steps to max_steps, so progress is "
        "(step - warmup_steps) / (max_steps - warmup_steps)",
        edits=(("progress = (step - warmup_steps) / (max_steps - warmup_steps)",
                ("progress = (step - warmup_steps) / max_steps",)),),
    ),
    Pitfall(
        "schedule_cosine_ignores_min_lr", "schedule", ("schedule_cosine",),
        "your cosine decays to 0, not to min_lr: min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr)",
        edits=(("return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)",
                ("return 0.5 * (1.0 + math.cos(math.pi * progress)) * max_lr",)),),
    ),
    Pitfall(
        "schedule_no_floor", "schedule", ("schedule_floor",),
        "your schedule keeps following the cosine after max_steps: from max_steps on it must return min_lr",
        edits=(("if step >= max_steps:", ()), ("return min_lr", ())),
    ),
    Pitfall(
        "schedule_floor_at_zero", "schedule", ("schedule_floor",),
        "after max_steps your schedule returns 0: it must hold min_lr",
        edits=(("return min_lr", ("return 0.0",)),),
    ),
)
BY_NAME = {p.name: p for p in CATALOGUE}


def of(answer: str) -> list[Pitfall]:
    """The pitfalls of one answer, in catalogue order."""
    return [p for p in CATALOGUE if p.answer == answer]


def compatible(a: Pitfall, b: Pitfall) -> bool:
    """Two pitfalls combine when both are edits of the same answer touching different lines."""
    if a.answer != b.answer or a.body is not None or b.body is not None or a.name == b.name:
        return False
    return not {old for old, _ in a.edits} & {old for old, _ in b.edits}


@functools.cache
def pairs(answer: str) -> tuple[tuple[Pitfall, Pitfall], ...]:
    """Every combinable pair of one answer's pitfalls: a student may make two mistakes."""
    return tuple((a, b) for a, b in itertools.combinations(of(answer), 2)
                 if compatible(a, b) and _applies(answer, (a.name, b.name)))


@functools.cache
def _applies(answer: str, names: tuple[str, ...]) -> bool:
    try:
        mutated_source(answer, names)
    except ValueError:
        return False
    return True


@functools.cache
def reference_source(answer: str) -> str:
    module = importlib.import_module(f"g2c.training.{ANSWERS[answer][0]}")
    return Path(module.__file__).read_text()


def mutated_source(answer: str, names: tuple[str, ...]) -> str:
    """The reference module's source with the named pitfalls applied to its one solution region.

    ValueError when an edit's line is not exactly once in the region (the reference changed:
    update the catalogue) or when two pitfalls cannot combine.
    """
    source = reference_source(answer)
    found = regions._regions(source)
    if len(found) != 1:
        raise ValueError(f"{ANSWERS[answer][0]}.py has {len(found)} solution regions, expected one")
    begin, end, _ = found[0]
    lines = source.splitlines()
    region = lines[begin + 1 : end]
    chosen = [BY_NAME[n] for n in names]
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
                raise ValueError(f"pitfall {pitfall.name}: {old!r} is {len(at)} times in the region of {ANSWERS[answer][0]}.py")
            pad = region[at[0]][: len(region[at[0]]) - len(region[at[0]].lstrip())]
            region[at[0] : at[0] + 1] = [pad + line for line in new]  # () deletes the line
    return "\n".join(lines[:begin] + region + lines[end + 1 :]) + "\n"


@functools.cache
def build(answer: str, names: tuple[str, ...]) -> Any:
    """The answer's object (class or function) with the named pitfalls applied."""
    module, obj = ANSWERS[answer]
    namespace: dict[str, Any] = {"__name__": f"g2c_pitfall_{module}"}
    exec(compile(mutated_source(answer, names), f"<g2c pitfall {module}: {'+'.join(names)}>", "exec"), namespace)
    return namespace[obj]


def namespace(answer: str, names: tuple[str, ...]) -> dict[str, Any]:
    """What the probe's scenarios read: the mutant under its public name."""
    return {ANSWERS[answer][1]: build(answer, names)}
