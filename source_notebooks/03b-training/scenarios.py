"""The probe's scenarios of 03b-training: inputs drawn from a seed, the student's objects run on them.

Each function takes the namespace the answer cells ran in and the grading run's seed, and returns
plain data (``g2c.grading.sandbox.probe``'s encoders). It runs in the sandbox, and again in the grader on
the reference and on the pitfall mutants; it holds no expected value. ``SCENARIOS`` names them as
assignment.toml's cells do.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import torch

from g2c.grading.sandbox.probe import (
    attempt,
    encode_number,
    encode_returned,
    encode_tensor,
    grad_or_none,
    gradient,
    leaf,
    log_uniform,
    noise,
    random_shapes,
    rngs,
    student,
)

SPREAD = 40  # steps of a schedule's phase recorded


# ---------------------------------------------------------------- AdamW


def lr_factor(t: int) -> float:
    """The trajectories' learning rate at step t, as a fraction of the settings' lr: it changes every
    step, as the module's loop sets ``optimizer.lr`` from the schedule before each step."""
    return 0.25 + 0.75 * abs(math.cos(0.7 * t))


def train(
    AdamW: Any,
    params: list[torch.Tensor],
    grads: list[list[torch.Tensor | None]],
    settings: dict[str, Any],
    *,
    record_at: set[int],
    grad_mode: bool = False,
    as_generator: bool = False,
    moving_lr: bool = False,
) -> dict[str, Any]:
    """Run ``AdamW`` over ``grads`` (``grads[t][i]``: gradient of parameter i at step t+1, or None).

    ``grad_mode`` False calls ``step()`` under ``torch.no_grad()``, so a missing no_grad costs only
    the scenario made to catch it; the catch-all trajectories call it with grad mode on, set
    ``opt.lr`` before every step (``moving_lr``) and record whether step() left the gradients it was
    given as they were (an update that changes ``p.grad`` in place breaks clipping or logging after it).
    """
    lr = settings["lr"]
    kwargs = {k: v for k, v in settings.items() if k != "lr"}
    opt = AdamW((p for p in params) if as_generator else params, lr, **kwargs)
    out: dict[str, Any] = {}
    untouched = True
    for t, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        if moving_lr:
            opt.lr = lr * lr_factor(t)
        with torch.set_grad_enabled(grad_mode):
            opt.step()
        untouched = untouched and all(g is None or (p.grad is not None and torch.equal(p.grad, g))
                                      for p, g in zip(params, step_grads))
        if t in record_at:
            out[f"after step {t}"] = {f"parameter {i + 1}": encode_tensor(p) for i, p in enumerate(params)}
    if moving_lr:
        out["gradients left as given"] = untouched
    return out


def adamw_inputs(settings: dict[str, Any], shapes: list[tuple[int, ...]], dtype: torch.dtype, steps: int, *,
                 moving_lr: bool = False, gaps: str = "") -> dict[str, str]:
    """The inputs of an AdamW run in words, and lines that race the student's AdamW against torch's on
    the same settings, shapes and dtype (random gradients: the student sees where theirs parts)."""
    named = ", ".join(f"{k}={_short(v)}" for k, v in settings.items())
    lr = _short(settings["lr"])
    set_lr = f"    mine.lr = {lr} * (0.25 + 0.75 * abs(math.cos(0.7 * t)))\n    for group in ref.param_groups:\n" \
             "        group['lr'] = mine.lr\n" if moving_lr else ""
    kwargs = ", ".join(f"{k}={_short(v)}" for k, v in settings.items() if k != "lr")
    code = (f"import math, torch\nshapes, dtype = {shapes}, {dtype}\n"
            "ps = [torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes]\n"
            "qs = [p.detach().clone().requires_grad_() for p in ps]\n"
            f"mine = AdamW(ps, {lr}, {kwargs})\nref = torch.optim.AdamW(qs, lr={lr}, {kwargs}, foreach=False)\n"
            f"for t in range(1, {steps + 1}):\n"
            "    for p, q in zip(ps, qs):\n        p.grad = torch.randn_like(p)\n        q.grad = p.grad.clone()\n"
            f"{set_lr}    mine.step()\n    ref.step()\n"
            "    print(t, max(float((p - q).abs().max()) for p, q in zip(ps, qs)))")
    out = {"settings": named, "parameters": f"{len(shapes)} of shapes {shapes}, {dtype}", "steps": str(steps)}
    if moving_lr:
        out["learning rate"] = f"set before step t to {lr} * (0.25 + 0.75 * |cos(0.7 t)|)"
    if gaps:
        out["gradients"] = gaps
    return out | {"try": code}


