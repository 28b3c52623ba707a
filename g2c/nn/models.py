"""Tiny ``torch.nn`` models: small enough that one training run takes well under a second on one core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def seeded(seed: int, build: Callable[[], M]) -> M:
    """Build a model with its initial weights drawn from ``seed`` without touching the global RNG.

    Matched comparisons (SGD vs AdamW, one lr against another) need the very same start.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class MLP(nn.Module):
    """Linear layers with a nonlinearity between them: ``sizes=(2, 32, 1)`` is 2 -> 32 -> 1."""

    def __init__(self, sizes: Sequence[int], activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"sizes must list at least two positive layer widths, got {list(sizes)!r}")
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i > 0:
                layers.append(activation())
            layers.append(nn.Linear(fan_in, fan_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyLM(nn.Module):
    """Predict the next token from the previous ``context`` tokens (Bengio et al. 2003, in miniature).

    Embed each context token, concatenate, one hidden layer, logits over the vocabulary.
    Input ``(batch, context)`` token ids; output ``(batch, vocab_size)`` logits.
    """

    def __init__(self, vocab_size: int, context: int, embed_dim: int = 16, hidden_dim: int = 64):
        super().__init__()
        sizes = {"vocab_size": vocab_size, "context": context, "embed_dim": embed_dim, "hidden_dim": hidden_dim}
        for name, value in sizes.items():
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.context = context
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.hidden = nn.Linear(context * embed_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.context:
            raise ValueError(f"expected token ids of shape (batch, {self.context}), got {tuple(tokens.shape)}")
        x = self.embed(tokens).flatten(1)
        return self.out(torch.tanh(self.hidden(x)))
