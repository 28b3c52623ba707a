"""Every number the book's prose states, computed when the book is built: from a run of ``g2c`` or from a closed form.

The chapters glue these (``myst_nb.glue``); nothing here is typed into the text. Where a claim has both a
closed form and a simulation, the build computes both and fails if they disagree (``_agree``), so a wrong
derivation or a changed ``g2c`` stops the book instead of printing a wrong sentence. ``book/_figures.py``
draws the figures; this module only measures.
"""

from __future__ import annotations

import functools
import inspect
import math

import torch

from g2c.data import regression, tokens
from g2c.training import SGD, AdamW, clip_grad_norm_, train
from g2c.widgets.diagnosis import THRESHOLDS, ended

BETA1, BETA2 = inspect.signature(AdamW).parameters["betas"].default  # the defaults the chapters quote


def _agree(simulated: float, closed: float, rel: float, what: str) -> float:
    """``simulated``, after checking it matches the closed form to ``rel``: the build fails on a wrong derivation."""
    if not math.isclose(simulated, closed, rel_tol=rel):
        raise AssertionError(f"{what}: simulated {simulated:.6g}, closed form {closed:.6g}")
    return simulated


def _scalar(value: float = 0.0) -> torch.Tensor:
    return torch.tensor([value], requires_grad=True)


# ---- AdamW: how long is a step? ------------------------------------------------------------------

@functools.cache
def adam_step_over_lr(mean: float, sd: float, steps: int = 3000, burn_in: int = 500, width: int = 200, seed: int = 0) -> float:
    """Mean |Δθ|/η of g2c's AdamW over steps ``burn_in``..``steps``, on gradients drawn from N(mean, sd²).

    ``width`` independent scalars in one tensor (each element is its own scalar Adam): more samples per step.
    """
    g = torch.Generator().manual_seed(seed)
    p = torch.zeros(width, requires_grad=True)
    lr = 1e-3
    opt = AdamW([p], lr=lr)
    total = 0.0
    for t in range(steps):
        before = p.detach().clone()
        p.grad = mean + sd * torch.randn(width, generator=g)
        opt.step()
        if t >= burn_in:
            total += float((p.detach() - before).abs().mean()) / lr
    return total / (steps - burn_in)


def adam_step_closed_form(mean: float, sd: float) -> float:
    """E|m|/√E[g²] once the averages have filled: m ~ N(mean, sd²(1-β₁)/(1+β₁)), v ≈ E[g²] = mean² + sd² (β₂ near 1)."""
    s = sd * math.sqrt((1 - BETA1) / (1 + BETA1))
    if s == 0:
        return abs(mean) / math.sqrt(mean**2 + sd**2)
    folded = s * math.sqrt(2 / math.pi) * math.exp(-(mean**2) / (2 * s**2)) + mean * math.erf(mean / (s * math.sqrt(2)))
    return folded / math.sqrt(mean**2 + sd**2)


ADAM_CASES = ((1.0, 0.0), (1.0, 1.0), (0.01, 1.0))  # a steady gradient; as much noise as signal; mostly noise


def adam_steps() -> dict[tuple[float, float], float]:
    """The three cases the book quotes, each simulated and checked against its closed form (5 %)."""
    return {case: _agree(adam_step_over_lr(*case), adam_step_closed_form(*case), 0.05, f"Adam step {case}")
            for case in ADAM_CASES}


def adam_steps_md() -> str:
    """'1.00 η with a steady gradient, 0.71 η ... , 0.18 η ...' (Markdown)."""
    s = adam_steps()
    (m0, _), (m1, sd1), (m2, sd2) = ADAM_CASES
    return (f"{s[ADAM_CASES[0]]:.2f} η with a steady gradient ({m0:g} every step), "
            f"{s[ADAM_CASES[1]]:.2f} η when noise of standard deviation {sd1:g} rides on a mean of {m1:g}, and "
            f"{s[ADAM_CASES[2]]:.2f} η for a mean of {m2:g} under noise of standard deviation {sd2:g}")


