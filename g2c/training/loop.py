"""The one training loop every figure, notebook and widget runs (nanoGPT's ``train.py``, in miniature)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from g2c.data import Dataset


@dataclass
class History:
    """What one run measured. Per step: ``train_loss`` (the batch loss), ``lr``, ``grad_norm``
    (global, before clipping) and ``clipped``; every ``eval_every`` steps and at the end:
    ``eval_steps`` with full-split ``eval_train_loss`` and ``val_loss``."""

    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    clipped: list[bool] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    diverged_at: int | None = None  # the step whose loss was NaN or inf
    baseline_loss: float | None = None  # the data's predict-the-mean validation loss (Dataset.mean_loss)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def steps(self) -> int:
        """Optimizer steps actually taken."""
        return len(self.train_loss)

    @property
    def clip_rate(self) -> float:
        """Fraction of steps on which clipping fired."""
        return sum(self.clipped) / len(self.clipped) if self.clipped else 0.0


def set_lr(optimizer: Any, lr: float) -> None:
    """Set the learning rate of a g2c optimizer (``.lr``) or a torch one (``param_groups``)."""
    if hasattr(optimizer, "param_groups"):
        for group in optimizer.param_groups:
            group["lr"] = lr
    else:
        optimizer.lr = lr


def get_lr(optimizer: Any) -> float:
    return optimizer.param_groups[0]["lr"] if hasattr(optimizer, "param_groups") else optimizer.lr


def train(
    model: torch.nn.Module,
    data: Dataset,
    optimizer: Any,
    *,
    steps: int,
    schedule: Callable[[int], float] | None = None,
    clip: float | None = None,
    eval_every: int = 10,
    seed: int = 0,
) -> History:
    """Train ``model`` on ``data`` for ``steps`` optimizer steps and record what happened.

    ``optimizer`` is anything with ``zero_grad()`` and ``step()`` (g2c's or torch's);
    ``schedule(step)`` sets its lr before each step; ``clip`` is the ``max_norm`` of global
    gradient clipping (None: measure the norm, never clip). A NaN or inf loss stops the run
    and is recorded in ``History.diverged_at``; it is a result, not an error.
    """
    if int(steps) < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if int(eval_every) < 1:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be a positive max_norm or None, got {clip!r}")
    mean_loss = getattr(data, "mean_loss", None)
    history = History(baseline_loss=mean_loss() if callable(mean_loss) else None)
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    max_norm = math.inf if clip is None else clip
    model.train()
    for step in range(steps):
        if step % eval_every == 0:
            _evaluate(model, data, step, history)
        if schedule is not None:
            set_lr(optimizer, schedule(step))
        x, y = data.batch(generator)
        loss = data.loss(model, x, y)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            history.diverged_at = step
            return history
        optimizer.zero_grad()
        loss.backward()
        # torch's clipping, equal to g2c's: the loop must work in a student kit whose own clip is a stub
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        optimizer.step()
        history.train_loss.append(loss_value)
        history.lr.append(get_lr(optimizer))
        history.grad_norm.append(norm)
        history.clipped.append(max_norm / (norm + 1e-6) < 1)  # the test clip_grad_norm_ makes
    _evaluate(model, data, steps, history)
    return history


def _evaluate(model: torch.nn.Module, data: Dataset, step: int, history: History) -> None:
    train_loss, val_loss = data.evaluate(model)
    history.eval_steps.append(step)
    history.eval_train_loss.append(train_loss)
    history.val_loss.append(val_loss)
