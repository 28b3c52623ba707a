"""The probe's scenarios of momentum-sgd: inputs from the seed, the student's MomentumSGD run on them."""

from __future__ import annotations

import random
from typing import Any

import torch

from g2c.grading.sandbox.probe import attempt, encode_tensor, gradient, leaf, log_uniform, random_shapes, rngs, student


def run(SGD: Any, params: list[torch.Tensor], grads: list[list[torch.Tensor | None]], lr: float, momentum: float) -> dict:
    """Every parameter after each step (``grads[t][i]``: parameter i's gradient at step t + 1, or None)."""
    opt = SGD(params, lr, momentum=momentum)
    out = {}
    for t, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        opt.step()
        out[f"after step {t}"] = {f"parameter {i + 1}": encode_tensor(p) for i, p in enumerate(params)}
    return out


def settings(rng: random.Random) -> tuple[float, float]:
    return log_uniform(rng, 1e-3, 1e-1), rng.uniform(0.5, 0.95)


def constant_gradient(namespace: dict, seed: int, name: str, steps: int) -> dict:
    """``steps`` steps from zero velocity, each with the same gradient per parameter."""
    SGD = student(namespace, "MomentumSGD")
    rng, gen = rngs(name, seed)
    shapes = random_shapes(rng, 3)
    lr, momentum = settings(rng)
    params = [leaf(s, gen) for s in shapes]
    grads = [gradient(s, rng, gen) for s in shapes]
    return run(SGD, params, [grads] * steps, lr, momentum)


def first_step(namespace: dict, seed: int) -> dict:
    """One step: p moves by lr * g."""
    return constant_gradient(namespace, seed, "first_step", 1)


def accumulates(namespace: dict, seed: int) -> dict:
    """Three steps with one constant gradient: each (1 + momentum + ...) times the first, whatever the scale of v."""
    return constant_gradient(namespace, seed, "accumulates", 3)


def trajectory(namespace: dict, seed: int) -> dict:
    """Two settings x 20 steps of fresh gradients; one parameter never gets a gradient (it must not move)."""
    SGD = student(namespace, "MomentumSGD")
    rng, gen = rngs("trajectory", seed)
    shapes = random_shapes(rng, 4)
    out = {}
    for k in (1, 2):
        lr, momentum = settings(rng)
        params = [leaf(s, gen) for s in shapes]
        grads = [[None if i == 3 else gradient(s, rng, gen) for i, s in enumerate(shapes)] for _ in range(20)]
        out[f"setting {k}"] = attempt(lambda: run(SGD, params, grads, lr, momentum))
    for setting in out.values():  # the parameter without a gradient, under its own name (compared bit for bit)
        if isinstance(setting, dict) and "error" not in setting:
            for step in setting.values():
                step["never a gradient"] = step.pop("parameter 4")
    return out


SCENARIOS = {"first_step": first_step, "accumulates": accumulates, "trajectory": trajectory}
