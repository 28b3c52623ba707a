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


def train(
    AdamW: Any,
    params: list[torch.Tensor],
    grads: list[list[torch.Tensor | None]],
    settings: dict[str, Any],
    *,
    record_at: set[int],
    grad_mode: bool = False,
    as_generator: bool = False,
) -> dict[str, Any]:
    """Run ``AdamW`` over ``grads`` (``grads[t][i]``: gradient of parameter i at step t+1, or None).

    ``grad_mode`` False calls ``step()`` under ``torch.no_grad()``, so a missing no_grad costs only
    the scenario made to catch it; the catch-all trajectories call it with grad mode on.
    """
    lr = settings["lr"]
    kwargs = {k: v for k, v in settings.items() if k != "lr"}
    opt = AdamW((p for p in params) if as_generator else params, lr, **kwargs)
    out: dict[str, Any] = {}
    for t, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        with torch.set_grad_enabled(grad_mode):
            opt.step()
        if t in record_at:
            out[f"after step {t}"] = {f"parameter {i + 1}": encode_tensor(p) for i, p in enumerate(params)}
    return out


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
    """Three settings x 40 steps, four parameters of mixed shapes given as a generator, grad mode on;
    one parameter gets its first gradient late (torch counts its steps from there: a wrapper drifts)."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs(name, seed)
    shapes = random_shapes(rng, 4)
    out = {}
    for k, (settings, late, first) in enumerate(trajectory_settings(rng), start=1):
        params = [leaf(s, gen, dtype) for s in shapes]
        grads = [[None if i == late and t < first else gradient(s, rng, gen, dtype) for i, s in enumerate(shapes)]
                 for t in range(1, 41)]
        out[f"setting {k}"] = attempt(lambda: train(AdamW, params, grads, settings, record_at={1, 2, 5, 10, 20, 40},
                                                    grad_mode=True, as_generator=True))
    return out


def adamw_trajectory_float64(namespace: dict, seed: int) -> dict[str, Any]:
    return adamw_trajectory(namespace, seed, torch.float64, "adamw_trajectory_float64")


def adamw_trajectory_float32(namespace: dict, seed: int) -> dict[str, Any]:
    return adamw_trajectory(namespace, seed, torch.float32, "adamw_trajectory_float32")


def adamw_first_step(namespace: dict, seed: int) -> dict[str, Any]:
    """One parameter, one step, no weight decay: only the bias correction decides the update."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_first_step", seed)
    out = {}
    for k in (1, 2):
        shape = (rng.randint(2, 6),)
        settings = dict(lr=log_uniform(rng, 1e-3, 1e-1), betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.9999)),
                        eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=0.0)
        p = leaf(shape, gen)
        scales = torch.tensor([10.0 ** gen.randint(-3, 1) for _ in range(shape[0])], dtype=torch.float64)
        g = noise(shape, gen) * scales  # mixed magnitudes within one parameter
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
    return train(AdamW, [p], grads, settings, record_at=set(range(1, steps + 1)))


