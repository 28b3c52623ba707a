"""Issue 23's corpus: plausible answers the pitfall catalogue does not name, wrong and right.

Each entry is what a student could hand in for one answer: a change of the reference module
(``old`` replaced by ``new``, each exactly once), or p1's value. ``lost``: the cells it must lose,
as probe scenarios (empty for a correct alternative); tests/test_discrimination.py decides them in
process and checks the verdicts hold over seeds.
"""

# ruff: noqa: E501 (a table of edits: one entry a line reads better than one wrapped over three)
from __future__ import annotations

from dataclasses import dataclass

from conftest import CATALOGUE, SPEC

TRAJ = set(SPEC.catch_all("adamw"))  # the AdamW catch-all cells: every wrong update costs them
CLIP = set(SPEC.catch_all("clip"))


@dataclass(frozen=True)
class Entry:
    name: str
    answer: str  # adamw, clip, schedule or p1
    edits: tuple[tuple[str, str], ...] = ()  # (old, new) on the reference module, each old exactly once
    value: float | None = None  # p1's value
    lost: frozenset[str] = frozenset()  # scenarios whose cells it must lose; empty: a correct alternative

    @property
    def wrong(self) -> bool:
        return bool(self.lost)

    def source(self) -> str:
        text = CATALOGUE.reference_source(self.answer)
        for old, new in self.edits:
            assert text.count(old) == 1, f"{self.name}: {old!r} is {text.count(old)} times in the reference"
            text = text.replace(old, new)
        return text


def wrong(name: str, answer: str, *edits: tuple[str, str], lost: set[str], value: float | None = None) -> Entry:
    return Entry(name, answer, tuple(edits), value, frozenset(lost))


def right(name: str, answer: str, *edits: tuple[str, str], value: float | None = None) -> Entry:
    return Entry(name, answer, tuple(edits), value)


DENOM = "denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)"
DECAY = "p.mul_(1 - self.lr * self.weight_decay)"
M = "m.lerp_(grad, 1 - beta1)"
V = "v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)"
UPDATE = "p.addcdiv_(m, denom, value=-step_size)"
COEF = "clip_coef = max_norm / (total_norm + eps)"
TOTAL = "total_norm = torch.linalg.vector_norm(torch.stack(norms))"
COS = "return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)"
WARM = "return max_lr * step / warmup_steps"

