"""The probe harness: runs in the sandbox, in the student's process, and records plain data only.

Nothing here decides a point. Each scenario builds inputs from the grading run's seed, calls the
student's objects on them and writes down what came out (numbers, shapes, dtypes, booleans,
exception names); ``g2c.grading.compare`` decides outside, by running these same functions on
the reference. So this module holds no expected value and imports nothing but the standard
library and torch: the sandbox's ``g2c`` is a kit without solutions and without this package's
siblings, and the zygote imports this module before forking.

A record is one JSON line per scenario on the descriptor that was stdout before the student's
code ran, written as soon as the scenario is done: an endless loop loses only what follows.
"""

from __future__ import annotations

import array
import base64
import json
import math
import os
import random
import signal
import sys
import zlib
from collections.abc import Callable
from typing import Any

import torch

SCENARIO_SECONDS = 5.0  # per scenario; the 10**9-step schedule must not need a loop
MAX_LINE = 2 * 2**20  # one scenario's JSON line; more is recorded as an error
MAX_MESSAGE = 300  # characters of an exception's message recorded
SPREAD = 40  # steps of a schedule's phase recorded

# ---------------------------------------------------------------- plain data


class _Timeout(BaseException):
    """Raised by SIGALRM; a BaseException so a student's ``except Exception`` does not swallow it."""


def encode_tensor(t: torch.Tensor) -> dict[str, Any]:
    """A tensor as {dtype, shape, b64 of float64 little-endian bytes}: exact for every float dtype."""
    values = array.array("d", t.detach().to(device="cpu", dtype=torch.float64).reshape(-1).tolist())
    if sys.byteorder == "big":
        values.byteswap()
    return {"dtype": str(t.dtype), "shape": list(t.shape), "b64": base64.b64encode(values.tobytes()).decode("ascii")}


def encode_number(x: float) -> float | str:
    """A float JSON can carry: NaN and infinities become the strings "nan", "inf", "-inf"."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def encode_error(exc: BaseException) -> dict[str, str]:
    """An exception as its type name and the first characters of its message."""
    if isinstance(exc, _Timeout):
        return {"error": "Timeout", "message": "did not finish within the time limit"}
    try:
        message = str(exc)
    except BaseException:  # a student's exception whose __str__ raises
        message = ""
    return {"error": type(exc).__name__[:100], "message": message[:MAX_MESSAGE]}


def encode_returned(value: Any) -> float | str:
    """A returned norm as a number (a 0-dim or one-element tensor, or a float), else its type in <>."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return encode_number(value.detach().to("cpu", torch.float64).item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return encode_number(value)
    return f"<{type(value).__name__[:100]}>"


def grad_or_none(p: torch.Tensor) -> dict[str, Any] | None:
    """The gradient of ``p`` encoded, or None when it has none."""
    return None if p.grad is None else encode_tensor(p.grad)


