"""The module's diagnostic vocabulary, and the one classifier that names a run's curves in it.

Every caption, figure legend, widget and table of the book gets its label from ``diagnose``:
the terms are defined once, here (``TERMS``), and nothing else decides them. The module's lines::

    loss explodes                -> diverging
    train low, val high          -> overfitting
    train and val high           -> underfit   (fell, then levelled off while still high)
    train and val flat           -> stalled    (barely moved, or still creeping down while high: under-optimized)
    (both fall and end low)      -> healthy

``diagnose`` is a heuristic: a few thresholds (``THRESHOLDS``, each a named constant) tuned on
this module's small models and synthetic data, measured on real runs by ``tests/test_diagnosis.py``.
Its labels are a first reading of a curve, not a verdict on a model. "High" is measured against
``baseline``, the validation loss of always predicting the training targets' mean
(``g2c.data.Dataset.mean_loss``, recorded by ``train`` in ``History.baseline_loss``): a ceiling
that any model which learned something beats, not the floor the data allows (the noise sets
that). Only when no baseline is known does the run's own first loss stand in for it. Every
reason string names the clause that decided. ``example_curves`` draws labelled curves for the
quiz and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from g2c.training import History

# The thresholds, each with what it decides (the book prints this table from here).
EXPLODE = 1.5
HIGH = 0.6
VAL_RISE = 0.10
VAL_RISE_FLOOR = 0.02
GAP_RATIO = 3.0
GAP_FLOOR = 0.10
FLAT = 0.05
LEVELLED = 0.08
LEVELLED_END = 0.015
SPIKE_JUMP = 0.2
SPIKE_FLOOR = 0.05
SMOOTH_SPIKES = 1
THRESHOLDS: dict[str, tuple[float, str]] = {
    "EXPLODE": (EXPLODE, "the training loss rose above this multiple of its start: it exploded"),
    "HIGH": (HIGH, "a loss that ended at or above this share of the predict-the-mean loss is high"),
    "VAL_RISE": (VAL_RISE, "validation ended more than this share above its own minimum: it turned up ..."),
    "VAL_RISE_FLOOR": (VAL_RISE_FLOOR, "... and by more than this share of the predict-the-mean loss (not noise near zero)"),
    "GAP_RATIO": (GAP_RATIO, "validation ended more than this multiple of the training loss ..."),
    "GAP_FLOOR": (GAP_FLOOR, "... and more than this share of the predict-the-mean loss above it (also: the least gap "
                  "for train low, validation high)"),
    "FLAT": (FLAT, "the training loss fell less than this share of its start: it barely moved"),
    "LEVELLED": (LEVELLED, "the last quarter of the run removed less than this share of the whole drop ..."),
    "LEVELLED_END": (LEVELLED_END, "... and less than this share of the final loss: it levelled off"),
    "SPIKE_JUMP": (SPIKE_JUMP, "a spike: an evaluation-to-evaluation rise of the training loss by more than this share "
                   "of its last value ..."),
    "SPIKE_FLOOR": (SPIKE_FLOOR, "... and by more than this share of the predict-the-mean loss"),
    "SMOOTH_SPIKES": (SMOOTH_SPIKES, "a healthy run with at most this many spikes trains smoothly"),
}


def _pct(share: float) -> str:
    """0.6 -> '60 %': how the thresholds read in the terms' tests."""
    return f"{100 * share:g} %"


@dataclass(frozen=True)
class Term:
    """One diagnostic term: the module's words, the test on the curves, and the next thing to try."""

    name: str
    seen: str  # the module's line: what you see
    test: str  # how diagnose tells it from the curves
    action: str  # what to try next, fitted to the likely cause