WRONG = [
    # ---- AdamW
    wrong("eps squared inside the square root", "adamw", (DENOM, "denom = (v / bias_correction2_sqrt**2 + self.eps**2).sqrt()"),
          lost={"adamw_first_step"} | TRAJ),
    wrong("first moment weights swapped (lerp by beta1)", "adamw", (M, "m.lerp_(grad, beta1)"), lost={"adamw_first_step"} | TRAJ),
    wrong("betas swapped between the moments", "adamw", (M, "m.lerp_(grad, 1 - beta2)"), (V, "v.mul_(beta1).addcmul_(grad, grad, value=1 - beta1)"),
          lost={"adamw_first_step"} | TRAJ),
    wrong("second moment of the gradient, not its square", "adamw", (V, "v.mul_(beta2).add_(grad.abs(), alpha=1 - beta2)"),
          lost={"adamw_first_step"} | TRAJ),
    wrong("bias correction of v without the square root", "adamw",
          ("bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)", "bias_correction2_sqrt = 1 - beta2**self.step_count"),
          lost={"adamw_first_step"} | TRAJ),
    wrong("update added, not subtracted", "adamw", (UPDATE, "p.addcdiv_(m, denom, value=step_size)"), lost={"adamw_first_step"} | TRAJ),
    wrong("v_hat without the square root", "adamw", (DENOM, "denom = (v / bias_correction2_sqrt**2).add_(self.eps)"),
          lost={"adamw_first_step"} | TRAJ),
    wrong("beta2 fixed at 0.999", "adamw", ("beta1, beta2 = self.betas", "beta1, beta2 = self.betas[0], 0.999"),
          lost=TRAJ),  # on a first step v_hat = g**2 whatever beta2: the first-step cell rightly keeps its point
    wrong("eps fixed at 1e-8", "adamw", (DENOM, "denom = (v.sqrt() / bias_correction2_sqrt).add_(1e-8)"),
          lost={"adamw_first_step"} | TRAJ),
    wrong("moments rebound, never stored", "adamw", (M, "m = m * beta1 + (1 - beta1) * grad"), (V, "v = v * beta2 + (1 - beta2) * grad * grad"),
          lost=TRAJ),
    wrong("decay scaled by the bias correction", "adamw", (DECAY, "p.mul_(1 - step_size * self.weight_decay)"),
          lost={"adamw_decoupled_decay"} | TRAJ),
    wrong("decay subtracts lr * weight_decay", "adamw", (DECAY, "p.sub_(self.lr * self.weight_decay)"),
          lost={"adamw_decoupled_decay"} | TRAJ),
    wrong("stops at the first parameter without a gradient", "adamw", ("if p.grad is None:\n                    continue", "if p.grad is None:\n                    break"), lost={"adamw_frozen"} | TRAJ),
    wrong("gradient squared in place for v", "adamw", (V, "v.mul_(beta2).add_(grad.mul_(grad), alpha=1 - beta2)"), lost=TRAJ),
    wrong("decay factor cached at construction", "adamw",
          ("        self.step_count = 0\n", "        self.step_count = 0\n        self.decay = 1 - lr * weight_decay\n"),
          (DECAY, "p.mul_(self.decay)"), lost=TRAJ),
    wrong("lr cached at construction", "adamw", ("        self.step_count = 0\n", "        self.step_count = 0\n        self.base_lr = lr\n"),
          ("step_size = self.lr / bias_correction1", "step_size = self.base_lr / bias_correction1"), lost=TRAJ),
    wrong("state kept per shape", "adamw",
          ("for p, m, v in zip(self.params, self.m, self.v):",
           "state = self.__dict__.setdefault('by_shape', {})\n            for p in self.params:\n"
           "                m, v = state.setdefault(tuple(p.shape), (torch.zeros_like(p), torch.zeros_like(p)))"),
          lost=TRAJ),
    wrong("float32 moments for float64 parameters", "adamw",
          ("self.m = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]",
           "self.m = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]"),
          lost={"adamw_first_step", "adamw_decoupled_decay", "adamw_step_counter", "adamw_no_autograd", "adamw_frozen",
                "adamw_trajectory_float64"}),  # the float32 trajectory has float32 parameters: right there
    wrong("step counter advanced after the update", "adamw", ("            self.step_count += 1\n", ""),
          (UPDATE, UPDATE + "\n            self.step_count += 1"),
          lost={"adamw_first_step", "adamw_decoupled_decay", "adamw_step_counter", "adamw_no_autograd", "adamw_frozen"} | TRAJ),
    # ---- clip_grad_norm_
    wrong("norm squared (no square root)", "clip", (TOTAL, "total_norm = torch.stack(norms).pow(2).sum()"),
          lost=CLIP),
    wrong("sum of the norms", "clip", (TOTAL, "total_norm = torch.stack(norms).sum()"), lost=CLIP),
    wrong("L1 norm", "clip", ("norms = [torch.linalg.vector_norm(g) for g in grads]", "norms = [g.abs().sum() for g in grads]"),
          lost=CLIP),
    wrong("largest norm, not the global one", "clip", (TOTAL, "total_norm = torch.stack(norms).max()"), lost=CLIP),
    wrong("eps added to the scale", "clip", (COEF, "clip_coef = max_norm / total_norm + eps"), lost={"clip_none_and_eps"} | CLIP),
    wrong("clips the parameters, not the gradients", "clip",
          ("for g in grads:\n            g.mul_(clip_coef)", "for p in parameters:\n            p.data.mul_(clip_coef)"),
          lost={"clip_global", "clip_none_and_eps"} | CLIP),
    wrong("a lone Tensor iterated as rows", "clip", ("    if isinstance(parameters, torch.Tensor):\n        parameters = [parameters]\n", ""),
          lost=CLIP),
    wrong("returns max_norm when it clips", "clip", ("    return total_norm\n", "    return torch.minimum(total_norm, torch.tensor(max_norm, dtype=total_norm.dtype))\n"),
          lost=CLIP),
    # ---- cosine_with_warmup
    wrong("cosine without the 1/2", "schedule", (COS, "return min_lr + (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)"),
          lost={"schedule_cosine"}),
    wrong("cosine in degrees", "schedule", (COS, "return min_lr + 0.5 * (1.0 + math.cos(180 * progress)) * (max_lr - min_lr)"),
          lost={"schedule_cosine"}),
    wrong("warmup over warmup_steps - 1", "schedule", (WARM, "return max_lr * step / max(warmup_steps - 1, 1)"), lost={"schedule_warmup"}),
    wrong("warmup by integer division", "schedule", (WARM, "return max_lr * (step // warmup_steps)"), lost={"schedule_warmup"}),
    wrong("floor only after max_steps", "schedule", ("if step >= max_steps:", "if step > max_steps:"), lost={"schedule_floor"}),
    wrong("cosine from the start, warmup ignored", "schedule",
          ("progress = (step - warmup_steps) / (max_steps - warmup_steps)", "progress = step / max_steps"), lost={"schedule_cosine"}),
    # ---- p1
    wrong("p1: one SGD step with weight decay", "p1", value=1.0 * (1 - 0.1 * 0.1) - 0.1 * 0.5, lost={"by_hand_p1"}),
    wrong("p1: decay applied after the adaptive step", "p1", value=(1.0 - 0.1) * (1 - 0.1 * 0.1), lost={"by_hand_p1"}),
]