def spike_bound() -> float:
    """(1-β₁)/√(1-β₂): the most one huge gradient can move a settled Adam, in units of η (Kingma & Ba §2.1)."""
    return (1 - BETA1) / math.sqrt(1 - BETA2)


def spike_step_over_lr(spike: float = 1e6, calm: float = 0.01, before: int = 10_000) -> float:
    """|Δθ|/η of g2c's AdamW on the step of one spike after ``before`` steps of a steady small gradient.

    Checked against the closed form at that step, (1-β₁)/(1-β₁ᵗ) · √(1-β₂ᵗ)/√(1-β₂), whose limit is ``spike_bound``.
    """
    p = _scalar()
    lr = 1e-3
    opt = AdamW([p], lr=lr)
    for _ in range(before):
        p.grad = torch.tensor([calm])
        opt.step()
    last = float(p.detach())
    p.grad = torch.tensor([spike])
    opt.step()
    t = before + 1
    exact = spike_bound() * math.sqrt(1 - BETA2**t) / (1 - BETA1**t)
    return _agree(abs(float(p.detach()) - last) / lr, exact, 1e-3, "one spike's step")


def spike_v_ratio(max_norm: float | None, spike: float = 100.0, calm: float = 0.01, before: int = 3000) -> float:
    """How many times larger √v is right after one spike than before it, unclipped or clipped to ``max_norm``."""
    p = _scalar()
    opt = AdamW([p], lr=1e-3)
    for _ in range(before):
        p.grad = torch.tensor([calm])
        opt.step()
    root = math.sqrt(float(opt.v[0]))
    p.grad = torch.tensor([spike])
    if max_norm is not None:
        clip_grad_norm_([p], max_norm)
    opt.step()
    return math.sqrt(float(opt.v[0])) / root


def scale_invariance(scale: float = 1e3, steps: int = 200) -> float:
    """Largest |θ difference| between AdamW runs on gradients g and ``scale``·g (same draws): ε alone separates them."""
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(50, generator=g) for _ in range(steps)]
    ends = []
    for c in (1.0, scale):
        p = torch.zeros(50, requires_grad=True)
        opt = AdamW([p], lr=1e-2)
        for grad in grads:
            p.grad = c * grad
            opt.step()
        ends.append(p.detach())
    return float((ends[0] - ends[1]).abs().max())


# ---- bias correction, momentum, weight decay ---------------------------------------------------------

def mean_m(t: int, mean: float = 1.0, sd: float = 1.0, width: int = 200_000) -> float:
    """The average of g2c's AdamW m_t over many independent scalars fed N(mean, sd²) gradients."""
    g = torch.Generator().manual_seed(1)
    p = torch.zeros(width, requires_grad=True)
    opt = AdamW([p], lr=1e-3)
    for _ in range(t):
        p.grad = mean + sd * torch.randn(width, generator=g)
        opt.step()
    return float(opt.m[0].mean())


def bias_factor(t: int) -> float:
    """E[m_t]/E[g] = 1 - β₁ᵗ, measured (200 000 scalars) and checked against the closed form."""
    return _agree(mean_m(t), 1 - BETA1**t, 0.02, f"E[m_{t}]")


def momentum_gain(momentum: float = 0.9, steps: int = 200) -> float:
    """Step/(η g) of g2c's SGD with momentum under a constant gradient: 1/(1-μ) once the buffer has filled."""
    p = _scalar()
    opt = SGD([p], lr=1e-3, momentum=momentum)
    last = 0.0
    for _ in range(steps):
        before = float(p.detach())
        p.grad = torch.tensor([1.0])
        opt.step()
        last = before - float(p.detach())
    return _agree(last / 1e-3, 1 / (1 - momentum), 1e-4, "momentum's gain")