TERMS: dict[str, Term] = {
    "diverging": Term(
        "diverging", "loss explodes",
        f"the loss became inf or NaN, or the training loss rose above {EXPLODE:g} times its start and validation ended "
        f"high (at or above {_pct(HIGH)} of the predict-the-mean loss); a spike the run recovers from is counted, "
        "not called diverging",
        "Lower the learning rate 3-10x (the steps overshoot), look at the gradient norm, "
        "and make sure clipping sits before optimizer.step().",
    ),
    "overfitting": Term(
        "overfitting", "train low, validation high",
        f"validation ended more than {_pct(VAL_RISE)} above its own minimum while the training loss kept falling; "
        f"or validation ended more than {GAP_RATIO:g} times the training loss and {_pct(GAP_FLOOR)} of the "
        f"predict-the-mean loss above it; or the training loss ended low (below {_pct(HIGH)} of the "
        f"predict-the-mean loss) and validation high, at least {_pct(GAP_FLOOR)} of it above",
        "The model likely memorizes its training examples: get more data, regularize (weight decay, dropout), "
        "use a smaller model, or stop at the validation minimum.",
    ),
    "underfit": Term(
        "underfit", "train and validation high",
        f"validation ended high (at or above {_pct(HIGH)} of the predict-the-mean loss) after the loss fell and "
        f"levelled off: the last quarter of the run removed under {_pct(LEVELLED)} of the whole drop "
        f"and under {_pct(LEVELLED_END)} of the final loss",
        "The optimizer seems to have done its job and the model does no better: if the loss levelled off at the "
        "predict-the-mean loss itself, check the data and the inputs first (the model learned nothing from them); "
        "otherwise give it more capacity (wider or deeper) or better inputs. More steps are unlikely to help "
        "a loss that stopped moving.",
    ),
    "stalled": Term(
        "stalled", "train and validation flat, or still creeping down while high (under-optimized)",
        f"validation ended high (at or above {_pct(HIGH)} of the predict-the-mean loss) and the training loss either "
        f"barely moved (fell under {_pct(FLAT)} from its start) or had not levelled off (the last quarter removed "
        f"{_pct(LEVELLED)} or more of the whole drop, or {_pct(LEVELLED_END)} or more of the final loss)",
        "The steps are probably too short for the budget: raise the learning rate 3-10x or switch to AdamW. "
        "A bigger model will not help a run that takes the same short steps; if nothing moves the loss, check that "
        "gradients reach the parameters and that no regularizer (strong weight decay) holds them back.",
    ),
    "healthy": Term(
        "healthy", "train and validation fall together and end low",
        f"none of the above: validation ended below {_pct(HIGH)} of the predict-the-mean loss and did not turn up",
        "Keep the recipe; in a sweep keep the largest learning rate that still trains smoothly, "
        "or spend the budget on more steps or a larger model.",
    ),
}
KINDS = tuple(TERMS)  # ("diverging", "overfitting", "underfit", "stalled", "healthy")
ACTIONS = {name: term.action for name, term in TERMS.items()}
# One colour (Okabe-Ito: colour-blind safe) and one marker (tells them apart in greyscale) per term,
# for every legend and mark that shows a label.
STYLE = {
    "diverging": {"color": "#D55E00", "marker": "x"},
    "overfitting": {"color": "#CC79A7", "marker": "s"},
    "underfit": {"color": "#E69F00", "marker": "^"},
    "stalled": {"color": "#0072B2", "marker": "v"},
    "healthy": {"color": "#009E73", "marker": "o"},
}
# Spikes are counted on the training loss measured on the whole training split at each evaluation
# (History.eval_train_loss, at History.eval_steps): figures that show spikes plot that curve (spike_curve).
SPIKE_CURVE = "eval_train_loss"


@dataclass(frozen=True)
class Diagnosis:
    label: str  # one of KINDS
    action: str  # the next thing to try, in the module's words
    reason: str  # the measured evidence and the clause that decided, one line
    spikes: int = 0  # eval-to-eval jumps of the training loss (see SPIKE_JUMP)

    @property
    def tag(self) -> str:
        """The label as legends, tables and captions show it: with the spike count when there were spikes."""
        return self.label + (f", {self.spikes} spike{'s' * (self.spikes != 1)}" if self.spikes else "")

    @property
    def smooth(self) -> bool:
        """Healthy with at most one spike: what "trains smoothly" means when picking from a sweep."""
        return self.label == "healthy" and self.spikes <= SMOOTH_SPIKES