def adamw_step_counter(namespace: dict, seed: int) -> dict[str, Any]:
    """Parameters whose first gradient comes at different steps, no decay: one step counter for the
    optimizer gives their bias correction the optimizer's step; counting per parameter does not."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_step_counter", seed)
    shapes = random_shapes(rng, 4)
    firsts = [1] + [rng.randint(2, 6) for _ in shapes[1:]]
    settings = dict(lr=log_uniform(rng, 1e-3, 1e-1), betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)),
                    eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=0.0)
    params = [leaf(s, gen) for s in shapes]
    grads = [[None if t < first else gradient(s, rng, gen) for s, first in zip(shapes, firsts)] for t in range(1, 9)]
    return train(AdamW, params, grads, settings, record_at=set(range(1, 9)))


def adamw_no_autograd(namespace: dict, seed: int) -> dict[str, Any]:
    """Gradients from a real backward, step() with grad mode on: the parameters must stay trainable
    leaves and take the right values (a step that does nothing keeps leaves too, so values count)."""
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

    out["step()"] = attempt(two_steps)
    for i, p in enumerate(params, start=1):
        out[f"parameter {i}"] = {"is a leaf": bool(p.is_leaf), "has no grad_fn": p.grad_fn is None,
                                 "requires grad": bool(p.requires_grad), "value": encode_tensor(p)}
    return out


def adamw_frozen(namespace: dict, seed: int) -> dict[str, Any]:
    """One parameter never gets a gradient while weight decay is on: it must stay bit-identical."""
    AdamW = student(namespace, "AdamW")
    rng, gen = rngs("adamw_frozen", seed)
    shapes = random_shapes(rng, 4)
    frozen = rng.randrange(len(shapes))
    settings = dict(lr=rng.uniform(0.01, 0.1), betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)),
                    eps=log_uniform(rng, 1e-8, 1e-6), weight_decay=rng.uniform(0.05, 0.5))
    params = [leaf(s, gen) for s in shapes]
    grads = [[None if i == frozen else gradient(s, rng, gen) for i, s in enumerate(shapes)] for _ in range(4)]
    moved = train(AdamW, params, grads, settings, record_at={4})["after step 4"]
    out = {"parameter without a gradient": moved.pop(f"parameter {frozen + 1}"),
           "its gradient is still None": params[frozen].grad is None}
    out["the other parameters"] = moved
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
            norm: bool = True, grads: bool = True) -> dict[str, Any]:
    """Call ``clip`` on ``params`` (as a list, a generator or, for one parameter, the Tensor itself)."""
    given = {"list": lambda: list(params), "generator": lambda: (p for p in params), "tensor": lambda: params[0]}[form]()
    returned = clip(given, max_norm) if eps is None else clip(given, max_norm, eps=eps)
    out: dict[str, Any] = {}
    if norm:
        out["returned norm"] = encode_returned(returned)
    if grads:
        out.update({f"gradient {i + 1}": grad_or_none(p) for i, p in enumerate(params)})
    return out


def clip_matches(namespace: dict, seed: int) -> dict[str, Any]:
    """max_norm below and above the total, a list, a generator and a lone Tensor, an explicit eps and
    a parameter without gradient: the returned norm before clipping and every gradient."""
    clip = student(namespace, "clip_grad_norm_")
    rng, gen = rngs("clip_matches", seed)
    cases = [("list, clipped", "list", rng.uniform(0.1, 0.8), None, [1.0, 3.0, 0.5, 2.0]),
             ("generator, not clipped", "generator", rng.uniform(1.5, 10.0), None, [1.0, 0.3, 2.0, 1.0]),
             ("a single Tensor, clipped", "tensor", rng.uniform(0.1, 0.8), None, [3.0]),
             ("explicit eps, clipped", "list", rng.uniform(0.1, 0.8), rng.uniform(0.05, 0.5), [2.0, 1.0, 1.0]),
             ("a parameter without gradient, clipped", "list", rng.uniform(0.1, 0.8), None, [1.0, None, 2.0, 0.5])]
    out = {}
    for label, form, ratio, eps_ratio, scales in cases:
        params = with_grads(random_shapes(rng, len(scales)), [s if s is None else s * rng.uniform(0.5, 2.0) for s in scales], gen)
        total = global_norm(params)
        eps = None if eps_ratio is None else eps_ratio * total
        out[label] = attempt(lambda: clipped(clip, params, ratio * total, eps=eps, form=form))
    return out


def clip_global(namespace: dict, seed: int) -> dict[str, Any]:
    """Gradients of very different norms: one shared scale keeps the small ones in proportion,
    clipping each parameter alone does not. Gradients only (the returned norm is clip_matches')."""
    clip = student(namespace, "clip_grad_norm_")
    rng, gen = rngs("clip_global", seed)
    out = {}
    for k in (1, 2):
        scales = [1e-2, 1.0, 1e2]
        rng.shuffle(scales)
        params = with_grads(random_shapes(rng, 3), [s * rng.uniform(0.5, 2.0) for s in scales], gen)
        max_norm = rng.uniform(0.05, 0.5) * global_norm(params)
        out[f"case {k}"] = attempt(lambda: clipped(clip, params, max_norm, norm=False))
    return out


def clip_small_untouched(namespace: dict, seed: int) -> dict[str, Any]:
    """A global norm below max_norm: every gradient exactly as it was, and the norm returned."""
    clip = student(namespace, "clip_grad_norm_")
    rng, gen = rngs("clip_small_untouched", seed)
    out = {}
    for k, form in enumerate(("list", "generator"), start=1):
        params = with_grads(random_shapes(rng, 4), [1e-3 * rng.uniform(0.5, 2.0) for _ in range(4)], gen)
        max_norm = rng.uniform(2.0, 100.0) * global_norm(params)
        out[f"case {k} ({form})"] = attempt(lambda: clipped(clip, params, max_norm, form=form))
    return out


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
        out[f"one gradient, three None, {label}"] = attempt(lambda: clipped(clip, params, max_norm, eps=eps, norm=False))
    params = with_grads(random_shapes(rng, 4), [1.0, None, rng.uniform(0.5, 2.0), None], gen)
    max_norm = rng.uniform(2.0, 10.0) * global_norm(params)
    out["two gradients, two None, not clipped"] = attempt(lambda: clipped(clip, params, max_norm, grads=False))
    return out


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


def spread(low: int, high: int, rng: random.Random) -> list[int]:
    """Every step of [low, high) if at most SPREAD, else both ends, the middle and a random sample between."""
    if high - low <= SPREAD:
        return list(range(low, high))
    return sorted({low, low + 1, high - 1, (low + high) // 2, *rng.sample(range(low, high), SPREAD - 4)})


def schedule_warmup(namespace: dict, seed: int) -> dict[str, Any]:
    """Only steps below warmup_steps: the linear rise from 0."""
    schedule = student(namespace, "cosine_with_warmup")
    rng, _ = rngs("schedule_warmup", seed)
    return {f"setting {k}": lrs(schedule, s, spread(0, s["warmup_steps"], rng))
            for k, s in enumerate(schedule_settings(rng, min_warmup=2), start=1)}


def schedule_cosine(namespace: dict, seed: int) -> dict[str, Any]:
    """Steps from warmup_steps up to (not including) max_steps: the cosine decay."""
    schedule = student(namespace, "cosine_with_warmup")
    rng, _ = rngs("schedule_cosine", seed)
    return {f"setting {k}": lrs(schedule, s, spread(s["warmup_steps"], s["max_steps"], rng))
            for k, s in enumerate(schedule_settings(rng, min_warmup=1), start=1)}


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
    out = {}
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