def l2_equals_decay(lr: float = 0.1, decay: float = 0.01) -> float:
    """Largest difference between g2c's SGD with an L2 penalty and the decoupled update θ(1-ηλ) - ηg, over 100 steps."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, generator=g).requires_grad_()
    b = a.detach().clone()
    opt = SGD([a], lr=lr, weight_decay=decay)
    for _ in range(100):
        grad = torch.randn(20, generator=g)
        a.grad = grad.clone()
        opt.step()
        b = b * (1 - lr * decay) - lr * grad
    return float((a.detach() - b).abs().max())


# ---- the largest stable learning rate ------------------------------------------------------------------

def quadratic_end(lr: float, curvature: float = 4.0, steps: int = 50) -> float:
    """|θ| after ``steps`` of g2c's SGD on L(θ) = curvature·θ²/2 from θ = 1: shrinks iff lr < 2/curvature."""
    p = _scalar(1.0)
    opt = SGD([p], lr=lr)
    for _ in range(steps):
        p.grad = curvature * p.detach().clone()
        opt.step()
    return abs(float(p.detach()))


def _figures():
    """book/_figures.py, importable from a chapter's kernel (cwd book/) and from the tests alike."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import _figures as F

    return F


def sharpness(model: torch.nn.Module, iterations: int = 60, seed: int = 0) -> float:
    """The largest eigenvalue of the Hessian of ``model``'s full-batch loss on ``regression()`` (power iteration on
    Hessian-vector products): on a quadratic with that curvature, plain GD overshoots for every rate above 2 over it."""
    data = regression()
    params = [p for p in model.parameters() if p.requires_grad]
    loss = data.loss(model, data.train_x, data.train_y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = torch.Generator().manual_seed(seed)
    vec = [torch.randn(p.shape, generator=g) for p in params]
    value = 0.0
    for _ in range(iterations):
        norm = math.sqrt(sum(float((v * v).sum()) for v in vec))
        vec = [v / norm for v in vec]
        hv = torch.autograd.grad(grads, params, grad_outputs=vec, retain_graph=True)
        value = sum(float((h * v).sum()) for h, v in zip(hv, vec))
        vec = [h.detach() for h in hv]
    return value


def sharpness_after(lr: float | None, steps: int = 200) -> float:
    """The sharpness of the sweep's MLP at its initial weights (``lr`` None) or after ``_figures.sgd_run(lr)``'s training."""
    F = _figures()
    model = F.mlp()
    if lr is not None:
        train(model, regression(), SGD(model.parameters(), lr), steps=steps)
    return sharpness(model)


# ---- what the data allows ---------------------------------------------------------------------------------

def regression_floor() -> float:
    """The noise variance of ``regression()`` (its default noise, squared): no model's expected MSE goes below it."""
    return inspect.signature(regression).parameters["noise"].default ** 2


def markov_probs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probabilities per context, validation contexts, their indices) of ``tokens(seed=seed)``'s chain, drawn as
    ``tokens`` draws them.

    Checked, not trusted: regenerating every pair from these probabilities must give ``tokens()``'s data exactly.
    """
    p = inspect.signature(tokens).parameters
    vocab, context, sharpness = p["vocab_size"].default, p["context"].default, p["sharpness"].default
    n_train, n_val = p["n_train"].default, p["n_val"].default
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(sharpness * torch.randn(vocab**context, vocab, generator=g), dim=1)
    x = torch.randint(vocab, (n_train + n_val, context), generator=g)
    index = torch.zeros(len(x), dtype=torch.long)
    for i in range(context):
        index = index * vocab + x[:, i]
    y = torch.multinomial(probs[index], 1, generator=g).squeeze(1)
    data = tokens(seed=seed)
    if not (torch.equal(y[:n_train], data.train_y) and torch.equal(y[n_train:], data.val_y)):
        raise AssertionError("markov_probs no longer reproduces tokens(): update it with g2c.data.tokens")
    return probs, x[n_train:], index[n_train:]


def tokens_floor() -> float:
    """The chain's entropy over ``tokens()``'s validation contexts (nats): the expected loss of the true probabilities,
    the floor no model's expected validation loss goes below."""
    probs, _, index = markov_probs()
    p = probs[index]
    return float(-(p * p.log()).sum(1).mean())


def floors_md() -> str:
    """'0.01 of 0.305 for regression() and 0.98 nats of 2.47 for tokens()' (Markdown)."""
    return (f"{regression_floor():.2g} of the predict-the-mean loss {regression().mean_loss():.3f} for `regression()`, "
            f"and {tokens_floor():.2f} nats of {tokens().mean_loss():.2f} for `tokens()`")


