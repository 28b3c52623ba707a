"""Naming a train/validation curve shape in the module's diagnostic language, and drawing examples.

The module's language::

    loss explodes        -> lr probably too high, or gradients spiked
    loss barely moves    -> lr too low, optimizer weak, or model/data mismatch
    train low, val high  -> overfitting
    train and val high   -> underfit or under-optimized
    train and val flat   -> stalled optimization

``diagnose`` reads only the shape (ratios to the starting loss), so it works for MSE and
cross-entropy alike. ``example_curves`` draws labelled curves for the quiz and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from g2c.training import History

KINDS = ("healthy", "overfitting", "underfit", "stalled", "diverging", "lr too high")

ACTIONS = {
    "healthy": "Train and validation both fall smoothly: the run is healthy. Keep this recipe; in a sweep, keep the largest lr that still trains smoothly.",
    "overfitting": "Train falls, validation rises: overfitting (or a too small/noisy validation split). Stop at the validation minimum, add data or regularization (weight decay, dropout), or shrink the model.",
    "underfit": "Train and val high: underfit or under-optimized. Loss still falls slowly with finite gradients, so raise the lr, train longer, or use a bigger model.",
    "stalled": "Train and val flat: stalled optimization. Loss barely moves: lr too low, optimizer weak (try AdamW), or a model/data mismatch.",
    "diverging": "Loss explodes: lr probably too high, or gradients spiked. Lower the lr by 3-10x, check gradient norms, and make sure clipping is wired before optimizer.step.",
    "lr too high": "Loss spikes and bounces: the lr is too high for this run. Lower it by about 3x or add warmup; if clipping fires constantly, the lr is the problem, not the clip.",
}

# Thresholds on shape ratios (see ``diagnose``).
EXPLODE_END, EXPLODE_MAX = 1.5, 3.0  # final / first, max / first train loss
SPIKE_JUMP = 0.2  # an eval-to-eval rise of train loss by more than 20 % ...
SPIKES = 2  # ... seen at least twice; one spike that recovers is a rare bad step, not a bad lr
FLAT_DROP = 0.05  # best train loss less than 5 % below the first
VAL_RISE = 0.05  # validation ends 5 % above its minimum while train kept falling
HIGH_DROP = 0.5  # train loss fell by less than half: still high
STILL_FALLING = 0.2  # more than a fifth of the whole drop happened in the last quarter


@dataclass(frozen=True)
class Diagnosis:
    label: str  # one of KINDS
    action: str  # the next thing to try, in the module's words
    reason: str  # the measured evidence, one line


def diagnose(train: History | Sequence[float], val: Sequence[float] | None = None) -> Diagnosis:
    """Name the shape of a run's curves: a ``History``, or evaluation-time train and val losses.

    Rules, in order: non-finite loss or a big rise over the start -> diverging; a single
    eval-to-eval jumps of more than 20 % at least twice -> lr too high; less than 5 % drop -> stalled;
    validation 5 % above its minimum while train kept falling -> overfitting; less than half
    the starting loss gone, or still falling fast at the end -> underfit; else healthy.
    """
    diverged_at = None
    if isinstance(train, History):
        if val is not None:
            raise ValueError("pass a History alone, or train and val arrays, not both")
        diverged_at = train.diverged_at
        if diverged_at is not None:
            return Diagnosis("diverging", ACTIONS["diverging"], f"the loss became NaN/inf at step {diverged_at}")
        train, val = train.eval_train_loss, train.val_loss
    t = np.asarray(train, dtype=float)
    v = None if val is None else np.asarray(val, dtype=float)
    if t.ndim != 1 or len(t) < 3:
        raise ValueError(f"train must be a 1-D sequence of at least 3 losses, got shape {t.shape}")
    if v is not None and v.shape != t.shape:
        raise ValueError(f"train and val must have the same length, got {len(t)} and {len(v)}")
    if not math.isfinite(t[0]) or t[0] <= 0:
        raise ValueError(f"the first train loss must be a positive number, got {t[0]!r}")

    def verdict(label: str, reason: str) -> Diagnosis:
        return Diagnosis(label, ACTIONS[label], reason)

    finite = np.isfinite(t) & (np.isfinite(v) if v is not None else True)
    if not finite.all():
        return verdict("diverging", f"the loss became NaN/inf at point {int(np.argmin(finite))}")
    first = t[0]
    if t[-1] > EXPLODE_END * first or t.max() > EXPLODE_MAX * first:
        return verdict("diverging", f"train loss rose from {first:.3g} to {t.max():.3g}")
    jumps = t[1:] / t[:-1] - 1
    spikes = int((jumps > SPIKE_JUMP).sum())
    if spikes >= SPIKES:
        return verdict("lr too high", f"train loss jumped up {spikes} times, by up to {100 * jumps.max():.0f}%, between evaluations")
    drop = (first - t.min()) / first
    if drop < FLAT_DROP:
        return verdict("stalled", f"train loss fell only {100 * drop:.1f}% from {first:.3g}")
    if v is not None:
        best = int(np.argmin(v))
        rise = (v[-1] - v[best]) / v[best]
        if rise > VAL_RISE and best < len(v) - 2 and t[-1] < 1.02 * t[best]:
            return verdict("overfitting", f"validation bottomed out at point {best} and rose {100 * rise:.0f}% while train kept falling")
    total = first - t[-1]
    late = (t[(3 * len(t)) // 4] - t[-1]) / total if total > 0 else 0.0
    if drop < HIGH_DROP or late > STILL_FALLING:
        return verdict("underfit", f"train loss fell {100 * drop:.0f}% and {100 * late:.0f}% of that came in the last quarter")
    note = "; one spike recovered (clipping guards such rare steps)" if spikes else ""
    return verdict("healthy", f"train loss fell {100 * drop:.0f}% and levelled off; validation followed{note}")


def example_curves(kind: str, rng: np.random.Generator, n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Fresh (train, val) evaluation curves of shape ``kind``, with random scale, speed and noise."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    s = np.linspace(0.0, 1.0, n)
    start = rng.uniform(0.5, 3.0)

    def noisy(curve: np.ndarray, level: float = 0.01) -> np.ndarray:
        return curve * (1 + level * rng.standard_normal(n))

    def decay(floor_frac: float, tau: float) -> np.ndarray:
        floor = start * floor_frac
        return floor + (start - floor) * np.exp(-s / tau)

    if kind == "healthy":
        t = decay(rng.uniform(0.1, 0.4), rng.uniform(0.07, 0.2))
        return noisy(t), noisy(t * (1 + rng.uniform(0.0, 0.08)))
    if kind == "overfitting":
        tau = rng.uniform(0.07, 0.2)
        t = decay(rng.uniform(0.03, 0.25), tau)
        v = decay(rng.uniform(0.35, 0.6), tau)
        turn = rng.uniform(0.25, 0.55)
        v = v + v.min() * rng.uniform(0.15, 0.6) * np.clip(s - turn, 0, None) / (1 - turn)
        return noisy(t), noisy(v)
    if kind == "underfit":
        tau = rng.uniform(0.5, 3.0)
        t = start * (1 - rng.uniform(0.12, 0.4) * (1 - np.exp(-s / tau)) / (1 - np.exp(-1 / tau)))
        return noisy(t), noisy(t * (1 + rng.uniform(0.0, 0.05)))
    if kind == "stalled":
        t = start * (1 - rng.uniform(0.0, 0.02) * s)
        return noisy(t, 0.004), noisy(t * (1 + rng.uniform(0.0, 0.05)), 0.004)
    if kind == "diverging":
        t = decay(rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.2))
        gap = 1 + rng.uniform(0.0, 0.05)
        onset = int(n * rng.uniform(0.3, 0.7))
        if rng.random() < 0.5:  # blows up to NaN
            t[onset:] = np.nan
        else:  # grows exponentially to far above the start
            growth = np.log(rng.uniform(4.0, 50.0) * start / t[onset]) / (n - 1 - onset)
            t[onset:] = t[onset] * np.exp(growth * np.arange(n - onset))
        return noisy(t), noisy(t * gap)
    # lr too high: it learns, but single evaluations jump up by 35-100 %.
    t = decay(rng.uniform(0.2, 0.6), rng.uniform(0.07, 0.25))
    spikes = rng.choice(np.arange(2, n - 1, 3), size=int(rng.integers(2, 6)), replace=False)  # never adjacent
    t[spikes] *= 1 + rng.uniform(0.35, 1.0, size=len(spikes))
    return noisy(t), noisy(t * (1 + rng.uniform(0.0, 0.08)))