def _short(value: Any) -> str:
    """A setting as the student would type it (floats to 6 significant digits)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return repr(value)


def trajectory_settings(rng: random.Random) -> list[tuple[dict[str, Any], int | None, int]]:
    """Three (settings, late parameter index or None, its first step): no decay, mild, strong."""
    mild = dict(lr=log_uniform(rng, 3e-3, 3e-2), betas=(rng.uniform(0.5, 0.9), rng.uniform(0.9, 0.99)),
                eps=log_uniform(rng, 1e-6, 1e-4), weight_decay=rng.uniform(0.05, 0.2))
    strong = dict(lr=rng.uniform(0.05, 0.1), betas=(rng.uniform(0.0, 0.5), rng.uniform(0.5, 0.9)),
                  eps=log_uniform(rng, 1e-4, 1e-3), weight_decay=rng.uniform(0.3, 0.5))
    plain = dict(lr=log_uniform(rng, 1e-3, 1e-2), betas=(rng.uniform(0.8, 0.95), rng.uniform(0.99, 0.999)),
                 eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=0.0)
    return [(plain, None, 1), (mild, 3, rng.randint(3, 8)), (strong, 1, rng.randint(3, 8))]


def adamw_trajectory(namespace: dict, seed: int, dtype: torch.dtype, name: str) -> dict[str, Any]:
    """Three settings x 40 steps, five parameters of mixed shapes (two of the same shape: state kept
    per shape mixes them) given as a generator, grad mode on, the learning rate changed before every
    step; one parameter gets its first gradient late (torch counts its steps from there: a wrapper
    drifts) and, in the second setting, another has no gradient for a few steps in the middle
    (its moments must wait, not decay); whether step() left the gradients as given."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs(name, seed)
    shapes = random_shapes(rng, 4)
    shapes.append(shapes[1])
    out: dict[str, Any] = {"inputs": {}}
    for k, (settings, late, first) in enumerate(trajectory_settings(rng), start=1):
        params = [leaf(s, gen, dtype) for s in shapes]
        pause = range(rng.randint(10, 15), 0) if k != 2 else range(a := rng.randint(10, 15), a + rng.randint(2, 4))
        grads = [[None if (i == late and t < first) or (i == 4 and t in pause) else gradient(s, rng, gen, dtype)
                  for i, s in enumerate(shapes)] for t in range(1, 41)]
        gaps = [f"parameter {late + 1} has none before step {first}"] if late is not None else []
        gaps += [f"parameter 5 has none on steps {pause.start} to {pause.stop - 1}"] if len(pause) else []
        out["inputs"][f"setting {k}"] = adamw_inputs(settings, shapes, dtype, 40, moving_lr=True, gaps="; ".join(gaps))
        out[f"setting {k}"] = attempt(lambda: train(AdamW, params, grads, settings, record_at={1, 2, 5, 10, 20, 40},
                                                    grad_mode=True, as_generator=True, moving_lr=True))
    return out


def adamw_trajectory_float64(namespace: dict, seed: int) -> dict[str, Any]:
    return adamw_trajectory(namespace, seed, torch.float64, "adamw_trajectory_float64")


def adamw_trajectory_float32(namespace: dict, seed: int) -> dict[str, Any]:
    return adamw_trajectory(namespace, seed, torch.float32, "adamw_trajectory_float32")