def attempt(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the exception it raised as data (a timeout is not caught here: it ends the scenario)."""
    try:
        return fn()
    except _Timeout:
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from student code are data too
        return encode_error(exc)


def student(namespace: dict, name: str) -> Any:
    """The student's object ``name``; NameError (recorded) when their cells never defined it."""
    if name not in namespace:
        raise NameError(f"name {name!r} is not defined")
    return namespace[name]


# ---------------------------------------------------------------- inputs from the seed


def rngs(name: str, seed: int) -> tuple[random.Random, random.Random]:
    """Two generators seeded from (scenario, seed): every scenario draws its own inputs."""
    key = zlib.crc32(f"{name}:{int(seed)}".encode())
    return random.Random(key), random.Random(key ^ 0x5EED)


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return 10 ** rng.uniform(math.log10(low), math.log10(high))


def random_shapes(rng: random.Random, count: int) -> list[tuple[int, ...]]:
    """Mixed shapes: a matrix, a vector, a 3-d block, a single element, then vectors."""
    shapes = [(rng.randint(2, 5), rng.randint(2, 4)), (rng.randint(2, 6),), (2, rng.randint(1, 3), 2), (1,)]
    return (shapes + [(rng.randint(2, 6),) for _ in range(count)])[:count]


def noise(shape: tuple[int, ...], gen: random.Random, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Random values in [-2, 2) from Python's generator with IEEE arithmetic only: bit-identical on
    every machine, where torch's vectorised sampling or libm's log and cos may differ by an ulp
    between CPUs, and the checks on untouched values are exact. (The distribution does not matter.)"""
    values = [4.0 * gen.random() - 2.0 for _ in range(math.prod(shape))]
    return torch.tensor(values, dtype=torch.float64).reshape(shape).to(dtype)


def leaf(shape: tuple[int, ...], gen: random.Random, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return noise(shape, gen, dtype).requires_grad_()


def gradient(shape: tuple[int, ...], rng: random.Random, gen: random.Random, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random gradient at a random scale between 1e-3 and 1e2: AdamW must not care."""
    return (10.0 ** rng.randint(-3, 2)) * noise(shape, gen, dtype)


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


def record(name: str, namespace: dict, seed: int) -> Any:
    """The data of one scenario, or its exception as data. Never raises but a timeout."""
    return attempt(lambda: SCENARIOS[name](namespace, seed))


# ---------------------------------------------------------------- running in the sandbox


_armed = [False]  # the alarm raises only while a bounded call runs


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed[0]:
        raise _Timeout()


def _bounded(fn: Callable[[], Any], seconds: float | None) -> Any:
    """``fn()`` under a SIGALRM timer that keeps firing (every 50 ms) until cancelled (none when
    ``seconds`` is None), or its exception as data; the timer is disarmed and cancelled before returning."""
    try:
        try:
            if seconds is not None:
                _armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
            return fn()
        finally:
            _armed[0] = False
            if seconds is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except BaseException as exc:  # the student's, or a timeout that hit the finally above
        return encode_error(exc)


def ipython_free(source: str) -> str:
    """The cell without IPython-only lines (``%magic``, ``!shell``): plain Python can exec it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _write(fd: int, obj: dict) -> None:
    """One JSON line, whole; an unserialisable or oversized object becomes an error line instead."""
    try:
        line = json.dumps(obj, allow_nan=False, separators=(",", ":"))
        if len(line) > MAX_LINE:
            raise ValueError(f"{len(line)} characters of data")
    except BaseException as exc:
        key = "scenario" if "scenario" in obj else "cell"
        line = json.dumps({key: str(obj.get(key, "")), ("data" if key == "scenario" else "error"): encode_error(exc)})
    data = (line + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _exec_cell(namespace: dict, grade_id: str, source: str) -> None:
    exec(compile(ipython_free(source), f"<cell {grade_id}>", "exec"), namespace)


def run(payload: dict) -> None:
    """Exec the notebook's setup and answer cells into one namespace, then record every scenario.

    ``payload``: {"seed": int, "setup": source, "cells": [[grade_id, source], ...], "scenarios": [names]},
    optionally "scenario_seconds" (default above) and "cell_seconds" (the grader's cell timeout;
    without it the cells are not timed here, only the sandbox's timeout bounds them).

    Student code runs with fds 1 and 2 on /dev/null; the record goes to the fd that was stdout
    before, one JSON line per scenario as soon as it is done, then {"done": true}. Never raises.
    """
    saved_out = saved_err = -1
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        saved_out, saved_err = os.dup(1), os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        try:
            previous = signal.signal(signal.SIGALRM, _on_alarm)
            timers = True
        except (ValueError, OSError):  # not the main thread: no time limits here, the sandbox has one
            previous, timers = None, False
        try:
            _run(payload, saved_out, timers)
        finally:
            if timers:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
    except BaseException:
        pass
    finally:
        for stream in (sys.stdout, sys.stderr):  # the student's buffered output goes to /dev/null, not the record
            try:
                stream.flush()
            except BaseException:
                pass
        for fd, target in ((saved_out, 1), (saved_err, 2)):
            try:
                if fd >= 0:
                    os.dup2(fd, target)
                    os.close(fd)
            except BaseException:
                pass


def _run(payload: dict, out: int, timers: bool) -> None:
    seed = int(payload.get("seed", 0))
    scenario_seconds = float(payload.get("scenario_seconds", SCENARIO_SECONDS)) if timers else None
    cell_seconds = float(payload["cell_seconds"]) if timers and "cell_seconds" in payload else None
    namespace: dict[str, Any] = {"__name__": "__main__"}
    cells = [("setup", payload.get("setup") or "")] + [cell for cell in payload.get("cells", [])
                                                         if isinstance(cell, (list, tuple)) and len(cell) == 2]
    for grade_id, source in cells:
        error = _bounded(lambda: _exec_cell(namespace, str(grade_id), str(source)), cell_seconds)
        if error is not None:
            _write(out, {"cell": str(grade_id), "error": error})
    for name in payload.get("scenarios", list(SCENARIOS)):
        if name in SCENARIOS:
            data = _bounded(lambda: SCENARIOS[name](namespace, seed), scenario_seconds)
            _write(out, {"scenario": name, "data": data})
    _write(out, {"done": True})
