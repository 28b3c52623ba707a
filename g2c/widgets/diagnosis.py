"""The module's diagnostic vocabulary, and the one classifier that names a run's curves in it.

Every caption, figure legend, widget and table of the book gets its label from ``diagnose``:
the terms are defined once, here (``TERMS``), and nothing else decides them. The module's lines::

    loss explodes                -> diverging
    train low, val high          -> overfitting
    train and val high           -> underfit   (fell, then levelled off while still high)
    train and val flat           -> stalled    (barely moves, or still creeping down while high)
    (both fall and end low)      -> healthy

"High" is judged against what the data allows: ``baseline``, the validation loss of always
predicting the training targets' mean (``g2c.data.Dataset.mean_loss``, recorded by ``train``
in ``History.baseline_loss``). Only when no baseline is known does the run's own first loss
stand in for it. ``example_curves`` draws labelled curves for the quiz and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from g2c.training import History


@dataclass(frozen=True)
class Term:
    """One diagnostic term: the module's words, the test on the curves, and the next thing to try."""

    name: str
    seen: str  # the module's line: what you see
    test: str  # how diagnose tells it from the curves
    action: str  # what to try next, fitted to the cause


TERMS: dict[str, Term] = {
    "diverging": Term(
        "diverging", "loss explodes",
        "the loss became NaN or inf, or the training loss rose above 1.5 times its start and validation ended high "
        "(above 60 % of the predict-the-mean loss); a spike the run recovers from is counted, not called diverging",
        "Lower the learning rate 3-10x (the steps overshoot), look at the gradient norm, "
        "and make sure clipping sits before optimizer.step().",
    ),
    "overfitting": Term(
        "overfitting", "train low, validation high",
        "the validation loss ended at least 10 % above its own minimum while the training loss kept falling, "
        "or ended more than 3 times the training loss and 10 % of the predict-the-mean loss above it",
        "The model memorizes its training examples: get more data, regularize (weight decay, dropout), "
        "use a smaller model, or stop at the validation minimum.",
    ),
    "underfit": Term(
        "underfit", "train and validation high",
        "the loss fell, then levelled off (the last quarter of the run removed under 8 % of the whole drop "
        "and under 1.5 % of the final loss) while validation stayed above 60 % of the predict-the-mean loss",
        "The optimizer has done its job and the model cannot do better: give it more capacity (wider or deeper) "
        "or better inputs. Training longer will not help.",
    ),
    "stalled": Term(
        "stalled", "train and validation flat",
        "validation stayed above 60 % of the predict-the-mean loss and the loss either barely moved "
        "(under 5 % below its start) or was still creeping down at the end",
        "The steps are too short: raise the learning rate 3-10x or switch to AdamW. A bigger model will not help; "
        "if neither moves it, check that gradients reach the parameters.",
    ),
    "healthy": Term(
        "healthy", "train and validation fall together and end low",
        "none of the above: both losses fell well below the predict-the-mean loss and validation did not turn up",
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

EXPLODE = 1.5  # training loss above 1.5x its start: exploded (diverging if it ends high)
VAL_RISE = 0.10  # validation ends 10 % above its minimum ...
VAL_RISE_FLOOR = 0.02  # ... and by at least 2 % of the baseline (not noise near zero)
GAP_RATIO, GAP_FLOOR = 3.0, 0.10  # or validation ends 3x the training loss, 10 % of the baseline above it
HIGH = 0.6  # validation above 60 % of the predict-the-mean loss: still high
FLAT = 0.05  # fell less than 5 % from the start: barely moved
LEVELLED = 0.08  # the last quarter removed less than 8 % of the whole drop ...
LEVELLED_END = 0.015  # ... and less than 1.5 % of the final loss: levelled off
SPIKE_JUMP = 0.2  # an eval-to-eval rise of the training loss by 20 % of its last value ...
SPIKE_FLOOR = 0.05  # ... and by at least 5 % of the baseline
SMOOTH_SPIKES = 1  # one spike that recovers is a rare bad step; more is a rate at its edge


@dataclass(frozen=True)
class Diagnosis:
    label: str  # one of KINDS
    action: str  # the next thing to try, in the module's words
    reason: str  # the measured evidence, one line
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
        train, val = train.eval_train_loss, train.val_loss
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


def count_spikes(t: np.ndarray, scale: float) -> int:
    """Eval-to-eval rises of the training loss by 20 % of its last value and 5 % of ``scale``."""
    rise = t[1:] - t[:-1]
    return int(((rise > SPIKE_JUMP * t[:-1]) & (rise > SPIKE_FLOOR * scale)).sum())


def _overfitting(t: np.ndarray, v: np.ndarray, scale: float, bumps: str, spikes: int) -> Diagnosis | None:
    """Train low, validation high: validation turned up from its minimum, or ended far above train."""
    t_end, v_end = ended(t), ended(v)
    best = int(np.argmin(v))
    rise = v_end - v[best]
    if rise > VAL_RISE * v[best] and rise > VAL_RISE_FLOOR * scale and best < len(v) - 2 and t_end <= 1.02 * t[best]:
        return _verdict(
            "overfitting",
            f"validation bottomed out at {v[best]:.3g} (point {best}) and ended {100 * rise / v[best]:.0f}% higher "
            f"while the training loss kept falling{bumps}",
            spikes,
        )
    if v_end > GAP_RATIO * t_end and v_end - t_end > GAP_FLOOR * scale:
        return _verdict(
            "overfitting",
            f"the training loss ended at {t_end:.3g}, validation {v_end / t_end:.0f} times higher at {v_end:.3g}{bumps}",
            spikes,
        )
    return None


def _still_high(t: np.ndarray, height: float, against: str, bumps: str, spikes: int) -> Diagnosis:
    """Validation ended high: stalled if the loss barely moved or was still creeping down, underfit if it levelled off."""
    first, t_end = t[0], ended(t)
    drop = (first - t_end) / first
    quarter = t[(3 * len(t)) // 4] - t_end
    late = quarter / (first - t_end) if first > t_end else 0.0
    if drop < FLAT:
        return _verdict(
            "stalled",
            f"the training loss fell only {100 * drop:.1f}% and validation ended at {100 * height:.0f}% of {against}{bumps}",
            spikes,
        )
    if late >= LEVELLED or quarter >= LEVELLED_END * t_end:
        return _verdict(
            "stalled",
            f"validation ended at {100 * height:.0f}% of {against} and the loss was still creeping down "
            f"({100 * late:.0f}% of its drop came in the last quarter){bumps}",
            spikes,
        )
    return _verdict(
        "underfit",
        f"the training loss fell {100 * drop:.0f}% and levelled off ({100 * late:.0f}% of the drop in the last quarter) "
        f"with validation at {100 * height:.0f}% of {against}{bumps}",
        spikes,
    )


def diagnose(train: History | Sequence[float], val: Sequence[float] | None = None, baseline: float | None = None) -> Diagnosis:
    """Name a run's curves with one of ``KINDS``: a ``History``, or evaluation-time train and val losses.

    The tests, in order (``TERMS`` says each in words): NaN/inf, or a training loss above 1.5x
    its start with validation ending high -> diverging; validation 10 % above its minimum while
    train kept falling, or far above train -> overfitting; validation still above 60 % of
    ``baseline`` -> stalled if the loss barely moved or was still falling in the last quarter,
    underfit if it fell and levelled off; otherwise healthy. ``baseline`` defaults to the
    History's ``baseline_loss`` (the data's predict-the-mean loss); without one the first
    training loss stands in for it. A run "ends" where ``ended`` says.
    """
    if isinstance(train, History) and train.diverged:  # its curves may be too short to read
        return _verdict("diverging", f"the loss became NaN/inf at step {train.diverged_at}")
    t, v, baseline = _curves(train, val, baseline)
    finite = np.isfinite(t) & (np.isfinite(v) if v is not None else True)
    if not finite.all():
        return _verdict("diverging", f"the loss became NaN/inf at point {int(np.argmin(finite))}")
    v = t if v is None else v
    scale = baseline if baseline is not None else t[0]
    spikes = count_spikes(t, scale)
    height = ended(v) / scale
    against = "the predict-the-mean loss" if baseline is not None else "its start"
    if t.max() > EXPLODE * t[0] and height >= HIGH:
        return _verdict(
            "diverging",
            f"the training loss rose from {t[0]:.3g} to {t.max():.3g} and validation ended at {100 * height:.0f}% of {against}",
            spikes,
        )
    bumps = f"; the training loss spiked {spikes} time{'s' * (spikes != 1)}" if spikes else ""
    overfit = _overfitting(t, v, scale, bumps, spikes)
    if overfit is not None:
        return overfit
    if height >= HIGH:
        return _still_high(t, height, against, bumps, spikes)
    return _verdict("healthy", f"validation ended at {100 * height:.0f}% of {against}, and neither loss turned up{bumps}", spikes)


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
