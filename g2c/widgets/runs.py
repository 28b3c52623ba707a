"""Running the course's one training loop for widgets: matched starts, argument checks, a cache."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from g2c.data import Dataset, regression
from g2c.nn import MLP, seeded
from g2c.training import SGD, History, train

ModelArg = torch.nn.Module | Callable[[], torch.nn.Module] | None
OptimizerFactory = Callable[..., Any]  # called as factory(params, lr=..., [weight_decay=...])

# Learning rates spaced by powers of about 3, as the module's sweep advice says.
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)


def default_model() -> torch.nn.Module:
    """The sweep's MLP for ``regression()``: SGD stalls at 1e-3, is healthy at 0.1, diverges at 1."""
    return MLP([2, 32, 32, 1])


def model_factory(model: ModelArg) -> Callable[[], torch.nn.Module]:
    """Accept a model class/factory or a built module (copied for every run, so runs never share weights)."""
    if model is None:
        return default_model
    if isinstance(model, torch.nn.Module):
        template = copy.deepcopy(model)
        return lambda: copy.deepcopy(template)
    if callable(model):
        return model
    raise ValueError(f"model must be a torch.nn.Module or a function that builds one, got {type(model).__name__}")


def dataset(data: Dataset | None) -> Dataset:
    if data is None:
        return regression()
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a g2c.data.Dataset (e.g. g2c.data.regression()), got {type(data).__name__}")
    return data


def loss_unit(data: Dataset) -> str:
    """The loss's unit for axis labels: MSE for float targets (regression), nats of cross-entropy for class ids."""
    return "MSE" if data.train_y.is_floating_point() else "cross-entropy, nats"


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return steps


def check_lr(lr: float, name: str = "lr") -> float:
    """Learning rates here sit on log axes: they must be finite and positive."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not lr > 0:
        raise ValueError(f"{name} must be a positive number, got {lr!r}")
    return float(lr)


def check_lrs(lrs: Sequence[float], name: str = "lrs") -> tuple[float, ...]:
    values = tuple(lrs)
    if len(values) < 2:
        raise ValueError(f"{name} needs at least two learning rates, got {list(values)!r}")
    for lr in values:
        check_lr(lr, name=f"every lr in {name}")
    if list(values) != sorted(set(values)):
        raise ValueError(f"{name} must be distinct and increasing, got {list(values)!r}")
    return values


class Runs:
    """Train once per setting, remember the History: moving a slider back costs nothing."""

    def __init__(
        self, model: ModelArg, data: Dataset | None, optimizer: OptimizerFactory | None, *,
        steps: int, seed: int = 0, eval_every: int | None = None,
    ):
        self.build = model_factory(model)
        self.data = dataset(data)
        self.optimizer = SGD if optimizer is None else optimizer
        if not callable(self.optimizer):
            raise ValueError(f"optimizer must be a factory called as optimizer(params, lr=...), got {type(optimizer).__name__}")
        self.steps = check_steps(steps)
        self.seed = seed
        self.eval_every = eval_every or max(1, self.steps // 20)
        self.cache: dict[tuple, History] = {}

    def run(
        self, lr: float, *, weight_decay: float | None = None, clip: float | None = None,
        optimizer: OptimizerFactory | None = None, key: Any = None,
    ) -> History:
        """One run of ``g2c.training.train`` from the same seeded start, cached by its settings."""
        check_lr(lr)
        if weight_decay is not None and not weight_decay >= 0:
            raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
        if clip is not None and not clip > 0:
            raise ValueError(f"max_norm must be a positive number, got {clip!r}")
        cache_key = (key, lr, weight_decay, clip)
        if cache_key not in self.cache:
            model = seeded(self.seed, self.build)
            kwargs: dict[str, float] = {"lr": lr}
            if weight_decay is not None:
                kwargs["weight_decay"] = weight_decay
            opt = (optimizer or self.optimizer)(model.parameters(), **kwargs)
            self.cache[cache_key] = train(
                model, self.data, opt, steps=self.steps, clip=clip, eval_every=self.eval_every, seed=self.seed
            )
        return self.cache[cache_key]


def finite_curve(history: History) -> tuple[list[int], list[float], list[float]]:
    """The evaluation curve (steps, train, val) with non-finite points dropped, for plotting."""
    points = [
        (s, t, v)
        for s, t, v in zip(history.eval_steps, history.eval_train_loss, history.val_loss)
        if math.isfinite(t) and math.isfinite(v)
    ]
    if not points:
        return [], [], []
    steps, train_loss, val_loss = zip(*points)
    return list(steps), list(train_loss), list(val_loss)
