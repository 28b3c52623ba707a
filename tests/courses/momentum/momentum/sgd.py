"""SGD with momentum: the reference answer of the test course's one assignment."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class MomentumSGD:
    """Heavy-ball SGD as ``torch.optim.SGD(momentum=...)`` computes it: v = momentum * v + g, p -= lr * v."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.9) -> None:
        self.params = list(params)
        self.lr, self.momentum = lr, momentum
        self.velocity = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient; the others keep their velocity."""
        ### BEGIN SOLUTION
        with torch.no_grad():
            for p, v in zip(self.params, self.velocity):
                if p.grad is None:
                    continue
                v.mul_(self.momentum).add_(p.grad)
                p.sub_(self.lr * v)
        ### END SOLUTION
