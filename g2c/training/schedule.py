"""Learning-rate schedules: linear warmup, then cosine decay, then a floor."""

from __future__ import annotations

import math


def cosine_with_warmup(step: int, *, warmup_steps: int, max_steps: int, max_lr: float, min_lr: float = 0.0) -> float:
    """The learning rate at ``step`` (counted from 0): nanoGPT's ``get_lr`` shape, except that its warmup is
    ``max_lr * (step + 1) / (warmup_steps + 1)`` (never 0) where this one starts at exactly 0.

    - warmup, ``step < warmup_steps``: ``max_lr * step / warmup_steps``, rising from 0;
    - cosine decay, up to ``max_steps``:
      ``min_lr + 0.5 * (1 + cos(pi * (step - warmup_steps) / (max_steps - warmup_steps))) * (max_lr - min_lr)``;
    - after ``max_steps``: ``min_lr``, never decaying further.
    """
    if not step >= 0:
        raise ValueError(f"step must be >= 0, got {step!r}")
    if not warmup_steps >= 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
    if not warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps ({warmup_steps!r}) must not exceed max_steps ({max_steps!r})")
    if not min_lr >= 0.0:
        raise ValueError(f"min_lr must be a non-negative number, got {min_lr!r}")
    if not min_lr <= max_lr:
        raise ValueError(f"min_lr ({min_lr!r}) must not exceed max_lr ({max_lr!r})")
    ### BEGIN SOLUTION
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
    ### END SOLUTION