def adamw_first_step(namespace: dict, seed: int) -> dict[str, Any]:
    """One parameter, one step, no weight decay: only the bias correction and eps decide the update,
    lr * g / (|g| + eps) per element. Elements of every size from eps to 10: where |g| is near eps or
    sqrt(eps), each misplacement of eps (inside the root, squared, before the correction) is far off,
    whatever the draw."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_first_step", seed)
    out: dict[str, Any] = {"inputs": {}}
    for k in (1, 2):
        settings = dict(lr=log_uniform(rng, 1e-3, 1e-1), betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.9999)),
                        eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=0.0)
        eps = settings["eps"]
        sizes = [eps, math.sqrt(eps)] + [10.0 ** gen.randint(-3, 1) for _ in range(rng.randint(2, 5))]
        shape = (len(sizes),)
        p = leaf(shape, gen)
        g = noise(shape, gen) * torch.tensor(sizes, dtype=torch.float64)  # mixed magnitudes within one parameter
        out["inputs"][f"run {k}"] = adamw_inputs(settings, [shape], torch.float64, 1) | {
            "gradient": "sizes from eps and sqrt(eps) up to 10: " + ", ".join(f"{x:.3g}" for x in g.tolist())}
        out[f"run {k}"] = attempt(lambda: train(AdamW, [p], [[g]], settings, record_at={1}))
    return out


def adamw_decoupled_decay(namespace: dict, seed: int) -> dict[str, Any]:
    """One parameter, zero gradients, weight decay: AdamW only shrinks it by 1 - lr * weight_decay."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_decoupled_decay", seed)
    shape = (rng.randint(2, 5),)
    steps = rng.randint(3, 5)
    settings = dict(lr=rng.uniform(0.01, 0.2), betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)),
                    eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=rng.uniform(0.1, 1.0))
    p = leaf(shape, gen)
    grads = [[torch.zeros(shape, dtype=torch.float64)] for _ in range(steps)]
    described = {k: v for k, v in adamw_inputs(settings, [shape], torch.float64, steps).items() if k != "try"}
    described["gradients"] = "zero on every step: each step only multiplies p by 1 - lr * weight_decay"
    out = train(AdamW, [p], grads, settings, record_at=set(range(1, steps + 1)))
    return {"inputs": {key: described for key in out}} | out


