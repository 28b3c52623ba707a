"""Optimizers for Module 03B: AdamW (the one students write) and SGD to compare it with.

Both follow the plain, one-tensor-at-a-time style of PyTorch's ``_single_tensor_adamw``:
one loop over parameters, in-place updates, no fusing. ``lr`` is a plain attribute so a
schedule can set it before every step (``optimizer.lr = cosine_with_warmup(...)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), equal to ``torch.optim.AdamW``.

    Per step ``t`` and parameter ``p`` with gradient ``g``::

        p <- p * (1 - lr * weight_decay)          # decoupled: never enters m or v
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    One step counter for the whole optimizer; parameters whose ``.grad`` is None are skipped.
    (torch counts steps per parameter; the two agree whenever each parameter has a gradient on
    every step or on none, as in every model of this course.)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        self._check_hyperparameters(lr, betas, eps, weight_decay)
        self.params = list(params)  # params may be a generator: read it once
        self.lr = lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = eps
        self.weight_decay = weight_decay
        self.step_count = 0
        self.m = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.v = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    @staticmethod
    def _check_hyperparameters(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
        """Raise ValueError naming the first bad argument (``not x >= 0`` also catches NaN)."""
        if not lr >= 0.0:
            raise ValueError(f"lr must be a non-negative number, got {lr!r}")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be a non-negative number, got {eps!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``, like torch) so the next backward starts clean."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one AdamW update to every parameter that has a gradient."""
        ### BEGIN SOLUTION
        with torch.no_grad():
            self.step_count += 1
            beta1, beta2 = self.betas
            bias_correction1 = 1 - beta1**self.step_count
            bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)
            step_size = self.lr / bias_correction1
            for p, m, v in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                grad = p.grad
                p.mul_(1 - self.lr * self.weight_decay)
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
                p.addcdiv_(m, denom, value=-step_size)
        ### END SOLUTION

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: hyperparameters, step counter and both moments."""
        return {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "step_count": self.step_count,
            "m": [m.clone() for m in self.m],
            "v": [v.clone() for v in self.v],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``; checks everything first so a bad state changes nothing."""
        _check_state(state, ("lr", "betas", "eps", "weight_decay", "step_count"), ("m", "v"), self.params)
        self._check_hyperparameters(state["lr"], state["betas"], state["eps"], state["weight_decay"])
        self.lr, self.betas, self.eps, self.weight_decay = state["lr"], tuple(state["betas"]), state["eps"], state["weight_decay"]
        self.step_count = int(state["step_count"])
        self.m = [m.clone().to(p) for m, p in zip(state["m"], self.params)]
        self.v = [v.clone().to(p) for v, p in zip(state["v"], self.params)]


class SGD:
    """Stochastic gradient descent with optional momentum, equal to ``torch.optim.SGD``.

    ``p <- p - lr * b`` where ``b = g`` without momentum, else ``b <- momentum * b + g``
    (the first step sets ``b = g``). Weight decay here is the classic L2 penalty added to
    the gradient, as in torch's SGD: exactly what AdamW avoids.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, *, momentum: float = 0.0, weight_decay: float = 0.0):
        self._check_hyperparameters(lr, momentum, weight_decay)
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.buffers: list[torch.Tensor | None] = [None for _ in self.params]

    @staticmethod
    def _check_hyperparameters(lr: float, momentum: float, weight_decay: float) -> None:
        """Raise ValueError naming the first bad argument (``not x >= 0`` also catches NaN)."""
        if not lr >= 0.0:
            raise ValueError(f"lr must be a non-negative number, got {lr!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")

    def zero_grad(self) -> None:
        """Drop every gradient (``set_to_none``, like torch)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Apply one SGD update to every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad
            if self.weight_decay != 0:
                grad = grad.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                if self.buffers[i] is None:
                    self.buffers[i] = torch.clone(grad).detach()
                else:
                    self.buffers[i].mul_(self.momentum).add_(grad)
                grad = self.buffers[i]
            p.add_(grad, alpha=-self.lr)

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and momentum buffers, enough to resume."""
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "buffers": [None if b is None else b.clone() for b in self.buffers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``; checks everything first so a bad state changes nothing."""
        _check_state(state, ("lr", "momentum", "weight_decay"), ("buffers",), self.params, allow_none=True)
        self._check_hyperparameters(state["lr"], state["momentum"], state["weight_decay"])
        self.lr, self.momentum, self.weight_decay = state["lr"], state["momentum"], state["weight_decay"]
        self.buffers = [None if b is None else b.clone().to(p) for b, p in zip(state["buffers"], self.params)]


def _check_state(
    state: Any, keys: Iterable[str], tensor_keys: tuple[str, ...], params: list[torch.Tensor], *, allow_none: bool = False
) -> None:
    """Raise ValueError unless ``state`` has every key and, under each tensor key, one tensor shaped
    like each parameter (or None where ``allow_none``: SGD makes a momentum buffer on first use)."""
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict from state_dict(), got {type(state).__name__}")
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"state lacks {missing}: was it made by this optimizer's state_dict()?")
    for key in tensor_keys:
        tensors = state[key]
        if len(tensors) != len(params):
            raise ValueError(f"state[{key!r}] has {len(tensors)} tensors but the optimizer has {len(params)} parameters")
        for i, (t, p) in enumerate(zip(tensors, params)):
            if t is None and allow_none:
                continue
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(p.shape):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"state[{key!r}][{i}] is {shape}, parameter {i} has shape {tuple(p.shape)}")
