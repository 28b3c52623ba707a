"""What g2c's optimizers offer beyond the student contract: SGD equal to torch's, and resuming."""

from __future__ import annotations

import pytest
import torch

from g2c.training import SGD, AdamW


def params_and_twins(seed=0):
    g = torch.Generator().manual_seed(seed)
    ours = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for s in [(3, 2), (4,)]]
    return ours, [p.detach().clone().requires_grad_() for p in ours]


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.5, 0.1)])
def test_sgd_matches_torch(momentum, weight_decay):
    ours, theirs = params_and_twins()
    opt = SGD(iter(ours), 0.05, momentum=momentum, weight_decay=weight_decay)
    ref = torch.optim.SGD(theirs, 0.05, momentum=momentum, weight_decay=weight_decay, foreach=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        for p, q in zip(ours, theirs):
            grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def gradients(seed, steps, shapes):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for _ in range(steps)]


@pytest.mark.parametrize("make", [lambda ps: AdamW(ps, 0.01, weight_decay=0.1), lambda ps: SGD(ps, 0.01, momentum=0.9)])
def test_resume_from_state_dict_equals_an_uninterrupted_run(make):
    grads = gradients(2, 20, [(3, 2), (4,)])
    straight, _ = params_and_twins()
    opt = make(straight)
    for step_grads in grads:
        for p, g in zip(straight, step_grads):
            p.grad = g.clone()
        opt.step()

    resumed, _ = params_and_twins()
    first = make(resumed)
    for step_grads in grads[:10]:
        for p, g in zip(resumed, step_grads):
            p.grad = g.clone()
        first.step()
    saved = first.state_dict()
    first.lr = 123.0  # state_dict must be a snapshot, not a view
    second = make(resumed)
    second.load_state_dict(saved)
    for step_grads in grads[10:]:
        for p, g in zip(resumed, step_grads):
            p.grad = g.clone()
        second.step()
    for p, q in zip(straight, resumed):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_load_state_dict_rejects_a_mismatched_state_and_changes_nothing():
    params, _ = params_and_twins()
    opt = AdamW(params, 0.01)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    before = opt.state_dict()
    other = AdamW([torch.zeros(5, requires_grad=True)], 0.01).state_dict()
    for bad, match in [(other, "tensors"), ({**before, "betas": (1.5, 0.9)}, "betas"), ({"lr": 1.0}, "lacks"), ([], "dict")]:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["step_count"] == before["step_count"] == 1
    assert all(torch.equal(a, b) for a, b in zip(after["m"], before["m"]))


def test_sgd_rejects_bad_hyperparameters():
    params, _ = params_and_twins()
    for kwargs, name in [
        ({"lr": -1.0}, "lr"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay"),
    ]:
        with pytest.raises(ValueError, match=name):
            SGD(params, **kwargs)