def adamw_step_counter(namespace: dict, seed: int) -> dict[str, Any]:
    """One step counter for the optimizer, told apart from how the update is computed: two twin
    parameters (same values, same gradients) whose first gradient comes at step k, after a third
    parameter's. With one counter their first move depends on k (the bias correction uses the
    optimizer's step), and the twins move alike; counting per parameter from its first gradient
    (torch's way) makes the move independent of k, advancing once per parameter splits the twins.
    Only those two facts are recorded: a wrong update formula costs the trajectories, not this cell."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_step_counter", seed)
    shape = (rng.randint(2, 6),)
    settings = dict(lr=log_uniform(rng, 1e-3, 1e-1), betas=(rng.uniform(0.5, 0.9), rng.uniform(0.9, 0.99)),
                    eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=0.0)
    start, other = noise(shape, gen), noise(shape, gen)
    first = gradient(shape, rng, gen)
    early = [gradient(shape, rng, gen) for _ in range(8)]
    late_steps = (rng.randint(2, 4), rng.randint(5, 8))
    moved = []
    for k in late_steps:
        # three shapes of n elements: state kept per shape would mix them, and that is the trajectories' business
        twins = [start.clone().requires_grad_(), start.clone().reshape(1, -1).requires_grad_()]
        params = [other.clone().reshape(-1, 1).requires_grad_(), *twins]
        grads = [[early[t - 1].reshape(-1, 1)] + [None if t < k else first.reshape(p.shape) for p in twins]
                 for t in range(1, k + 1)]
        train(AdamW, params, grads, settings, record_at=set())  # an exception is the scenario's record
        moved.append([p.detach().reshape(-1).clone() for p in twins])
    (a1, a2), (b1, b2) = moved
    return {"twins move alike": torch.equal(a1, a2) and torch.equal(b1, b2),
            f"the first move at step {late_steps[0]} and at step {late_steps[1]} differ": not torch.equal(a1, b1),
            "they moved": not torch.equal(a1, start)}


def adamw_no_autograd(namespace: dict, seed: int) -> dict[str, Any]:
    """Gradients from a real backward, step() with grad mode on: the parameters must stay trainable
    leaves and move (a step that does nothing keeps leaves too). How far they move is the trajectories'
    business: a wrong update formula costs those cells, not this one."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_no_autograd", seed)
    shapes = random_shapes(rng, 3)
    params = [leaf(s, gen) for s in shapes]
    weights = [noise(s, gen).abs() + 0.5 for s in shapes]
    lr = log_uniform(rng, 1e-3, 1e-1)
    out: dict[str, Any] = {}

    def two_steps() -> str:
        opt = AdamW(params, lr)
        for _ in range(2):
            for p in params:
                p.grad = None
            with torch.enable_grad():
                loss = sum((w * p**2).sum() for w, p in zip(weights, params))
                loss.backward()
                opt.step()
        return "finished"

    starts = [p.detach().clone() for p in params]
    out["step()"] = attempt(two_steps)
    for i, (p, start) in enumerate(zip(params, starts), start=1):
        out[f"parameter {i}"] = {"is a leaf": bool(p.is_leaf), "has no grad_fn": p.grad_fn is None,
                                 "requires grad": bool(p.requires_grad), "moved": not torch.equal(p.detach(), start)}
    return out


