"""Contract tests of MomentumSGD: the first one checks what students receive written, the others the step."""

from __future__ import annotations

import importlib
import os

import torch

impl = importlib.import_module(os.environ.get("G2C_TRAINING_MODULE", "momentum.sgd"))
MomentumSGD = impl.MomentumSGD


def one_parameter(grads: list[list[float]], lr: float = 0.1, momentum: float = 0.9) -> torch.Tensor:
    """A parameter [1, 2] after one step per gradient given."""
    p = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    opt = MomentumSGD([p], lr, momentum=momentum)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach()


def test_zero_grad_clears_every_gradient():
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    MomentumSGD([p], 0.1).zero_grad()
    assert p.grad is None, "zero_grad must set every .grad to None"


def test_first_step_moves_by_lr_times_grad():
    got = one_parameter([[0.5, -1.0]])
    assert torch.allclose(got, torch.tensor([0.95, 2.1], dtype=torch.float64)), (
        "the first step must move p by lr * g: the velocity starts at the gradient (v = momentum * 0 + g), "
        "not at (1 - momentum) * g"
    )


def test_velocity_accumulates():
    start = torch.tensor([1.0, 2.0], dtype=torch.float64)
    first, second = one_parameter([[1.0, 1.0]]), one_parameter([[1.0, 1.0], [1.0, 1.0]])
    assert torch.allclose(second - first, 1.9 * (first - start)), (
        "with a constant gradient the second step must be (1 + momentum) times the first: step with the velocity "
        "v = momentum * v + g, not with the gradient"
    )


def test_matches_torch_sgd_with_momentum():
    torch.manual_seed(0)
    params = [torch.randn(3, 2, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    twins = [p.detach().clone().requires_grad_() for p in params]
    ours, theirs = MomentumSGD(params, 0.05, momentum=0.8), torch.optim.SGD(twins, lr=0.05, momentum=0.8)
    for step in range(1, 11):
        for p, q in zip(params, twins):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        ours.step()
        theirs.step()
        for i, (p, q) in enumerate(zip(params, twins)):
            assert torch.allclose(p, q, rtol=1e-12, atol=1e-12), f"parameter {i + 1} parts from torch.optim.SGD at step {step}"
