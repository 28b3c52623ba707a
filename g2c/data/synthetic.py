"""Synthetic data: the same seed always gives the same split, so runs are comparable and repeatable.

- ``regression``: noisy samples of a smooth 2-D function, for an ``MLP``. Plain SGD on it stalls
  at small learning rates, trains at medium ones and diverges at large ones.
- ``tokens``: (previous ``context`` tokens -> next token) pairs whose next token follows a random
  order-``context`` Markov chain, for a ``TinyLM``. The best possible validation loss is the
  chain's entropy; with few training pairs a large enough model memorises them and validation
  loss turns back up (overfitting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Dataset:
    """Train and validation tensors plus the loss that goes with them."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch_size: int | None = None  # None: every step sees the whole training split
    # The expected validation loss of the true function (regression: the noise variance; tokens: the chain's
    # entropy): the floor no model can beat, however well it trains. None when unknown.
    floor: float | None = None

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch, drawn with ``generator`` so a run is repeatable."""
        if self.batch_size is None or self.batch_size >= len(self.train_x):
            return self.train_x, self.train_y
        idx = torch.randint(len(self.train_x), (self.batch_size,), generator=generator)
        return self.train_x[idx], self.train_y[idx]

    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(model(x), y)

    @torch.no_grad()
    def mean_loss(self) -> float:
        """Validation loss of always predicting the training targets' mean: what "high" is judged against.

        MSE: predict the mean target. Cross-entropy: predict the training split's class
        frequencies (add-one smoothed, so an unseen class costs a finite loss). A model that
        ends near this number has learned nothing about its inputs.
        """
        if self.train_y.is_floating_point():
            guess = self.train_y.mean(0, keepdim=True).expand_as(self.val_y)
            return self.loss_fn(guess, self.val_y).item()
        classes = int(max(self.train_y.max(), self.val_y.max())) + 1
        counts = torch.bincount(self.train_y, minlength=classes).float() + 1.0
        logits = counts.log().expand(len(self.val_y), classes)
        return self.loss_fn(logits, self.val_y).item()

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> tuple[float, float]:
        """Mean (train, validation) loss over the whole splits, in eval mode."""
        was_training = model.training
        model.eval()
        try:
            return (self.loss(model, self.train_x, self.train_y).item(), self.loss(model, self.val_x, self.val_y).item())
        finally:
            model.train(was_training)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def regression(n_train: int = 256, n_val: int = 256, *, noise: float = 0.1, seed: int = 0,
               batch_size: int | None = None) -> Dataset:
    """``y = sin(3 x1) * cos(2 x2) + x1 x2 + noise`` on ``[-1, 1]^2``, mean squared error."""
    _check_sizes(n_train=n_train, n_val=n_val)
    if not noise >= 0.0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_val, 2, generator=g) * 2 - 1
    y = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:]) + x[:, :1] * x[:, 1:]
    y = y + noise * torch.randn(y.shape, generator=g)
    return Dataset("regression", x[:n_train], y[:n_train], x[n_train:], y[n_train:], F.mse_loss, batch_size, noise**2)


def tokens(
    n_train: int = 8192,
    n_val: int = 1024,
    *,
    vocab_size: int = 12,
    context: int = 2,
    sharpness: float = 3.0,
    seed: int = 0,
    batch_size: int | None = 256,
) -> Dataset:
    """(context tokens -> next token) pairs from a random Markov chain, cross-entropy loss.

    The defaults train a ``TinyLM(12, 2)`` healthily (both losses fall); ``n_train=512`` with
    ``batch_size=None`` overfits within a few hundred AdamW steps.

    Each of the ``vocab_size ** context`` contexts gets its own next-token distribution,
    ``softmax(sharpness * z)`` with ``z`` standard normal: larger ``sharpness`` makes the chain
    more predictable (lower entropy), ``0`` makes it uniform noise.
    """
    _check_sizes(n_train=n_train, n_val=n_val, vocab_size=vocab_size, context=context)
    if not sharpness >= 0.0:
        raise ValueError(f"sharpness must be a non-negative number, got {sharpness!r}")
    g = torch.Generator().manual_seed(seed)
    n_contexts = vocab_size**context
    probs = torch.softmax(sharpness * torch.randn(n_contexts, vocab_size, generator=g), dim=1)
    n = n_train + n_val
    x = torch.randint(vocab_size, (n, context), generator=g)
    index = torch.zeros(n, dtype=torch.long)
    for i in range(context):
        index = index * vocab_size + x[:, i]
    y = torch.multinomial(probs[index], 1, generator=g).squeeze(1)
    # the chain's entropy at the validation contexts: the cross-entropy of predicting with the true probabilities
    val_probs = probs[index[n_train:]]
    floor = float(-(val_probs * val_probs.clamp_min(1e-30).log()).sum(1).mean())
    return Dataset("tokens", x[:n_train], y[:n_train], x[n_train:], y[n_train:], F.cross_entropy, batch_size, floor)