# ---- the sweep of Fig. 1.1 ---------------------------------------------------------------------------------

def lowest_ending(runs: dict) -> tuple[float, float, int]:
    """(lr, ended validation loss, spikes) of the finite run that ends lowest."""
    from g2c.widgets import diagnose

    lr = min((lr for lr, h in runs.items() if not h.diverged), key=lambda lr: ended(runs[lr].val_loss))
    return lr, ended(runs[lr].val_loss), diagnose(runs[lr]).spikes


def share_of_mean(history) -> float:
    """Where a run's validation loss ended, as a share of the predict-the-mean loss."""
    return ended(history.val_loss) / history.baseline_loss


def thresholds_md() -> str:
    """The classifier's named thresholds as a Markdown table, from ``g2c.widgets.diagnosis.THRESHOLDS``."""
    rows = ["| constant | value | what it decides |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {value:g} | {meaning} |" for name, (value, meaning) in THRESHOLDS.items()]
    return "\n".join(rows)


def adamw_clip_always(steps: int = 300) -> tuple[float, float, float]:
    """AdamW lr 1e-2 on the regression MLP, unclipped and clipped on every step (max_norm 1e-3):
    (clip rate, ended val loss unclipped, clipped). Clipping on every step is not a too-high rate under AdamW."""
    F = _figures()
    ends = []
    rate = 0.0
    for clip in (None, 1e-3):
        model = F.mlp()
        h = train(model, regression(), AdamW(model.parameters(), 1e-2), steps=steps, clip=clip)
        ends.append(ended(h.val_loss))
        rate = h.clip_rate
    return rate, ends[0], ends[1]


def md(text: str):
    """Markdown output for ``glue``."""
    from IPython.display import Markdown

    return Markdown(text)


def first_adamw_step(lr: float = 1e-2) -> tuple[float, float, float]:
    """The regression MLP's first AdamW step: (share of elements with a nonzero gradient that moved by 0.99 lr or more,
    smallest and largest such |gradient|). At t = 1, m̂/√v̂ = g/|g|: every element moves by about lr, whatever its gradient."""
    F = _figures()
    model, data = F.mlp(), regression()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = AdamW(params, lr)
    opt.zero_grad()
    data.loss(model, data.train_x, data.train_y).backward()
    grads = torch.cat([p.grad.flatten() for p in params]).abs()
    opt.step()
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before)]).abs() / lr
    live = grads > 0
    return float((moved[live] >= 0.99).float().mean()), float(grads[live].min()), float(grads[live].max())


@functools.cache
def decay_histories(decays: tuple[float, ...] = (0.0, 0.1, 1.0)) -> dict:
    """Panel B's run (TinyLM on 512 pairs, AdamW lr 3e-3, ``_figures.SHAPE_STEPS`` steps) once per weight decay."""
    from g2c.nn import TinyLM, seeded

    F = _figures()
    found = {}
    for decay in decays:
        model = seeded(0, lambda: TinyLM(12, 2))
        found[decay] = train(model, tokens(n_train=512, batch_size=None),
                             AdamW(model.parameters(), 3e-3, weight_decay=decay), steps=F.SHAPE_STEPS)
    return found


def decay_runs() -> dict[float, tuple[int, float, float]]:
    """Per weight decay: (step of the lowest validation loss, that loss, the loss where the run ended)."""
    found = {}
    for decay, h in decay_histories().items():
        best = min(range(len(h.val_loss)), key=h.val_loss.__getitem__)
        found[decay] = (h.eval_steps[best], h.val_loss[best], ended(h.val_loss))
    return found


def decay_sentence() -> str:
    """'with weight decay 0, lowest 1.822 at step 120 and 2.307 at the end; ...' (plain text: glued across pages)."""
    return "; ".join(f"with weight decay {d:g}, lowest {low:.3f} at step {step} and {end:.3f} at the end"
                     for d, (step, low, end) in decay_runs().items())