def _verdict(label: str, reason: str, spikes: int = 0) -> Diagnosis:
    return Diagnosis(label, ACTIONS[label], reason, spikes)


def _curves(
    train: History | Sequence[float], val: Sequence[float] | None, baseline: float | None
) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """(train, val, baseline) from a History or from two arrays, checked."""
    if isinstance(train, History):
        if val is not None:
            raise ValueError("pass a History alone, or train and val arrays, not both")
        baseline = train.baseline_loss if baseline is None else baseline
        train, val = getattr(train, SPIKE_CURVE), train.val_loss
    t = np.asarray(train, dtype=float)
    v = None if val is None else np.asarray(val, dtype=float)
    if t.ndim != 1 or len(t) < 3:
        raise ValueError(f"train must be a 1-D sequence of at least 3 losses, got shape {t.shape}")
    if v is not None and v.shape != t.shape:
        raise ValueError(f"train and val must have the same length, got {len(t)} and {len(v)}")
    if not math.isfinite(t[0]) or t[0] <= 0:
        raise ValueError(f"the first train loss must be a positive number, got {t[0]!r}")
    if baseline is not None and not (math.isfinite(baseline) and baseline > 0):
        raise ValueError(f"baseline must be a positive number, got {baseline!r}")
    return t, v, baseline


def ended(losses: Sequence[float]) -> float:
    """Where a curve ended: the median of its last three evaluations, so one last spike does not decide."""
    return float(np.median(np.asarray(losses, dtype=float)[-3:]))


def _spiked(t: np.ndarray, scale: float) -> np.ndarray:
    """Per evaluation after the first: did the training loss rise by SPIKE_JUMP of its last value and SPIKE_FLOOR of ``scale``?"""
    rise = t[1:] - t[:-1]
    return (rise > SPIKE_JUMP * t[:-1]) & (rise > SPIKE_FLOOR * scale)


def count_spikes(t: np.ndarray, scale: float) -> int:
    """Eval-to-eval rises of the training loss by 20 % of its last value and 5 % of ``scale``."""
    return int(_spiked(np.asarray(t, dtype=float), scale).sum())


def spike_curve(history: History) -> tuple[list[int], list[float]]:
    """(steps, losses) of the curve ``diagnose`` counts spikes on: what a figure that shows spikes should plot."""
    return list(history.eval_steps), list(getattr(history, SPIKE_CURVE))


def spike_steps(history: History) -> list[int]:
    """The evaluation steps at which ``diagnose`` counted a spike (the step after the rise), to mark on ``spike_curve``."""
    steps, losses = spike_curve(history)
    t = np.asarray(losses, dtype=float)
    if history.diverged or len(t) < 3 or not np.isfinite(t).all():
        return []
    scale = history.baseline_loss if history.baseline_loss is not None else float(t[0])
    return [steps[i + 1] for i in np.flatnonzero(_spiked(t, scale))]


def _of(share: float, against: str) -> str:
    return f"{100 * share:.0f}% of {against}"


def _overfitting(t: np.ndarray, v: np.ndarray, scale: float, against: str, bumps: str, spikes: int) -> Diagnosis | None:
    """Train low, validation high: validation turned up from its minimum, ended far above train, or high while train is low."""
    t_end, v_end = ended(t), ended(v)
    best = int(np.argmin(v))
    rise = v_end - v[best]
    if rise > VAL_RISE * v[best] and rise > VAL_RISE_FLOOR * scale and best < len(v) - 2 and t_end <= 1.02 * t[best]:
        return _verdict(
            "overfitting",
            f"validation bottomed out at {v[best]:.3g} (point {best}) and ended {100 * rise / v[best]:.0f}% higher "
            f"(more than {_pct(VAL_RISE)}) while the training loss kept falling{bumps}",
            spikes,
        )
    if v_end > GAP_RATIO * t_end and v_end - t_end > GAP_FLOOR * scale:
        return _verdict(
            "overfitting",
            f"the training loss ended at {t_end:.3g}, validation {v_end / t_end:.1f} times higher at {v_end:.3g} "
            f"(more than {GAP_RATIO:g} times){bumps}",
            spikes,
        )
    if t_end < HIGH * scale <= v_end and v_end - t_end > GAP_FLOOR * scale:
        return _verdict(
            "overfitting",
            f"the training loss ended low, at {_of(t_end / scale, against)} (below {_pct(HIGH)}), and validation high, "
            f"at {_of(v_end / scale, against)}{bumps}",
            spikes,
        )
    return None