def adamw_frozen(namespace: dict, seed: int) -> dict[str, Any]:
    """One parameter never gets a gradient while weight decay is on: it must stay bit-identical, and
    the others must move (how far is the trajectories' business, not this cell's)."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_frozen", seed)
    shapes = random_shapes(rng, 4)
    frozen = rng.randrange(len(shapes) - 1)  # never the last: a loop that stops at it leaves the others behind
    settings = dict(lr=rng.uniform(0.01, 0.1), betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)),
                    eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=rng.uniform(0.05, 0.5))
    params = [leaf(s, gen) for s in shapes]
    grads = [[None if i == frozen else gradient(s, rng, gen) for i, s in enumerate(shapes)] for _ in range(4)]
    starts = [p.detach().clone() for p in params]
    moved = train(AdamW, params, grads, settings, record_at={4})["after step 4"]
    out = {"parameter without a gradient": moved.pop(f"parameter {frozen + 1}"),
           "its gradient is still None": params[frozen].grad is None}
    out["the other parameters moved"] = [not torch.equal(p.detach(), start) for i, (p, start) in enumerate(zip(params, starts))
                                         if i != frozen]
    return out


# ---------------------------------------------------------------- clip_grad_norm_


def with_grads(shapes: list[tuple[int, ...]], scales: list[float | None], gen: random.Random) -> list[torch.Tensor]:
    """Parameters whose gradient is scale * noise, or None where the scale is None."""
    params = [leaf(s, gen) for s in shapes]
    for p, scale in zip(params, scales):
        p.grad = None if scale is None else scale * noise(tuple(p.shape), gen, p.dtype)
    return params


def global_norm(params: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params if p.grad is not None))


def clipped(clip: Any, params: list[torch.Tensor], max_norm: float, *, eps: float | None = None, form: str = "list",
            norm: bool = True, grads: bool = True, kind: bool = False) -> dict[str, Any]:
    """Call ``clip`` on ``params`` (as a list, a generator or, for one parameter, the Tensor itself);
    ``kind``: also record whether it returned a tensor, as torch's does (a float cannot be logged or
    compared on the gradients' device the way the module's loop does)."""
    given = {"list": lambda: list(params), "generator": lambda: (p for p in params), "tensor": lambda: params[0]}[form]()
    returned = clip(given, max_norm) if eps is None else clip(given, max_norm, eps=eps)
    out: dict[str, Any] = {}
    if norm:
        out["returned norm"] = encode_returned(returned)
    if kind:
        out["returns a tensor"] = isinstance(returned, torch.Tensor)
    if grads:
        out.update({f"gradient {i + 1}": grad_or_none(p) for i, p in enumerate(params)})
    return out


def clip_inputs(shapes: list[tuple[int, ...]], scales: list[float | None], max_norm: float, eps: float | None,
                form: str) -> dict[str, str]:
    """A clipping case in words, and lines that compare the student's clipping with torch's on
    gradients of the same shapes, scales and max_norm (torch's eps is fixed at 1e-6)."""
    given = {"list": "ps", "generator": "(p for p in ps)", "tensor": "ps[0]"}[form]
    eps_arg = "" if eps is None else f", eps={eps:.6g}"
    code = ("import torch\n"
            f"shapes, scales = {shapes}, {[None if s is None else round(s, 4) for s in scales]}\n"
            "ps = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in shapes]\n"
            "for p, s in zip(ps, scales):\n    p.grad = None if s is None else s * (4 * torch.rand_like(p) - 2)\n"
            "qs = [p.detach().clone().requires_grad_() for p in ps]\n"
            "for p, q in zip(ps, qs):\n    q.grad = None if p.grad is None else p.grad.clone()\n"
            f"print(clip_grad_norm_({given}, {max_norm:.6g}{eps_arg}), torch.nn.utils.clip_grad_norm_(qs, {max_norm:.6g}))\n"
            "print([None if p.grad is None else float((p.grad - q.grad).abs().max()) for p, q in zip(ps, qs)])")
    return {"parameters": f"{len(shapes)} of shapes {shapes}, given as a {form}",
            "gradients": "scale x uniform in [-2, 2), scales " + ", ".join("None" if s is None else f"{s:.3g}" for s in scales),
            "max_norm": f"{max_norm:.6g}", "eps": "default (1e-6)" if eps is None else f"{eps:.6g}", "try": code}


def clip_matches(namespace: dict, seed: int) -> dict[str, Any]:
    """max_norm below and above the total, a list, a generator (clipped and not: one that is walked
    twice never clips) and a lone Tensor, an explicit eps and a parameter without gradient: the
    returned norm before clipping, that it is a tensor, and every gradient."""
    clip = student(namespace, "clip_grad_norm_")
    rng, gen = rngs("clip_matches", seed)
    cases = [("list, clipped", "list", rng.uniform(0.1, 0.8), None, [1.0, 3.0, 0.5, 2.0]),
             ("generator, not clipped", "generator", rng.uniform(1.5, 10.0), None, [1.0, 0.3, 2.0, 1.0]),
             ("generator, clipped", "generator", rng.uniform(0.1, 0.8), None, [2.0, 0.5, 1.0]),
             ("a single Tensor, clipped", "tensor", rng.uniform(0.1, 0.8), None, [3.0]),
             ("explicit eps, clipped", "list", rng.uniform(0.1, 0.8), rng.uniform(0.05, 0.5), [2.0, 1.0, 1.0]),
             ("a parameter without gradient, clipped", "list", rng.uniform(0.1, 0.8), None, [1.0, None, 2.0, 0.5])]
    out: dict[str, Any] = {"inputs": {}}
    for label, form, ratio, eps_ratio, scales in cases:
        shapes = random_shapes(rng, len(scales))
        scales = [s if s is None else s * rng.uniform(0.5, 2.0) for s in scales]
        params = with_grads(shapes, scales, gen)
        total = global_norm(params)
        eps = None if eps_ratio is None else eps_ratio * total
        out["inputs"][label] = clip_inputs(shapes, scales, ratio * total, eps, form)
        out[label] = attempt(lambda: clipped(clip, params, ratio * total, eps=eps, form=form, kind=True))
    return out


def clip_global(namespace: dict, seed: int) -> dict[str, Any]:
    """Gradients of very different norms clipped: one shared scale below 1 for all of them (each
    gradient its old self times that scale), where clipping each parameter alone gives each its own.
    Only those facts are recorded, so a wrong norm (the scale's size) costs clip_matches, not this cell."""
    clip = student(namespace, "clip_grad_norm_")
    rng, gen = rngs("clip_global", seed)
    out = {}
    for k in (1, 2):
        scales = [1e-2, 1.0, 1e2]
        rng.shuffle(scales)
        params = with_grads(random_shapes(rng, 3), [s * rng.uniform(0.5, 2.0) for s in scales], gen)
        before = [p.grad.clone() for p in params]
        max_norm = rng.uniform(0.05, 0.5) * global_norm(params)
        out[f"case {k}"] = attempt(lambda: shared_scale(clip, params, before, max_norm))
    return out


def shared_scale(clip: Any, params: list[torch.Tensor], before: list[torch.Tensor], max_norm: float) -> dict[str, bool]:
    clip(list(params), max_norm)
    after = [p.grad for p in params]
    if any(a is None or a.shape != b.shape for a, b in zip(after, before)):
        return {"each gradient scaled": False}
    ratios = [float((a.double() * b).sum() / (b * b).sum()) for a, b in zip(after, before)]
    kept = all(torch.allclose(a.double(), r * b, rtol=1e-9, atol=0.0) for a, b, r in zip(after, before, ratios))
    return {"each gradient scaled": kept, "one scale for all": max(ratios) - min(ratios) <= 1e-9 * max(abs(r) for r in ratios),
            "the scale is below 1": all(0 <= r < 1 for r in ratios)}


def clip_small_untouched(namespace: dict, seed: int) -> dict[str, Any]:
    """Gradients far below max_norm (by any norm): every gradient exactly as it was (the norm returned is clip_matches')."""
    clip = student(namespace, "clip_grad_norm_")
    rng, gen = rngs("clip_small_untouched", seed)
    out = {}
    for k, form in enumerate(("list", "generator"), start=1):
        params = with_grads(random_shapes(rng, 4), [1e-3 * rng.uniform(0.5, 2.0) for _ in range(4)], gen)
        # above even the sum of every |element| (any norm of theirs): a wrong norm is clip_matches' business
        max_norm = rng.uniform(2.0, 100.0) * sum(float(p.grad.abs().sum()) for p in params)
        out[f"case {k} ({form})"] = attempt(lambda: untouched(clip, params, max_norm, form))
    return out


def untouched(clip: Any, params: list[torch.Tensor], max_norm: float, form: str) -> dict[str, Any]:
    """The gradients (compared bit for bit) and whether a norm above 0 came back: doing nothing at all
    leaves small gradients untouched too (the norm's value is clip_matches' business)."""
    out = clipped(clip, params, max_norm, form=form)
    norm = out.pop("returned norm")
    return {"returned a norm above 0": isinstance(norm, float) and norm > 0} | out


def clip_none_and_eps(namespace: dict, seed: int) -> dict[str, Any]:
    """Parameters without gradient among others, and eps from 0 to several times the norm (torch's
    eps is fixed at 1e-6). One gradient per clipped case, so per-parameter clipping is not at stake."""
    clip = student(namespace, "clip_grad_norm_")
    rng, gen = rngs("clip_none_and_eps", seed)
    out = {}
    for label, eps_ratio in [("default eps", None), ("eps = 0", 0.0), ("eps about half the norm", rng.uniform(0.3, 0.7)),
                             ("eps several times the norm", rng.uniform(2.0, 5.0))]:
        scales: list[float | None] = [None] * 4
        scales[rng.randrange(4)] = rng.uniform(0.5, 5.0)
        params = with_grads(random_shapes(rng, 4), scales, gen)
        total = global_norm(params)
        eps = None if eps_ratio is None else eps_ratio * total
        max_norm = rng.uniform(0.2, 0.8) * total
        out[f"one gradient, three None, {label}"] = attempt(lambda: scaled_with_eps(clip, params, max_norm, eps))
    params = with_grads(random_shapes(rng, 4), [1.0, None, rng.uniform(0.5, 2.0), None], gen)
    max_norm = rng.uniform(2.0, 10.0) * global_norm(params)
    out["two gradients, two None, not clipped"] = attempt(lambda: same_norm_without_none(clip, params, max_norm))
    return out


def scaled_with_eps(clip: Any, params: list[torch.Tensor], max_norm: float, eps: float | None) -> dict[str, bool]:
    """Whether the gradients without .grad stayed None and the others were scaled by
    max_norm / (norm + eps), the norm being the true one or the one returned: how the norm is computed
    is clip_matches' business, where eps enters is this cell's."""
    before = [None if p.grad is None else p.grad.clone() for p in params]
    true_norm = math.sqrt(sum(float((b.double() ** 2).sum()) for b in before if b is not None))
    returned = encode_returned(clip(list(params), max_norm) if eps is None else clip(list(params), max_norm, eps=eps))
    norms = [true_norm] + ([returned] if isinstance(returned, float) else [])
    given = [(p.grad, b) for p, b in zip(params, before) if b is not None]

    def scaled(norm: float) -> bool:
        c = min(1.0, max_norm / (norm + (1e-6 if eps is None else eps)))
        return all(a is not None and a.shape == b.shape and torch.allclose(a.double(), c * b.double(), rtol=1e-6, atol=0.0)
                   for a, b in given)

    return {"the gradients without .grad stay None": all(p.grad is None for p, b in zip(params, before) if b is None),
            "scaled by max_norm / (norm + eps)": any(scaled(n) for n in norms)}


def same_norm_without_none(clip: Any, params: list[torch.Tensor], max_norm: float) -> dict[str, bool]:
    """Whether the norm returned with the None parameters equals the one returned without them (however
    the student computes it: a wrong norm is clip_matches' business)."""
    with_none = encode_returned(clip(list(params), max_norm))
    without = encode_returned(clip([p for p in params if p.grad is not None], max_norm))
    return {"the same norm without the parameters whose .grad is None": with_none == without and isinstance(with_none, float)}


# ---------------------------------------------------------------- cosine_with_warmup


def schedule_settings(rng: random.Random, *, min_warmup: int) -> list[dict[str, Any]]:
    """Three random schedules; the first has min_lr = 0, the others a floor above 0."""
    out = []
    for k in range(3):
        warmup = rng.randint(min_warmup, 40)
        max_lr = log_uniform(rng, 1e-4, 1.0)
        out.append(dict(warmup_steps=warmup, max_steps=warmup + rng.randint(2, 300), max_lr=max_lr,
                        min_lr=0.0 if k == 0 else max_lr * rng.uniform(0.01, 0.5)))
    return out


def lrs(schedule: Any, settings: dict[str, Any], steps: list[int]) -> dict[str, Any]:
    return {f"step {t}": attempt(lambda: encode_number(schedule(t, **settings))) for t in steps}


def schedule_inputs(settings: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Each setting in words and the call that reproduces one step ("{step}": the step that differed)."""
    out = {}
    for k, s in enumerate(settings, start=1):
        named = ", ".join(f"{key}={value!r}" for key, value in s.items())
        out[f"setting {k}"] = {"settings": named, "try": f"print(cosine_with_warmup({{step}}, {named}))"}
    return out


def spread(low: int, high: int, rng: random.Random) -> list[int]:
    """Every step of [low, high) if at most SPREAD, else both ends, the middle and a random sample between."""
    if high - low <= SPREAD:
        return list(range(low, high))
    return sorted({low, low + 1, high - 1, (low + high) // 2, *rng.sample(range(low, high), SPREAD - 4)})


def schedule_warmup(namespace: dict, seed: int) -> dict[str, Any]:
    """Only steps below warmup_steps: the linear rise from 0."""
    schedule = student(namespace, "cosine_with_warmup")
    rng, _ = rngs("schedule_warmup", seed)
    settings = schedule_settings(rng, min_warmup=2)
    out: dict[str, Any] = {"inputs": schedule_inputs(settings)}
    return out | {f"setting {k}": lrs(schedule, s, spread(0, s["warmup_steps"], rng)) for k, s in enumerate(settings, start=1)}


def schedule_cosine(namespace: dict, seed: int) -> dict[str, Any]:
    """Steps from warmup_steps up to (not including) max_steps: the cosine decay."""
    schedule = student(namespace, "cosine_with_warmup")
    rng, _ = rngs("schedule_cosine", seed)
    settings = schedule_settings(rng, min_warmup=1)
    out: dict[str, Any] = {"inputs": schedule_inputs(settings)}
    return out | {f"setting {k}": lrs(schedule, s, spread(s["warmup_steps"], s["max_steps"], rng))
                  for k, s in enumerate(settings, start=1)}


def schedule_floor(namespace: dict, seed: int) -> dict[str, Any]:
    """Steps from max_steps on, up to 10**9, and the degenerate warmup_steps = max_steps (= 0)."""
    schedule = student(namespace, "cosine_with_warmup")
    rng, _ = rngs("schedule_floor", seed)
    settings = schedule_settings(rng, min_warmup=1)[1:]
    end = rng.randint(1, 50)
    max_lr = log_uniform(rng, 1e-4, 1.0)
    settings += [dict(warmup_steps=end, max_steps=end, max_lr=max_lr, min_lr=max_lr * rng.uniform(0.01, 0.5)),
                 dict(warmup_steps=0, max_steps=0, max_lr=max_lr, min_lr=max_lr * rng.uniform(0.01, 0.5)),
                 dict(warmup_steps=0, max_steps=0, max_lr=max_lr)]
    out: dict[str, Any] = {"inputs": schedule_inputs(settings)}
    for k, s in enumerate(settings, start=1):
        m = s["max_steps"]
        steps = sorted({m, m + 1, m + rng.randint(2, 1000), 2 * m + rng.randint(1, 1000), 10**9})
        out[f"setting {k}"] = lrs(schedule, s, steps)
    return out


# ---------------------------------------------------------------- exercises 2 and 7


def by_hand_p1(namespace: dict, seed: int) -> dict[str, Any]:
    """The student's p1 as a float."""
    return {"p1": encode_number(float(student(namespace, "p1")))}


def diagnosis(namespace: dict, seed: int) -> dict[str, Any]:
    """The student's diagnosis dict as str -> str, capped."""
    value = student(namespace, "diagnosis")
    if not isinstance(value, dict):
        raise TypeError(f"diagnosis is a {type(value).__name__}, not a dict")
    return {"diagnosis": {str(k)[:50]: str(v)[:100] for k, v in list(value.items())[:20]}}


SCENARIOS: dict[str, Callable[[dict, int], dict]] = {
    "adamw_first_step": adamw_first_step,
    "adamw_trajectory_float64": adamw_trajectory_float64,
    "adamw_trajectory_float32": adamw_trajectory_float32,
    "adamw_decoupled_decay": adamw_decoupled_decay,
    "adamw_step_counter": adamw_step_counter,
    "adamw_no_autograd": adamw_no_autograd,
    "adamw_frozen": adamw_frozen,
    "clip_matches": clip_matches,
    "clip_global": clip_global,
    "clip_small_untouched": clip_small_untouched,
    "clip_none_and_eps": clip_none_and_eps,
    "schedule_warmup": schedule_warmup,
    "schedule_cosine": schedule_cosine,
    "schedule_floor": schedule_floor,
    "by_hand_p1": by_hand_p1,
    "diagnosis": diagnosis,
}