RIGHT = [
    right("AdamW with @torch.no_grad() on step", "adamw", ("        with torch.no_grad():\n", "        if True:\n"),
          ("    def step(self) -> None:\n        \"\"\"Apply one AdamW", "    @torch.no_grad()\n    def step(self) -> None:\n        \"\"\"Apply one AdamW")),
    right("AdamW with out-of-place moments stored by index", "adamw",
          ("for p, m, v in zip(self.params, self.m, self.v):", "for i, (p, m, v) in enumerate(zip(self.params, self.m, self.v)):"),
          (M, "m = self.m[i] = beta1 * m + (1 - beta1) * p.grad"), (V, "v = self.v[i] = beta2 * v + (1 - beta2) * grad * grad")),
    right("AdamW decaying after the moments, before the update", "adamw", (DECAY, ""), (UPDATE, DECAY + "\n                " + UPDATE)),
    right("AdamW with m_hat and v_hat written out", "adamw",
          (DENOM, "denom = (v / (1 - beta2**self.step_count)).sqrt() + self.eps"),
          (UPDATE, "p.sub_(self.lr * (m / bias_correction1) / denom)")),
    right("clip with a float32 norm tensor", "clip", ("    return total_norm\n", "    return torch.tensor(float(total_norm), dtype=torch.float32)\n")),
    right("clip over the concatenated gradients", "clip",
          (TOTAL, "total_norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))")),
    right("clip assigning new gradient tensors", "clip",
          ("for g in grads:\n            g.mul_(clip_coef)",
           "for p in [q for q in parameters_list if q.grad is not None]:\n            p.grad = p.grad * clip_coef"),
          ("    grads = [p.grad for p in parameters if p.grad is not None]\n",
           "    parameters_list = list(parameters)\n    grads = [p.grad for p in parameters_list if p.grad is not None]\n")),
    right("clip when the norm exceeds max_norm", "clip", ("if clip_coef < 1:", "if total_norm > max_norm:")),
    right("schedule with float32 torch.cos", "schedule",
          (COS, "return min_lr + 0.5 * (1.0 + float(torch.cos(torch.tensor(math.pi * progress, dtype=torch.float32)))) * (max_lr - min_lr)"),
          ("import math\n", "import math\n\nimport torch\n")),
    right("schedule as a linear interpolation", "schedule",
          (COS, "weight = (1 + math.cos(math.pi * progress)) / 2\n    return weight * max_lr + (1 - weight) * min_lr")),
    right("p1 rounded to six decimals", "p1", value=0.89),
]