def _still_high(t: np.ndarray, height: float, against: str, bumps: str, spikes: int) -> Diagnosis:
    """Validation ended high: stalled if the loss barely moved or was still creeping down, underfit if it levelled off."""
    first, t_end = t[0], ended(t)
    drop = (first - t_end) / first
    quarter = t[(3 * len(t)) // 4] - t_end
    late = quarter / (first - t_end) if first > t_end else 0.0
    high = f"validation ended at {_of(height, against)} (at or above {_pct(HIGH)}: high)"
    if drop < FLAT:
        return _verdict("stalled", f"{high} and the training loss fell only {100 * drop:.1f}% (under {_pct(FLAT)}: "
                        f"it barely moved){bumps}", spikes)
    if late >= LEVELLED:
        return _verdict("stalled", f"{high} and the loss had not levelled off: the last quarter removed {100 * late:.0f}% "
                        f"of its {100 * drop:.0f}% drop ({_pct(LEVELLED)} or more){bumps}", spikes)
    if quarter >= LEVELLED_END * t_end:
        return _verdict("stalled", f"{high} and the loss had not levelled off: the last quarter removed "
                        f"{100 * quarter / t_end:.1f}% of the final loss ({_pct(LEVELLED_END)} or more){bumps}", spikes)
    return _verdict(
        "underfit",
        f"{high}; the training loss fell {100 * drop:.0f}% and levelled off (the last quarter removed {100 * late:.0f}% "
        f"of the drop and {100 * quarter / t_end:.1f}% of the final loss, under {_pct(LEVELLED)} and {_pct(LEVELLED_END)})"
        f"{bumps}",
        spikes,
    )


def diagnose(train: History | Sequence[float], val: Sequence[float] | None = None, baseline: float | None = None) -> Diagnosis:
    """Name a run's curves with one of ``KINDS``: a ``History``, or evaluation-time train and val losses.

    The tests, in order (``TERMS`` says each in words, from the constants of ``THRESHOLDS``):
    inf/NaN, or a training loss above EXPLODE times its start with validation ending high ->
    diverging; validation VAL_RISE above its minimum while train kept falling, GAP_RATIO times
    train, or high while train is low -> overfitting; validation still at or above HIGH of
    ``baseline`` -> stalled if the loss barely moved or had not levelled off, underfit if it
    levelled off; otherwise healthy. ``baseline`` defaults to the History's ``baseline_loss``
    (the data's predict-the-mean loss); without one the first training loss stands in for it.
    Spikes are counted on ``SPIKE_CURVE``. A run "ends" where ``ended`` says.
    """
    if isinstance(train, History) and train.diverged:  # its curves may be too short to read
        return _verdict("diverging", f"the training loss became inf or NaN at step {train.diverged_at}")
    t, v, baseline = _curves(train, val, baseline)
    finite = np.isfinite(t) & (np.isfinite(v) if v is not None else True)
    if not finite.all():
        return _verdict("diverging", f"the loss became inf or NaN at evaluation {int(np.argmin(finite))}")
    v = t if v is None else v
    scale = baseline if baseline is not None else t[0]
    spikes = count_spikes(t, scale)
    height = ended(v) / scale
    against = "the predict-the-mean loss" if baseline is not None else "its start"
    if t.max() > EXPLODE * t[0] and height >= HIGH:
        return _verdict(
            "diverging",
            f"the training loss rose from {t[0]:.3g} to {t.max():.3g} (above {EXPLODE:g} times its start) and validation "
            f"ended at {_of(height, against)} (at or above {_pct(HIGH)})",
            spikes,
        )
    bumps = f"; the training loss spiked {spikes} time{'s' * (spikes != 1)}" if spikes else ""
    overfit = _overfitting(t, v, scale, against, bumps, spikes)
    if overfit is not None:
        return overfit
    if height >= HIGH:
        return _still_high(t, height, against, bumps, spikes)
    return _verdict(
        "healthy",
        f"validation ended at {_of(height, against)} (below {_pct(HIGH)}) and neither loss turned up{bumps}",
        spikes,
    )


def labels_of_cell(source: str) -> dict[str, str]:
    """``diagnose`` on each run of a notebook cell that trains a dict ``curves`` of Histories (with
    the setup cell's names at hand): an exercise's key is computed from its own runs, never typed."""
    import torch

    from g2c.data import regression, tokens
    from g2c.nn import MLP, TinyLM, seeded
    from g2c.training import SGD, AdamW, train

    namespace = {"torch": torch, "regression": regression, "tokens": tokens, "MLP": MLP, "TinyLM": TinyLM,
                 "seeded": seeded, "SGD": SGD, "AdamW": AdamW, "train": train}
    exec(source, namespace)
    return {name: diagnose(history).label for name, history in namespace["curves"].items()}


def example_curves(kind: str, rng: np.random.Generator, n: int = 30) -> tuple[np.ndarray, np.ndarray, float]:
    """Fresh (train, val, baseline) evaluation curves of shape ``kind``, with random scale, speed and noise.

    Underfit and stalled look different on purpose: underfit falls fast and then lies flat
    well above the floor; stalled starts near the predict-the-mean loss and hardly moves.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    s = np.linspace(0.0, 1.0, n)
    baseline = rng.uniform(0.3, 3.0)

    def noisy(curve: np.ndarray, level: float = 0.01) -> np.ndarray:
        return curve * (1 + level * rng.standard_normal(n))

    def decay(start: float, floor: float, tau: float) -> np.ndarray:
        return floor + (start - floor) * np.exp(-s / tau)

    start = baseline * rng.uniform(1.0, 2.0)
    if kind == "healthy":
        t = decay(start, baseline * rng.uniform(0.05, 0.35), rng.uniform(0.07, 0.2))
        return noisy(t), noisy(t * (1 + rng.uniform(0.0, 0.08))), baseline
    if kind == "overfitting":
        tau = rng.uniform(0.07, 0.2)
        t = decay(start, baseline * rng.uniform(0.0, 0.2), tau)
        v = decay(start, baseline * rng.uniform(0.3, 0.5), tau)
        turn = rng.uniform(0.25, 0.55)
        v = v + v.min() * rng.uniform(0.2, 0.8) * np.clip(s - turn, 0, None) / (1 - turn)
        return noisy(t), noisy(v), baseline
    if kind == "underfit":
        t = decay(baseline * rng.uniform(1.2, 2.0), baseline * rng.uniform(0.7, 0.95), rng.uniform(0.05, 0.12))
        return noisy(t, 0.003), noisy(t * (1 + rng.uniform(0.0, 0.05)), 0.003), baseline
    if kind == "stalled":
        near = baseline * rng.uniform(0.95, 1.3)
        t = near * (1 - rng.uniform(0.0, 0.1) * s)
        return noisy(t, 0.002), noisy(t * (1 + rng.uniform(0.0, 0.05)), 0.002), baseline
    # diverging: learns for a while, then blows up to NaN or far above the start
    t = decay(start, baseline * rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.2))
    gap = 1 + rng.uniform(0.0, 0.05)
    onset = int(n * rng.uniform(0.3, 0.7))
    if rng.random() < 0.5:
        t[onset:] = np.nan
    else:
        growth = np.log(rng.uniform(4.0, 50.0) * start / t[onset]) / (n - 1 - onset)
        t[onset:] = t[onset] * np.exp(growth * np.arange(n - onset))
    return noisy(t), noisy(t * gap), baseline
